"""``pyinfra-iluvatar lock``: resolve every component once, on the controller, and write the lock file."""

from __future__ import annotations

from pathlib import Path

import click

from pyinfra_iluvatar.releases import lockfile
from pyinfra_iluvatar.releases.components import ARCHES, COMPONENTS, DEFAULT_ARCHES, OPTIONAL
from pyinfra_iluvatar.releases.github import DEFAULT_API, GithubClient, GithubError
from pyinfra_iluvatar.releases.godev import DEFAULT_DL, GoDevClient, GoDevError
from pyinfra_iluvatar.releases.lockfile import Lock, LockedComponent, LockError
from pyinfra_iluvatar.releases.resolve import ResolveError, resolve_all
from pyinfra_iluvatar.releases.rustup import DEFAULT_DIST, RustupDistClient, RustupDistError
from pyinfra_iluvatar.releases.specs import LATEST, Spec, SpecError, parse_spec
from pyinfra_iluvatar.urls import http_url, redact

_SPEC_HELP = "[default: its constraint in the lock file, else latest]"


def _spec(_context: click.Context, _parameter: click.Parameter, value: str | None) -> Spec | None:
    try:
        return parse_spec(value) if value is not None else None
    except SpecError as error:
        raise click.BadParameter(str(error)) from None


def _url(_context: click.Context, _parameter: click.Parameter, value: str) -> str:
    """``value`` as a base URL (no trailing ``/``); :class:`click.BadParameter` shows it with credentials masked."""
    try:
        return http_url(value, base=True)
    except ValueError as error:
        raise click.BadParameter(f"{redact(value)!r}: {error}") from None


def _recorded(old: Lock | None, name: str) -> Spec:
    """The spec component ``name`` was locked from in ``old``, else ``latest``."""
    locked = old.components.get(name) if old is not None else None
    return parse_spec(locked.constraint if locked is not None else LATEST)


def _change(old: LockedComponent | None, new: LockedComponent) -> str:
    if old is None:
        return f"{new.version} (new)"
    if old.version != new.version:
        return f"{old.version} -> {new.version}"
    changes = ["artifacts changed"] if old.artifacts != new.artifacts else []
    if old.constraint != new.constraint:
        changes.append(f"constraint was {old.constraint}")
    return f"{new.version} ({', '.join(changes) or 'unchanged'})"


@click.command("lock")
@click.option(
    "--lock-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("iluvatar.lock.json"),
    show_default=True,
    help="The lock file to write (and whose constraints and architectures are the defaults).",
)
@click.option("--containerd", callback=_spec, metavar="SPEC", help=f"containerd version spec {_SPEC_HELP}")
@click.option("--cni-plugins", callback=_spec, metavar="SPEC", help=f"CNI plugins version spec {_SPEC_HELP}")
@click.option("--go", callback=_spec, metavar="SPEC", help=f"Go toolchain (builds cnitool) version spec {_SPEC_HELP}")
@click.option(
    "--cnitool", callback=_spec, metavar="SPEC", help=f"cnitool (a CNI release tag) version spec {_SPEC_HELP}"
)
@click.option(
    "--arch",
    "arches",
    multiple=True,
    type=click.Choice(ARCHES),
    help="Debian architecture to lock artifacts for (repeat for several)"
    f" [default: those in the lock file, else {' and '.join(DEFAULT_ARCHES)}]",
)
@click.option(
    "--github-api",
    default=DEFAULT_API,
    callback=_url,
    show_default=True,
    help="GitHub API base URL (GitHub Enterprise: https://HOST/api/v3). GITHUB_TOKEN, when set, is sent to it"
    " over https (or plain http to a loopback address) only.",
)
@click.option(
    "--go-dl",
    default=DEFAULT_DL,
    callback=_url,
    show_default=True,
    help="Go download page that lists releases as JSON (and serves the files).",
)
@click.option(
    "--rustup",
    callback=_spec,
    metavar="SPEC",
    help="rustup-init (build hosts) version: a version or latest; locked only when given or already in the lock file",
)
@click.option(
    "--rustup-dist",
    default=DEFAULT_DIST,
    callback=_url,
    show_default=True,
    help="rustup's dist server (rustup/release-stable.toml and rustup/archive/…).",
)
def lock(
    lock_file: Path,
    containerd: Spec | None,
    cni_plugins: Spec | None,
    go: Spec | None,
    cnitool: Spec | None,
    rustup: Spec | None,
    arches: tuple[str, ...],
    github_api: str,
    go_dl: str,
    rustup_dist: str,
) -> None:
    """Resolve containerd, the CNI plugins, Go and cnitool (and, for build hosts, rustup-init) to exact versions
    and sha256-verified artifacts.

    A version spec is a version (2.1.4 or v2.1.4), a constraint (~=2.1 or '>=1.7,<2') or latest.
    Each component's spec defaults to the constraint recorded in the existing lock file, else latest, and --arch to
    the architectures in that file, else amd64 and arm64. "latest" is
    the highest stable version whose release has every file needed, not GitHub's newest by date. Deploys read the
    lock file and never ask upstream what is latest.
    """
    try:
        old = lockfile.load(lock_file) if lock_file.exists() else None
    except LockError as error:
        raise click.ClickException(f"{error} (fix or remove it, then re-run)") from None
    given = {"containerd": containerd, "cni-plugins": cni_plugins, "go": go, "cnitool": cnitool, "rustup": rustup}
    wanted = [
        name
        for name in COMPONENTS
        if name not in OPTIONAL or given[name] is not None or (old is not None and name in old.components)
    ]
    specs = {name: given[name] or _recorded(old, name) for name in wanted}
    github = GithubClient.from_environment(github_api)
    token_note = " (GITHUB_TOKEN set)" if github.authenticated else ""
    if github.token_withheld:
        token_note = " (GITHUB_TOKEN not sent: plain http to a host that is not loopback)"
    click.echo(f"Resolving with {github.api}{token_note}", err=True)
    try:
        new = resolve_all(
            specs,
            tuple(dict.fromkeys(arches)) or _locked_arches(old),
            github,
            GoDevClient(go_dl),
            RustupDistClient(rustup_dist),
        )
    except (ResolveError, GithubError, GoDevError, RustupDistError) as error:
        raise click.ClickException(str(error)) from None
    for name, component in new.components.items():
        previous = old.components.get(name) if old is not None else None
        click.echo(f"{name:<12} {_change(previous, component):<32} ({component.constraint})")
    _write(new, lock_file)


def _locked_arches(old: Lock | None) -> tuple[str, ...]:
    """The architectures the old lock has artifacts for (a bare re-lock keeps them), else the defaults."""
    locked = {arch for component in old.components.values() for arch in component.artifacts} if old else set()
    return tuple(arch for arch in ARCHES if arch in locked) or DEFAULT_ARCHES


def _write(new: Lock, lock_file: Path) -> None:
    if lock_file.exists() and lock_file.read_text(encoding="utf-8") == lockfile.to_json(new):
        click.echo(f"{lock_file} is up to date")
        return
    try:
        lockfile.dump(new, lock_file)
    except OSError as error:
        raise click.ClickException(f"cannot write {lock_file}: {error.strerror}") from None
    except LockError as error:
        raise click.ClickException(f"upstream's answers make an invalid lock, not written: {error}") from None
    click.echo(f"Wrote {lock_file}")
