"""The sandbox as a whole: ``up``, ``down``, ``status``, and stopping or starting one host.

``Sandbox(state_dir, cache_dir).up(hosts=3)`` builds (or reuses) the image, creates the bridge, starts the proxy,
boots the hosts in parallel and waits until systemd in each has finished booting. Everything it makes is under
the state directory or named after it, so ``down`` removes all of it, after a crash too, and may be repeated.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pyinfra_iluvatar.sandbox import (
    cgroups,
    emulation,
    host,
    image,
    network,
    prerequisites,
    proxy,
    settings,
    ssh,
    state,
)
from pyinfra_iluvatar.sandbox.errors import SandboxError
from pyinfra_iluvatar.sandbox.locks import locked_file
from pyinfra_iluvatar.sandbox.processes import ProcessRef, find

GROUPS = ("workers", "build")
BOOT_TIMEOUT = 90.0
# An emulated host runs every program of its boot through QEMU: several times slower.
EMULATED_BOOT_TIMEOUT = 360.0
# Written first into every state directory `up` makes: `down` deletes no other non-empty directory.
MARKER = ".pyinfra-iluvatar-sandbox"
LOCKS = Path("/run/lock")

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class SandboxHost:
    """
    A host as ``status`` sees it. ``state``: ``running`` (sshd greets), ``starting`` (not yet), or ``stopped``;
    ``arch``: its Debian architecture (emulated when not this machine's).
    """

    name: str
    group: str
    address: str
    state: str
    arch: str


EMULATED_HOST_DATA = {"iluvatar_zfs": False}
"""The worker deploy's data an emulated host needs: Debian builds zfs-fuse for amd64 only (bookworm has no arm64
``zfs-fuse``), and no ZFS kernel module loads in a sandbox host."""

Shape = list[tuple[str, str, int]]
"""How many hosts of each group and architecture, in the order they are made: ``[(group, arch, count), ...]``."""


def _parallel(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``function`` over ``items`` in threads; re-raises the first error."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(function, items))


def _quiet(_: str) -> None:
    """Discard progress messages."""


class Sandbox:
    """N disposable Debian hosts with systemd, SSH and their own network namespace, on this machine."""

    def __init__(
        self,
        state_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
        *,
        net: int | None = None,
        mirror: str | None = None,
        proxy_allow: Sequence[str] | None = None,
        say: Callable[[str], None] = _quiet,
    ) -> None:
        """Each setting left out (None) comes from its environment variable, else its default (:mod:`.settings`).

        A bad value, given or from the environment, is a :class:`SandboxError` naming it and what is accepted.
        """
        self.state_dir = settings.STATE_DIR.get(state_dir)
        self.cache_dir = settings.CACHE_DIR.get(cache_dir)
        self._net = settings.NET.get(net)
        self.mirror = settings.MIRROR.get(mirror)
        self.proxy_allow = list(settings.PROXY_ALLOW.get(proxy_allow))
        self.say = say

    # What the rest of the project reads.

    @property
    def gateway(self) -> str:
        """This machine's address on the sandbox network (where the proxy listens; hosts reach it directly)."""
        current = state.load(self.state_dir)
        return network.SandboxNetwork(current.net if current else self._net).gateway

    @property
    def ssh_key(self) -> Path:
        """The private key that logs in as root on every host."""
        return self.state_dir / ssh.CLIENT_KEY

    @property
    def known_hosts(self) -> Path:
        """The known_hosts file with every host's key."""
        return self.state_dir / ssh.KNOWN_HOSTS

    def _require_state(self) -> state.SandboxState:
        current = state.load(self.state_dir)
        if current is None:
            raise SandboxError(
                f"no sandbox is up (state directory {self.state_dir}): run `pyinfra-iluvatar sandbox up` first"
            )
        return current

    @property
    def lock_file(self) -> Path:
        """This sandbox's lock, named for its state directory (other sandboxes never wait for it)."""
        digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:16]
        return LOCKS / f"pyinfra-iluvatar-sandbox-{digest}"

    def _locked(self) -> AbstractContextManager[None]:
        return locked_file(self.lock_file)

    def _paths(self, name: str) -> host.HostPaths:
        return host.HostPaths(self.state_dir / "hosts" / name)

    def status(self) -> list[SandboxHost]:
        """Every host with its address and state; empty when no sandbox is up."""
        current = state.load(self.state_dir)
        if current is None:
            return []

        def look(record: state.HostRecord) -> SandboxHost:
            if record.process is None or not record.process.alive():
                now = "stopped"
            else:
                now = "running" if network.answers(record.address, 22, banner=b"SSH-") else "starting"
            return SandboxHost(record.name, record.group, record.address, now, record.arch)

        return _parallel(look, current.hosts)

    def inventory(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        """
        pyinfra inventory groups (``workers``, ``build``) with each host's SSH data, and an emulated host's
        :data:`EMULATED_HOST_DATA`.
        """
        current = self._require_state()
        data = {
            "ssh_user": "root",
            "ssh_key": str(self.ssh_key),
            "ssh_known_hosts_file": str(self.known_hosts),
            "ssh_strict_host_key_checking": "yes",
            "ssh_allow_agent": False,
            "ssh_look_for_keys": False,
        }
        groups: dict[str, list[tuple[str, dict[str, Any]]]] = {group: [] for group in GROUPS}
        native = image.host_arch()
        for record in current.hosts:
            emulated = EMULATED_HOST_DATA if record.arch != native else {}
            groups[record.group].append((record.name, {**data, **emulated, "ssh_hostname": record.address}))
        return groups

    def ssh_command(self, name: str, *remote: str) -> list[str]:
        """The ``ssh`` argv that runs ``remote`` (or a login shell) on host ``name``."""
        return ssh.command(self.state_dir, self._require_state().host(name).address, *remote)

    # Lifecycle.

    def up(
        self,
        hosts: int = 3,
        build_hosts: int = 0,
        suite: str = "bookworm",
        arch: str | None = None,
        arm64_hosts: int = 0,
    ) -> list[SandboxHost]:
        """
        Bring up ``hosts`` workers and ``build_hosts`` build hosts of architecture ``arch`` (this machine's by
        default), and ``arm64_hosts`` more arm64 workers; reuse a sandbox that is up just so. Hosts of another
        architecture than this machine's run under emulation (:mod:`.emulation`) and are named for it
        (``worker-arm64-1``).

        A sandbox that is up with another shape is replaced; leftovers of a crashed one are cleaned up first.
        """
        if suite not in settings.SUITES:
            raise SandboxError(f"unknown suite {suite!r}: choose one of {', '.join(settings.SUITES)}")
        if hosts < 0 or build_hosts < 0 or arm64_hosts < 0 or hosts + build_hosts + arm64_hosts < 1:
            raise SandboxError("a sandbox needs at least one host")
        wanted = network.SandboxNetwork(self._net)
        if hosts + build_hosts + arm64_hosts > wanted.max_hosts:
            raise SandboxError(f"a sandbox holds at most {wanted.max_hosts} hosts")
        prerequisites.check(building=False, say=self.say)  # root first; then dpkg tells the architecture
        prerequisites.inotify_room(hosts + build_hosts + arm64_hosts, self.say)
        native = image.host_arch()
        arch = arch or native
        if arch != native:
            emulation.emulator(arch)  # an architecture there is no emulation for: said before anything is made
        shape = [
            (group, each, count)
            for group, each, count in (
                ("workers", arch, hosts),
                ("workers", "arm64", arm64_hosts),
                ("build", arch, build_hosts),
            )
            if count
        ]
        bases = {}
        for each in dict.fromkeys(each for _, each, _ in shape):
            if each != native:
                emulation.prepare(each, self.say)
            spec = image.ImageSpec(suite, each, self.mirror, emulated=each != native)
            if image.cached(self.cache_dir, spec) is None:
                prerequisites.check(building=True, say=self.say)
            # Before the state lock: other sandboxes need not wait.
            bases[each] = image.ensure(self.cache_dir, spec, self.say)
            if each != native:
                emulation.check_runs(bases[each], each)
        with self._locked():
            current = self._load_or_none()
            if current is not None and self._healthy(current) and self._same(current, wanted, bases, shape):
                try:  # it may have been left booting, or half-made by a killed `up`
                    _parallel(self._wait_booted, current.hosts)
                except SandboxError as error:
                    self.say(f"the sandbox in {self.state_dir} is not usable ({error}): making it again")
                else:
                    self.say(f"the sandbox in {self.state_dir} is already up")
                    return self.status()
            if current is not None or self._leftovers():
                self.say("taking down the previous sandbox" if current else "cleaning up after a crashed sandbox")
                self._teardown()
            network.check_free(wanted, str(self.state_dir))
            try:
                self._create(wanted, suite, bases, shape, native)
            except BaseException:
                self._teardown()
                raise
        return self.status()

    def down(self) -> None:
        """Remove the sandbox: hosts, mounts, veths, bridge, proxy, state. Safe to repeat."""
        with self._locked():
            self._teardown()

    def stop_host(self, name: str) -> None:
        """Cut one host's power (SIGKILL to its PID 1); its disk stays, :meth:`start_host` boots it again."""
        with self._locked():
            current = self._require_state()
            record = current.host(name)
            host.kill(self._paths(name))
            record.process = None
            state.save(self.state_dir, current)

    def start_host(self, name: str) -> None:
        """Boot a stopped host again and wait until it is up."""
        with self._locked():
            current = self._require_state()
            record = current.host(name)
            if record.process is not None and record.process.alive():
                return
            paths = self._paths(name)
            host.mount(paths, Path(record.image))
            record.process = host.boot(
                paths, record.machine, name, record.machine_id, network.SandboxNetwork(current.net).bridge
            )
            state.save(self.state_dir, current)
            self._wait_booted(record)

    # Internals.

    def _load_or_none(self) -> state.SandboxState | None:
        try:
            return state.load(self.state_dir)
        except SandboxError as error:
            self.say(f"ignoring the damaged state file ({error})")
            return None

    def _same(
        self, current: state.SandboxState, wanted: network.SandboxNetwork, bases: dict[str, Path], shape: Shape
    ) -> bool:
        """
        Whether the sandbox up is the one wanted: network, hosts of each group and architecture, each on the image
        wanted (suite, recipe, local CAs, mirror), proxy.
        """
        hosts = [(h.group, h.arch, h.image) for h in current.hosts]
        wanted_hosts = [(group, each, str(bases[each])) for group, each, count in shape for _ in range(count)]
        return current.net == wanted.index and hosts == wanted_hosts and current.proxy.allow == self.proxy_allow

    def _healthy(self, current: state.SandboxState) -> bool:
        return (
            network.link_exists(network.SandboxNetwork(current.net).bridge)
            and current.proxy.process is not None
            and current.proxy.process.alive()
            and all(record.process is not None and record.process.alive() for record in current.hosts)
        )

    def _proxy_processes(self) -> list[ProcessRef]:
        marker = str(self.state_dir)
        return find(lambda pid: proxy.is_proxy_of(pid, marker))

    def _leftovers(self) -> bool:
        """Whether anything of an earlier sandbox is left (everything it made is in or named by the state dir)."""
        return bool(self.state_dir.exists() or self._proxy_processes() or network.bridges_of(str(self.state_dir)))

    def _create(
        self, net: network.SandboxNetwork, suite: str, bases: dict[str, Path], shape: Shape, native: str
    ) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        (self.state_dir / MARKER).write_text("a pyinfra-iluvatar sandbox: `pyinfra-iluvatar sandbox down` removes it\n")
        key = ssh.client_key(self.state_dir)
        records: list[state.HostRecord] = []
        for group, arch, count in shape:
            role = "worker" if group == "workers" else group
            prefix = role if arch == native else f"{role}-{arch}"
            for number in range(1, count + 1):
                position = len(records)
                records.append(
                    state.HostRecord(
                        name=f"{prefix}-{number}",
                        group=group,
                        machine=net.machine_name(position),
                        address=net.host_address(position),
                        machine_id=host.new_machine_id(),
                        arch=arch,
                        image=str(bases[arch]),
                    )
                )
        current = state.SandboxState(
            net=net.index,
            suite=suite,
            proxy=state.ProxyRecord(proxy.PORT, self.proxy_allow),
            hosts=records,
        )
        state.save(self.state_dir, current)
        network.create_bridge(net, str(self.state_dir))
        current.proxy.process = proxy.start(
            net.gateway, proxy.PORT, self.proxy_allow, str(self.state_dir), self.state_dir / "proxy.log"
        )
        state.save(self.state_dir, current)
        authorized = key.with_suffix(".pub").read_text().strip()
        neighbours = [(record.name, record.address) for record in records]

        def create(record: state.HostRecord) -> str:
            paths = self._paths(record.name)
            host.mount(paths, Path(record.image))
            host.configure(
                paths,
                host.HostConfig(
                    name=record.name,
                    address=record.address,
                    subnet=net.subnet,
                    gateway=net.gateway,
                    proxy_port=proxy.PORT,
                    machine_id=record.machine_id,
                    authorized_key=authorized,
                    neighbours=neighbours,
                ),
            )
            public = ssh.generate_host_key(paths.root, record.name)
            record.process = host.boot(paths, record.machine, record.name, record.machine_id, net.bridge)
            return public

        public_keys = _parallel(create, records)
        state.save(self.state_dir, current)
        ssh.write_known_hosts(self.state_dir, zip([r.address for r in records], public_keys, strict=True))
        self.say(f"booting {len(records)} host(s) on {net.bridge} ({net.subnet})")
        _parallel(self._wait_booted, records)

    def _wait_booted(self, record: state.HostRecord) -> None:
        """Wait for SSH, then for systemd to finish booting; say which units failed, if any."""
        if record.process is None:
            raise SandboxError(f"{record.name} has not been started")
        paths = self._paths(record.name)
        timeout = BOOT_TIMEOUT if record.arch == image.host_arch() else EMULATED_BOOT_TIMEOUT
        host.wait_for_ssh(paths, record.address, record.process, timeout)
        command = ssh.command(
            self.state_dir, record.address, "systemctl is-system-running --wait; systemctl --failed --plain --no-legend"
        )
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as error:
            raise SandboxError(f"{record.name}: systemd did not finish booting in {timeout:.0f} s") from error
        lines = result.stdout.splitlines()
        if result.returncode == 255 or not lines:
            raise SandboxError(f"{record.name}: ssh failed: {result.stderr.strip()}")
        if lines[0] not in ("running", "degraded"):
            raise SandboxError(
                f"{record.name}: systemd is {lines[0]!r} after booting; console:\n{paths.console_tail()}"
            )
        if lines[0] == "degraded":
            self.say(f"{record.name}: degraded, failed units: {'; '.join(lines[1:])}")

    def _check_ours(self) -> None:
        """Raise :class:`SandboxError` if the state directory is something else (a mistyped ``--state-dir``)."""
        directory = self.state_dir
        if not directory.exists():
            return
        if directory.is_dir() and (
            (directory / MARKER).exists() or (directory / state.STATE_FILE).exists() or not any(directory.iterdir())
        ):
            return
        raise SandboxError(
            f"{directory} is not a sandbox's state directory (not empty, and no {MARKER} or {state.STATE_FILE} in"
            " it): refusing to unmount or delete anything there; check --state-dir"
        )

    def _teardown(self) -> None:
        """Stop and remove everything this sandbox made: all of it is in, or named after, the state directory.

        A non-empty state directory without the marker or a state file is not a sandbox's: it is left alone.
        """
        self._check_ours()
        hosts_dir = self.state_dir / "hosts"
        _parallel(host.kill, [host.HostPaths(d) for d in sorted(hosts_dir.iterdir())] if hosts_dir.is_dir() else [])
        for process in self._proxy_processes():
            process.stop()
        host.unmount_all(self.state_dir)
        for bridge in network.bridges_of(str(self.state_dir)):
            # Cgroups of this network's hosts whose directories are gone (a state directory deleted by hand).
            for machine in cgroups.machines(network.SandboxNetwork.of_bridge(bridge).machine_prefix):
                host.kill_cgroup(machine)
            network.delete_link(bridge)
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
