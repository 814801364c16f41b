"""Install release artifacts (archives of binaries, or one binary) verified, atomically and idempotently.

pyinfra's ``files.download`` moves the file into place before it checks the checksum, and
``files.unarchive``'s ``creates=`` tests presence, not version; neither can promise that a failed download or
a wrong checksum leaves the previous install untouched. :func:`install` can: it downloads into a private
staging directory, verifies sha256 there, unpacks there, copies each file next to its destination under a
temporary name, and only then renames them into place. It finishes by writing a receipt (read back by
``facts.release.InstalledRelease``), so a second run with the same version does nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, Literal

import requests
from pyinfra import logger
from pyinfra.api.command import FileUploadCommand, FunctionCommand, QuoteString, StringCommand
from pyinfra.api.exceptions import OperationValueError
from pyinfra.api.host import Host
from pyinfra.api.operation import OperationMeta, operation
from pyinfra.api.state import State
from pyinfra.context import host

from pyinfra_iluvatar.facts.release import RECEIPT_DIR, STAT_FORMAT, InstalledRelease, receipt_paths, stat_path
from pyinfra_iluvatar.releases.http import describe
from pyinfra_iluvatar.releases.lockfile import Artifact
from pyinfra_iluvatar.urls import redact

UPLOAD_DIR = "/var/lib/pyinfra-iluvatar/uploads"
STAGING_DIR = "/var/tmp"
REPLACED = "pyinfra-iluvatar: files replaced"
"""The line an install prints when it replaced or removed installed files (not when it only rewrote a receipt)."""

Layout = Literal["archive", "binary", "tree"]
DownloadMode = Literal["host", "controller"]
DOWNLOAD_MODES: tuple[DownloadMode, ...] = ("host", "controller")
"""Who downloads artifacts: each host, or the controller once per artifact for the whole fleet."""

_cache_locks: dict[str, threading.Lock] = {}
_cache_locks_guard = threading.Lock()


def replaced(*installs: OperationMeta) -> Callable[[], bool]:
    """
    For ``_if=``: whether any of these installs replaced or removed an installed file. An install that found
    every file byte-identical (a lost receipt, rewritten) changed nothing a service runs: restart nothing then.
    """
    return lambda: any(op.did_change() and REPLACED in op.stdout_lines for op in installs)


def _component_name(component: str) -> str:
    if not component or not all(c.isalnum() or c in "-_" for c in component):
        raise OperationValueError(f"component must be letters, digits, '-' or '_', got {component!r}")
    return component


def place_executables(destination: str, sums: str) -> str:
    """
    Script part: rename every top-level executable of ``$staging/unpacked`` into ``destination`` — unless every
    one is already there byte-identical and executable — and remove files the previous receipt lists there that
    this release lacks. Sets ``changed=yes`` when it replaced or removed anything.
    """
    q = shlex.quote
    return f"""cd "$staging/unpacked"
set --
for f in *; do if [ -f "$f" ] && [ -x "$f" ]; then set -- "$@" "$f"; fi; done
[ "$#" -gt 0 ] || fail "the artifact holds no executables"
dest={q(destination)}
mkdir -p "$dest"
for f; do if ! [ -x "$dest/$f" ] || ! cmp -s "$f" "$dest/$f"; then changed=yes; fi; done
if [ "$changed" = yes ]; then
    for f; do
        cp "$f" "$dest/.$f.pyinfra-iluvatar-new" && chmod 755 "$dest/.$f.pyinfra-iluvatar-new" \\
            || {{ for g; do rm -f "$dest/.$g.pyinfra-iluvatar-new"; done; fail "cannot write $dest"; }}
    done
    for f; do mv -f "$dest/.$f.pyinfra-iluvatar-new" "$dest/$f"; done
