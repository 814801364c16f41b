"""The base image every sandbox host boots from: a minimal Debian built once with debootstrap, then cached.

An image is a directory in the cache named for its recipe (suite, architecture, mirror, packages and the
adjustments below), with a ``NAME.json`` manifest beside it written last: a directory without its manifest is an
interrupted build and is built again. Hosts never write to an image: each runs on an overlay of it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pyinfra_iluvatar.sandbox import host
from pyinfra_iluvatar.sandbox.errors import SandboxError
from pyinfra_iluvatar.sandbox.locks import locked
from pyinfra_iluvatar.sandbox.processes import command_line, find, run
from pyinfra_iluvatar.sandbox.settings import SECURITY_MIRROR

# What a bare server has and pyinfra needs over SSH; deploys install the rest (python3 is not needed).
PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "iproute2", "ca-certificates", "curl")
# Timers that would start apt at random and hold the dpkg lock while a deploy runs.
MASKED_UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer")
# CA certificates this machine added locally (a TLS-inspecting egress proxy's, say): hosts reach the registries
# through this machine, so they trust them too.
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")
# Bump when the adjustments in `_adjust` change, so cached images built the old way are not used.
RECIPE_VERSION = 1
# An emulated host's adjustments (`_adjust_emulated`); bump when they change. Not in a native image's recipe.
EMULATED_RECIPE_VERSION = 1
# Under QEMU, systemd-networkd fails ("Protocol not supported": a netlink family QEMU does not translate), and so
# does every unit with credentials (status 243/CREDENTIALS): hosts set their address with `ip` instead.
ADDRESS_UNIT = "pyinfra-iluvatar-sandbox-address.service"
NETWORKD_UNITS = ("systemd-networkd.service", "systemd-networkd.socket", "systemd-networkd-wait-online.service")
# debootstrap takes about a minute on a good link; a stalled mirror must not hang `sandbox up` for ever.
DEBOOTSTRAP_TIMEOUT = 20 * 60

SSHD_CONFIG = """\
# pyinfra-iluvatar sandbox: root by key only; each host has its own ed25519 host key.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""
RESOLV_CONF = "# pyinfra-iluvatar sandbox: no DNS here; package registries are reached through the proxy.\n"


@dataclass(frozen=True)
class ImageSpec:
    """
    Which image: Debian ``suite`` for ``arch`` from ``mirror``; ``emulated`` when ``arch`` is not this machine's
    (its hosts run under QEMU: :mod:`.emulation`).
    """

    suite: str
    arch: str
    mirror: str
    emulated: bool = False

    @property
    def recipe(self) -> dict[str, object]:
        """Everything that decides the image's content."""
        recipe: dict[str, object] = {
            "suite": self.suite,
            "arch": self.arch,
            "mirror": self.mirror,
            "packages": list(PACKAGES),
            "masked": list(MASKED_UNITS),
            "local_cas": {ca.name: hashlib.sha256(ca.read_bytes()).hexdigest() for ca in local_cas()},
            "recipe_version": RECIPE_VERSION,
        }
        if self.emulated:
            recipe["emulated_recipe_version"] = EMULATED_RECIPE_VERSION
        return recipe

    @property
    def name(self) -> str:
        """The image's directory name in the cache: readable, and different for every recipe."""
        digest = hashlib.sha256(json.dumps(self.recipe, sort_keys=True).encode()).hexdigest()
        return f"debian-{self.suite}-{self.arch}-{digest[:12]}"


def local_cas() -> list[Path]:
    """The CA certificates this machine added locally (``/usr/local/share/ca-certificates/*.crt``)."""
    return sorted(LOCAL_CA_DIR.glob("*.crt")) if LOCAL_CA_DIR.is_dir() else []


@functools.cache
def host_arch() -> str:
    """This machine's Debian architecture (``amd64``, ``arm64``, ...), asked of dpkg once."""
    return run(["dpkg", "--print-architecture"]).strip()


def cached(cache_dir: Path, spec: ImageSpec) -> Path | None:
    """The complete cached image for ``spec``, or None."""
    path = cache_dir / spec.name
    return path if path.is_dir() and (cache_dir / f"{spec.name}.json").is_file() else None


