"""Docker Engine from Docker's own apt repository, set up as Docker's install guide does, and the daemon the
Ilúvatar worker's Docker isolation runs on: ``daemon.json`` merged key by key, the unit's file limit, readiness.

The deploy that installs Docker puts these together: :func:`apt_repository` (then ``apt-get update``),
:func:`guide_conflicts_absent`, the packages of :data:`DOCKER_REPO_PACKAGES`, :func:`daemon_json` and
``limits.unit_limits`` (reload systemd and restart docker ``_if`` they changed), then :func:`ready` and
:func:`daemon_as_expected`.

Docker's repository is ``operations.apt_repos.signed_repository`` with Docker's paths: its release key is fetched on
the controller and checked against its fingerprint there, in pure Python, so the hosts need neither ``gpg`` nor a
route to ``download.docker.com`` for the key, and a key that is not the expected one never reaches a host.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Generator
from io import StringIO
from typing import Any, Literal

from pyinfra.api.command import QuoteString, StringCommand
from pyinfra.api.exceptions import OperationError, OperationValueError
from pyinfra.api.operation import operation
from pyinfra.context import host
from pyinfra.facts.files import FileContents
from pyinfra.operations import apt, files

from pyinfra_iluvatar.facts.apt_repos import KEYRINGS_DIR, SOURCES_DIR
from pyinfra_iluvatar.facts.docker import DockerDaemon, UserGroups
from pyinfra_iluvatar.facts.packages import DebPackageVersions
from pyinfra_iluvatar.operations import apt_repos
from pyinfra_iluvatar.operations._failure import fail_host
from pyinfra_iluvatar.operations.openpgp import key_fingerprint as key_fingerprint
from pyinfra_iluvatar.urls import http_url, redact

DAEMON_JSON = "/etc/docker/daemon.json"
GUIDE_CONFLICTS = ("docker.io", "docker-doc", "docker-compose", "podman-docker", "containerd", "runc")
"""The packages Docker's install guide says to remove before installing from its repository."""
DOCKER_REPO_PACKAGES = ("docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin")
"""What the Docker isolation installs from Docker's repository."""
DOCKER_KEY_FINGERPRINT = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
"""Docker's release key (``Docker Release (CE deb) <docker@docker.com>``), which signs its apt repositories."""
DOCKER_REPOSITORY = "https://download.docker.com/linux"
DISTRIBUTIONS = ("debian", "ubuntu")
DOCKER_KEYRING = f"{KEYRINGS_DIR}/docker.asc"
DOCKER_SOURCES = f"{SOURCES_DIR}/docker.sources"
DOCKER_COMPONENT = "stable"
DOCKER_LABEL = "Docker's apt repository"
"""What the header of ``docker.sources`` and the messages call it."""

_CODENAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
_ARCH = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")

# --- operations ----------------------------------------------------------------------------------------------------


def render_sources(uri: str, codename: str, arch: str) -> str:
    """Docker's deb822 source, as its install guide writes it (plus ``Architectures``)."""
    return apt_repos.render_sources(uri, [codename], [DOCKER_COMPONENT], arch, DOCKER_KEYRING, DOCKER_LABEL)


@operation()
def apt_repository(
    repository: str,
    distribution: Literal["debian", "ubuntu"],
    codename: str,
    arch: str,
    fingerprint: str = DOCKER_KEY_FINGERPRINT,
    cache_dir: str = apt_repos.DEFAULT_CACHE_DIR,
) -> Generator[Any, None, None]:
    """
    Set up Docker's apt repository the way Docker's install guide does: its key in ``/etc/apt/keyrings/docker.asc``
    (mode 644) and a deb822 source ``/etc/apt/sources.list.d/docker.sources`` signed by it. Refresh the package
    lists afterwards (``_if`` this changed).

    It is ``apt_repos.signed_repository`` with Docker's paths, URI ``<repository>/<distribution>``, suite
    ``codename`` and component ``stable``. The key is fetched on the controller from
    ``<repository>/<distribution>/gpg`` (once per run for the whole fleet, see ``apt_repos.fetch_key``) and must be
    the key ``fingerprint`` and no other, or the host fails before anything on it changes. A keyring already holding
    exactly that key is kept (only its mode and owner are fixed): a converged run downloads nothing and costs one
    round trip (``facts.apt_repos.AptRepository``).

    Another source file under ``/etc/apt/sources.list.d/`` with an entry for the same URI (a ``docker.list`` from
    an older guide) makes apt fail with "Conflicting values set for option Signed-By" when its ``signed-by``
    differs (or is missing, read after ours), and warn "configured multiple times" otherwise: it is disabled by
    renaming it to ``<name>.disabled-by-pyinfra-iluvatar``, never deleted (it is someone else's file; the whole
    file goes, other entries in it included). Commented entries, disabled deb822 stanzas and other URIs do not
    count. An entry for the URI in ``/etc/apt/sources.list`` itself is an ``OperationError`` naming
    the line: that file is the admin's to edit.

    + repository: base URL of Docker's repositories (``https://download.docker.com/linux``, or a mirror of it)
    + distribution: ``debian`` or ``ubuntu`` (the repository's sub-directory)
    + codename: the release (``bookworm``, ``noble``): the source's ``Suites``
    + arch: the Debian architecture (``amd64``, ``arm64``): the source's ``Architectures``
    + fingerprint: the key's V4 fingerprint, 40 hex digits (spaces allowed); Docker's release key by default
    + cache_dir: where the controller keeps the checked key before uploading it

    **Example:**

    .. code:: python

        repo = docker.apt_repository(
            name="Docker's apt repository",
            repository="https://download.docker.com/linux",
            distribution="debian",
            codename="bookworm",
            arch="amd64",
        )
        apt.update(name="Package lists", _if=repo.did_change)
    """
    try:
        base = http_url(repository, base=True)
    except ValueError as error:
        raise OperationValueError(f"repository {redact(str(repository))!r} is not valid: {error}") from None
    if distribution not in DISTRIBUTIONS:
        raise OperationValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")
    if not isinstance(codename, str) or not _CODENAME.fullmatch(codename):
        raise OperationValueError(f"codename must be a release name such as bookworm or noble, got {codename!r}")
    if not isinstance(arch, str) or not _ARCH.fullmatch(arch):
        raise OperationValueError(f"arch must be a Debian architecture such as amd64 or arm64, got {arch!r}")
    uri = f"{base}/{distribution}"
    yield from apt_repos.signed_repository._inner(
        uri=uri,
        suites=[codename],
        components=[DOCKER_COMPONENT],
        arch=arch,
        keyring=DOCKER_KEYRING,
        sources=DOCKER_SOURCES,
        key_url=f"{uri}/gpg",
        fingerprint=apt_repos.normal_fingerprint(fingerprint),
        cache_dir=cache_dir,
        label=DOCKER_LABEL,
    )