fi
if [ -f {q(sums)} ]; then
    while read -r _sum path; do
        case "$path" in "$dest"/*) ;; *) continue ;; esac
        keep=no
        for f; do if [ "$path" = "$dest/$f" ]; then keep=yes; fi; done
        if [ "$keep" = no ] && [ -e "$path" ]; then rm -f "$path"; changed=yes; fi
    done < {q(sums)}
fi
installed=$(for f; do printf '%s/%s\\n' "$dest" "$f"; done)"""


def installed_here(destination: str, sums: str) -> str:
    """Shell test: the receipt ``sums`` lists files under ``destination``, so this package installed them."""
    return f"grep -qsF {shlex.quote(f'  {destination}/')} {shlex.quote(sums)}"


def _place_tree(destination: str, sums: str) -> str:
    """
    Script part: swap the whole unpacked tree in as ``destination`` (the old tree goes only after), unless the
    tree there is already identical. A different ``destination`` whose files this package's receipt does not
    list is never replaced: it may be an admin's. Sets ``changed=yes`` when it swapped.
    """
    q = shlex.quote
    return f"""dest={q(destination)}
[ -d "$staging/unpacked/bin" ] || fail "the artifact has no bin/ directory"
if ! [ -d "$dest" ] || ! diff -rq "$staging/unpacked" "$dest" >/dev/null 2>&1; then
    if [ -e "$dest" ] && ! {installed_here(destination, sums)}; then
        fail "$dest exists and was not installed by pyinfra-iluvatar"
    fi
    mkdir -p "$(dirname "$dest")"
    rm -rf "$dest.pyinfra-iluvatar-new" "$dest.pyinfra-iluvatar-old"
    cp -a "$staging/unpacked" "$dest.pyinfra-iluvatar-new" \\
        || {{ rm -rf "$dest.pyinfra-iluvatar-new"; fail "cannot write $dest"; }}
    if [ -e "$dest" ]; then mv "$dest" "$dest.pyinfra-iluvatar-old"; fi
    mv "$dest.pyinfra-iluvatar-new" "$dest"
    rm -rf "$dest.pyinfra-iluvatar-old"
    changed=yes
fi
installed=$(for f in "$dest"/bin/*; do if [ -f "$f" ]; then printf '%s\\n' "$f"; fi; done)"""


def script(*, component: str, version: str, source: str, steps: str) -> str:
    """
    A POSIX shell install script: ``steps`` run in a fresh ``$staging`` directory (removed on exit) with a
    ``fail`` function, must move files into place last, list them in ``$installed`` and set ``changed=yes`` when
    they replaced anything; then the receipt is written, and :data:`REPLACED` printed when files changed. Any
    failure before the move changes nothing. Staging directories of this component left by an install that died
    (host powered off, connection cut) are removed first: each is named for its script's PID, and is left alone
    while that PID is still an install script of this component.
    """
    release, sums = receipt_paths(component)
    stat = stat_path(component)
    q = shlex.quote
    prefix = f"{STAGING_DIR}/pyinfra-iluvatar-{component}."
    return f"""set -eu
umask 022
fail() {{ echo "pyinfra-iluvatar: {component} {version}: $*; the previous install is untouched" >&2; exit 1; }}
for old in {prefix}*; do
    pid=${{old#{prefix}}}; pid=${{pid%%.*}}
    case "$pid" in ''|*[!0-9]*) continue ;; esac
    if [ -d "$old" ] && ! grep -qs {q(f"pyinfra-iluvatar-{component}.")} "/proc/$pid/cmdline"; then rm -rf "$old"; fi
done
staging=$(mktemp -d {prefix}$$.XXXXXX)
trap 'rm -rf "$staging"' EXIT
changed=no
{steps}
mkdir -p {q(RECEIPT_DIR)}
printf '%s\\n' "$installed" | while read -r f; do sha256sum "$f"; done > {q(sums + ".tmp")}
mv -f {q(sums + ".tmp")} {q(sums)}
printf '%s\\n' "$installed" | while read -r f; do stat -c {q(STAT_FORMAT)} "$f"; done > {q(stat + ".tmp")}
mv -f {q(stat + ".tmp")} {q(stat)}
printf 'component=%s\\nversion=%s\\nsource=%s\\n' {q(component)} {q(version)} {q(source)} > {q(release + ".tmp")}
mv -f {q(release + ".tmp")} {q(release)}
if [ "$changed" = yes ]; then
    echo "installed {component} {version}:" $installed
    echo {q(REPLACED)}
else
    echo "{component} {version}: installed files already byte-identical; receipt rewritten"
fi
"""


def record_stat(component: str) -> StringCommand:
    """The command that writes ``component``'s ``.stat`` receipt for the files its ``.sha256`` receipt lists."""
    sums, stat = receipt_paths(component)[1], stat_path(component)
    return StringCommand(
        "cut -c67-",
        QuoteString(sums),
        "| xargs -d '\\n' stat -c",
        QuoteString(STAT_FORMAT),
        "--",
        ">",
        QuoteString(stat + ".tmp"),
        "&& mv -f",
        QuoteString(stat + ".tmp"),
        QuoteString(stat),
    )


def _verified(fetch: str, filename: str, sha256: str) -> str:
    """Script part: ``fetch`` puts the artifact at ``$staging/artifact``; stop unless its sha256 matches."""
    mismatch = shlex.quote(f"checksum mismatch for {filename}: expected {sha256}, got")
    return f"""{fetch}
actual=$(sha256sum "$staging/artifact" | cut -d ' ' -f 1)
[ "$actual" = {shlex.quote(sha256)} ] || fail {mismatch} "$actual"
mkdir "$staging/unpacked"
""".rstrip("\n")


def _cache_lock(path: str) -> threading.Lock:
    with _cache_locks_guard:
        return _cache_locks.setdefault(path, threading.Lock())


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_to_cache(state: State, host: Host, url: str, sha256: str, path: str) -> bool:
    """
    Controller side of ``download="controller"``: make ``path`` hold the verified artifact, downloading it at
    most once per controller run however many hosts ask (a cached file is re-verified, never trusted).
    """
    target = Path(path)
    with _cache_lock(path):
        if target.is_file() and _sha256_of(target) == sha256:
            return True
        partial = target.with_name(target.name + f".partial-{os.getpid()}")
        digest = hashlib.sha256()
        problem = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with requests.get(url, stream=True, timeout=60) as response:
                response.raise_for_status()
                with partial.open("wb") as stream:
                    for chunk in response.iter_content(chunk_size=1 << 20):
                        digest.update(chunk)
                        stream.write(chunk)
        except requests.RequestException as error:
            problem = describe(error)
        except OSError as error:
            problem = f"cannot write {partial}: {error.strerror}"
        else:
            if digest.hexdigest() != sha256:
                problem = f"checksum mismatch: expected {sha256}, got {digest.hexdigest()}"
        if problem is None:
            partial.replace(target)
            return True
        partial.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            target.parent.rmdir()  # no empty cache entry is left behind (it fails while other files are there)
        host.log_styled(
            f"controller download of {target.name} from {redact(url)} failed: {problem}",
            fg="red",
            log_func=logger.error,
        )
        return False


@operation()
def install(
    component: str,
    version: str,
    artifact: Artifact,
    destination: str,
    layout: Layout = "archive",
    strip_components: int = 0,
    binary_name: str | None = None,
    download: DownloadMode = "host",
    mirror: str | None = None,
    cache_dir: str = "~/.cache/pyinfra-iluvatar/artifacts",
    verify: bool = False,
) -> Generator[Any, None, None]:
    """
    Install the executables of a release artifact (the one for this host's architecture) into ``destination``.

    Does nothing when this package's receipt on the host says ``version`` from this artifact is installed and
    every installed file is unchanged. Otherwise: fetches the artifact into a staging directory on the host,
    verifies its sha256, unpacks it (``layout="archive"``: a ``.tar.gz``; ``"binary"``: the artifact is the
    executable, installed as ``binary_name``), and — unless every file is already there byte-identical (a lost
    receipt) — copies every top-level executable next to its destination under a temporary name and renames them
    into place; removes files that the previous install of this component had and this one does not, and writes
    the receipt. Any failure before the renames — download, checksum, unpack, disk — leaves the previous install
    untouched. Use :func:`replaced` to restart a service only when files really changed.

    + component: receipt name (``containerd``, ``cni-plugins``, ...): letters, digits, ``-``, ``_``
    + version: the version being installed, recorded in the receipt (no ``v`` prefix)
    + artifact: the artifact for this host's architecture (``LockedComponent.artifact(arch)``)
    + destination: directory the executables go into (``/usr/local/bin``, ``/opt/cni/bin``)
    + layout: ``archive`` (executables at the archive's top level, after ``strip_components``), ``binary`` (the
      artifact is the executable) or ``tree`` (the whole archive becomes ``destination``, as a Go toolchain)
    + strip_components: leading path components to drop when unpacking (``1`` for containerd's ``bin/``)
    + binary_name: the installed name, for ``layout="binary"``; for ``archive``, an executable the archive must hold
    + download: ``host`` (each host fetches) or ``controller`` (the controller fetches each artifact once into
      ``cache_dir``, verifies it, and uploads it to every host; the host verifies it again)
    + mirror: base URL that replaces upstream hosts (``<mirror>/github.com/<owner>/<repo>/releases/download/…``)
    + cache_dir: the controller's artifact cache, for ``download="controller"``
    + verify: hash every installed file against the receipt to decide it is unchanged; ``False``: trust its size,
      ctime and inode as recorded at install (``facts.release.InstalledRelease``), which reads no file

    **Example:**

    .. code:: python

        containerd = lock.component("containerd")
        release.install(
            name="containerd binaries",
            component="containerd",
            version=containerd.version,
            artifact=containerd.artifact("amd64"),
            destination="/usr/local/bin",
            strip_components=1,
        )
    """
    component = _component_name(component)
    if layout == "binary" and not binary_name:
        raise OperationValueError(f"{component}: layout='binary' needs binary_name")
    if download not in DOWNLOAD_MODES:
        raise OperationValueError(f"{component}: download must be one of {', '.join(DOWNLOAD_MODES)}, got {download!r}")
    installed = host.get_fact(InstalledRelease, component=component, verify=verify)
    if (
        installed
        and installed["version"] == version
        and installed["source"] == f"sha256:{artifact.sha256}"
        and installed["intact"]
        and all(path.startswith(f"{destination}/") for path in installed["files"])
    ):
        if verify or installed["checked"] == "stat":
            host.noop(f"{component} {version} is installed in {destination}")
        else:  # a receipt from before the .stat receipt: record it, so later runs need not hash
            yield record_stat(component)
        return

    url = artifact.url_via(mirror)
    if download == "controller":
        cached = str(Path(os.path.expanduser(cache_dir)) / artifact.sha256 / artifact.filename)
        uploaded = f"{UPLOAD_DIR}/{artifact.sha256}-{artifact.filename}"
        yield FunctionCommand(fetch_to_cache, (url, artifact.sha256, cached), {})
        yield StringCommand("mkdir", "-p", "-m", "700", UPLOAD_DIR)
        yield FileUploadCommand(cached, uploaded)
        fetch = f'mv -f {shlex.quote(uploaded)} "$staging/artifact" || fail "the uploaded artifact is missing"'
    else:
        fetch = (
            'command -v curl >/dev/null || fail "curl is not installed"\n'
            f"curl --fail --silent --show-error --location --retry 3 --connect-timeout 30 --netrc-optional \\\n"
            f'    --output "$staging/artifact" {shlex.quote(url)}'
            f" || fail {shlex.quote(f'download of {artifact.filename} from {redact(url)} failed')}"
        )
    if layout == "binary":
        unpack = f'cp "$staging/artifact" "$staging/unpacked/"{shlex.quote(binary_name or "")}'
        unpack += '\nchmod 755 "$staging/unpacked/"*'
    else:
        unpack = (
            f'tar -xzf "$staging/artifact" -C "$staging/unpacked" --strip-components={int(strip_components)}'
            f" --no-same-owner || fail {shlex.quote(f'cannot unpack {artifact.filename}')}"
        )
    sums = receipt_paths(component)[1]
    if layout == "tree":
        place = _place_tree(destination, sums)
    else:
        place = place_executables(destination, sums)
        if layout == "archive" and binary_name:
            missing = shlex.quote(f"no {binary_name} in {artifact.filename}")
            place = f'[ -x "$staging/unpacked/"{shlex.quote(binary_name)} ] || fail {missing}\n{place}'

    yield script(
        component=component,
        version=version,
        source=f"sha256:{artifact.sha256}",
        steps="\n".join((_verified(fetch, artifact.filename, artifact.sha256), unpack, place)),
    )