def ensure(cache_dir: Path, spec: ImageSpec, say: Callable[[str], None]) -> Path:
    """The image for ``spec``: from the cache, or built now (about a minute: 62 s on a 2-core machine) and cached."""
    with locked(cache_dir):
        image = cached(cache_dir, spec)
        if image is not None:
            return image
        path = cache_dir / spec.name
        partial = cache_dir / f".{spec.name}.partial"
        log = cache_dir / f"{spec.name}.log"
        # A debootstrap left running by a killed `sandbox up` would go on writing into this build.
        for builder in find(lambda pid: any(str(partial) in arg for arg in command_line(pid))):
            builder.stop()
        for leftover in (partial, path):
            if leftover.exists():
                shutil.rmtree(leftover)
        say(f"building the {spec.suite} image with debootstrap (once; log: {log})")
        started = time.monotonic()
        _debootstrap(spec, partial, log)
        _adjust(partial, spec)
        partial.rename(path)
        elapsed = time.monotonic() - started
        manifest = {**spec.recipe, "build_seconds": round(elapsed, 1), "built": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (cache_dir / f"{spec.name}.json").write_text(json.dumps(manifest, indent=2) + "\n")
        say(f"built image {path} in {elapsed:.0f} s")
        return path


def _debootstrap(spec: ImageSpec, target: Path, log: Path) -> None:
    argv = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        f"--arch={spec.arch}",
        spec.suite,
        str(target),
        spec.mirror,
    ]
    with log.open("w") as output:
        try:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=DEBOOTSTRAP_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise SandboxError(
                f"debootstrap of {spec.suite} did not finish within {DEBOOTSTRAP_TIMEOUT // 60} min (log {log})"
            ) from error
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise SandboxError(f"debootstrap of {spec.suite} failed (exit {result.returncode}, log {log}):\n{tail}")


def _adjust(root: Path, spec: ImageSpec) -> None:
    """Make the bootstrapped tree a template for many hosts: nothing per-host in it, networkd on, apt quiet."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/ssh/sshd_config.d/pyinfra-iluvatar-sandbox.conf").write_text(SSHD_CONFIG)
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text(RESOLV_CONF)
    (root / "etc/machine-id").write_text("")
    (root / "etc/hostname").write_text("debian\n")
    (root / "etc/apt/sources.list").write_text(
        f"deb {spec.mirror} {spec.suite} main contrib\n"
        f"deb {spec.mirror} {spec.suite}-updates main contrib\n"
        f"deb {SECURITY_MIRROR} {spec.suite}-security main contrib\n"
    )
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_*"):
        for path in root.glob(pattern):
            path.unlink()
    cas = local_cas()
    for ca in cas:
        shutil.copyfile(ca, root / "usr/local/share/ca-certificates" / ca.name)
    if cas:
        run(["chroot", str(root), "update-ca-certificates"])
    run(["systemctl", f"--root={root}", "mask", *MASKED_UNITS])
    if spec.emulated:
        _adjust_emulated(root)
    else:
        run(["systemctl", f"--root={root}", "enable", "systemd-networkd.service"])


def _adjust_emulated(root: Path) -> None:
    """
    What an image needs to boot under QEMU: systemd-networkd masked and ``ip`` setting the address networkd
    would have (from the same per-host ``.network`` file), and units' credentials dropped (systemd cannot set
    them up there; none of these units gets any in the sandbox).
    """
    network = "/" + host.NETWORK_UNIT
    (root / "etc/systemd/system" / ADDRESS_UNIT).write_text(
        "[Unit]\n"
        "Description=pyinfra-iluvatar sandbox: host0's address (systemd-networkd cannot run under emulation)\n"
        "DefaultDependencies=no\n"
        "Before=network.target ssh.service\n"
        "Wants=network.target\n"
        f"ConditionPathExists={network}\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        "ExecStart=/bin/sh -c 'ip link set host0 up && ip address replace"
        f' "$(sed -n "s/^Address=//p" {network})" dev host0\'\n\n'
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
    run(["systemctl", f"--root={root}", "enable", ADDRESS_UNIT])
    run(["systemctl", f"--root={root}", "mask", *NETWORKD_UNITS])
    for unit in sorted((root / "lib/systemd/system").glob("*.service")):
        if any(line.startswith("LoadCredential=") for line in unit.read_text().splitlines()):
            drop_in = root / "etc/systemd/system" / f"{unit.name}.d" / "pyinfra-iluvatar-sandbox-emulated.conf"
            drop_in.parent.mkdir(parents=True, exist_ok=True)
            drop_in.write_text(
                "# pyinfra-iluvatar sandbox: QEMU cannot set up credentials.\n[Service]\nLoadCredential=\n"
            )