@operation()
def guide_conflicts_absent() -> Generator[Any, None, None]:
    """
    Remove (``apt-get remove``, not purge: their configuration stays) the packages Docker's install guide says to
    remove before installing from its repository (:data:`GUIDE_CONFLICTS`: ``docker.io``, ``docker-doc``,
    ``docker-compose``, ``podman-docker``, ``containerd``, ``runc``) that are installed. Run it only when Docker's
    repository is the source of Docker: the distribution's ``containerd`` and ``runc`` go too.

    **Example:**

    .. code:: python

        docker.guide_conflicts_absent(name="Packages Docker's guide removes")
    """
    installed = host.get_fact(DebPackageVersions, packages=list(GUIDE_CONFLICTS))
    present = [name for name in GUIDE_CONFLICTS if name in installed]
    if not present:
        host.noop(f"none of the packages Docker's install guide removes is installed ({', '.join(GUIDE_CONFLICTS)})")
        return
    yield from apt.packages._inner(packages=present, present=False)


def merge_settings(existing: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """
    ``settings`` merged into ``existing`` key by key: objects in both are merged the same way, any other value of
    ``settings`` replaces the existing one. Existing keys keep their order; new keys follow in ``settings``' order.
    """
    merged = dict(existing)
    for key, value in settings.items():
        current = merged.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            merged[key] = merge_settings(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _canonical(value: Any) -> str:
    """JSON that compares equal only for equal JSON (``true`` is not ``1``, ``1.0`` is not ``1``)."""
    return json.dumps(value, sort_keys=True)


@operation()
def daemon_json(settings: dict[str, Any]) -> Generator[Any, None, None]:
    """
    Merge ``settings`` into ``/etc/docker/daemon.json`` key by key (:func:`merge_settings`: nested objects merged,
    other values replaced), keeping every key already there that ``settings`` does not name. The file is written
    (JSON indented 2, existing keys in their order, then new ones; mode 644) only when the merged content differs
    from what is there, so a second run changes nothing and yields nothing; an absent (or empty) file is created,
    with ``/etc/docker`` (mode 755). A file that is not valid JSON, or not a JSON object, is an ``OperationError``
    naming the file and the parser's message, and is never overwritten. Restart docker ``_if`` this changed: the
    daemon reads the file only when it starts.

    + settings: a JSON object of dockerd settings (``{"storage-driver": "overlay2", "exec-opts":
      ["native.cgroupdriver=systemd"]}``)

    **Example:**

    .. code:: python

        config = docker.daemon_json(
            name="dockerd settings",
            settings={"exec-opts": ["native.cgroupdriver=systemd"], "log-driver": "local"},
        )
        systemd.service(name="Restart docker", service="docker", restarted=True, _if=config.did_change)
    """
    if not isinstance(settings, dict) or not all(isinstance(key, str) for key in settings):
        raise OperationValueError(f"settings must be a JSON object (a dict with string keys), got {settings!r}")
    try:
        json.dumps(settings, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise OperationValueError(f"settings must hold JSON values only: {error}") from None
    lines = host.get_fact(FileContents, path=DAEMON_JSON)
    text = "\n".join(lines or [])
    existing: dict[str, Any] = {}
    if text.strip():
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as error:
            raise OperationError(
                f"{host.name}: {DAEMON_JSON} is not valid JSON ({error}); it is left as it is: fix or remove it"
            ) from None
        if not isinstance(parsed, dict):
            raise OperationError(
                f"{host.name}: {DAEMON_JSON} holds a JSON {type(parsed).__name__}, not an object; it is left as it "
                "is: fix or remove it"
            )
        existing = parsed
    merged = merge_settings(existing, settings)
    if text.strip() and _canonical(merged) == _canonical(existing):
        host.noop(f"{DAEMON_JSON} already has {', '.join(settings) or 'every setting'}")
        return
    if lines is None:
        yield from files.directory._inner(path=os.path.dirname(DAEMON_JSON), user="root", group="root", mode="755")
    content = json.dumps(merged, indent=2) + "\n"
    yield from files.put._inner(
        src=StringIO(content), dest=DAEMON_JSON, user="root", group="root", mode="644", create_remote_dir=False
    )


@operation(is_idempotent=False, idempotent_notice="It waits for the Docker daemon each time it runs: run it with _if=.")
def ready(timeout: int = 60) -> Generator[Any, None, None]:
    """
    Wait until the Docker daemon answers ``docker info`` with its server version (not only an exit status: with
    ``--format '{{json .}}'`` the Docker 20.10 CLI exits 0 while the daemon is down), failing the host after
    ``timeout`` seconds with a message. Use it after a start or restart (``_if=``): it always runs.

    + timeout: seconds to wait

    **Example:**

    .. code:: python

        docker.ready(name="Docker answers", _if=any_changed(config, limits))
    """
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
        raise OperationValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    yield (
        "i=0; until [ -n \"$(docker info --format '{{.ServerVersion}}' 2>/dev/null)\" ]; do i=$((i+1)); "
        f'if [ $i -ge {timeout} ]; then echo "pyinfra-iluvatar: the Docker daemon did not answer docker info '
        f'within {timeout}s" >&2; exit 1; fi; sleep 1; done'
    )


def _driver_hint(what: str, wanted: str) -> str:
    if what == "cgroup driver":
        return f' (set "exec-opts": ["native.cgroupdriver={wanted}"] in {DAEMON_JSON} and restart docker)'
    return (
        f' (set "storage-driver": "{wanted}" in {DAEMON_JSON}: without it dockerd takes the first driver the '
        "filesystem under its data root supports)"
    )


@operation(is_idempotent=False, idempotent_notice="It reads the Docker daemon's state each time it runs: use _if=.")
def daemon_as_expected(
    cgroup_driver: str | None = None, storage_driver: str | None = None
) -> Generator[Any, None, None]:
    """
    Check that the Docker daemon answers and, for each one given, uses ``cgroup_driver`` and ``storage_driver``
    (``facts.docker.DockerDaemon``). Changes nothing; a daemon that does not answer, or uses another driver, fails
    this host (not the others) with what it found.

    + cgroup_driver: the cgroup driver dockerd must use (``systemd``, ``cgroupfs``); ``None``: not checked
    + storage_driver: the storage driver dockerd must use (``overlay2``, ``zfs``, ``vfs``); ``None``: not checked

    **Example:**

    .. code:: python

        docker.daemon_as_expected(name="Docker's drivers", cgroup_driver="systemd", storage_driver="overlay2")
    """
    found = host.get_fact(DockerDaemon)
    if not found["answers"]:
        yield fail_host(f"the Docker daemon does not answer: {found['error'] or 'there is no docker CLI on the host'}")
        return
    checked, problems = [], []
    for what, wanted, actual in (
        ("cgroup driver", cgroup_driver, found["cgroup_driver"]),
        ("storage driver", storage_driver, found["storage_driver"]),
    ):
        if wanted is None:
            continue
        if actual != wanted:
            problems.append(f"its {what} is {actual}, not {wanted}{_driver_hint(what, wanted)}")
        checked.append(f"{what} {actual}")
    version = found["server_version"]
    if problems:
        yield fail_host(f"the Docker daemon {version} answers but {'; '.join(problems)}")
        return
    host.noop(f"the Docker daemon {version} answers" + (f" with {' and '.join(checked)}" if checked else ""))


@operation()
def group_members(users: list[str]) -> Generator[Any, None, None]:
    """
    Add each of ``users`` to the ``docker`` group (``usermod -aG``), leaving their other groups alone. Being in it
    lets a user run containers as root on the host: list only who should. A user the host does not have fails this
    host (this operation never creates users). Takes effect at the user's next login.

    + users: existing user names

    **Example:**

    .. code:: python

        docker.group_members(name="Builders run containers", users=["alice"])
    """
    found = host.get_fact(UserGroups, users=list(users))
    if missing := [user for user in users if found.get(user) is None]:
        yield fail_host(f"no such user: {', '.join(missing)} (add users to the docker group only once they exist)")
        return
    joining = [user for user in users if "docker" not in (found[user] or [])]
    if not joining:
        host.noop(f"already in the docker group: {', '.join(users)}")
        return
    for user in joining:
        yield StringCommand("usermod", "-aG", "docker", QuoteString(user))
