"""Hosts of another architecture than this machine's, run under user-mode emulation (QEMU through ``binfmt_misc``).

An arm64 host is an arm64 Debian image booted by systemd-nspawn like any other: the kernel hands each of its
aarch64 programs to ``qemu-aarch64-static``, because Debian's ``qemu-user-static`` registers that interpreter
with ``binfmt_misc``. The registration must carry the ``F`` flag (the kernel opens the interpreter once, at
registration): inside a host's own root, the interpreter's path does not exist. :func:`prepare` installs the
package, mounts ``binfmt_misc`` and registers the interpreter where any is missing, then checks all of it;
:func:`check_runs` runs a program of the image itself, which proves the kernel can run that architecture.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pyinfra_iluvatar.sandbox.errors import PrerequisiteError
from pyinfra_iluvatar.sandbox.prerequisites import apt_install

BINFMT = Path("/proc/sys/fs/binfmt_misc")
PACKAGE = "qemu-user-static"


@dataclass(frozen=True)
class Emulator:
    """How this machine runs programs of Debian architecture ``arch``: QEMU's ``qemu`` user-mode emulator."""

    arch: str
    qemu: str

    @property
    def binary(self) -> Path:
        """The static emulator the package installs."""
        return Path("/usr/bin") / f"{self.qemu}-static"

    @property
    def registration(self) -> Path:
        """The interpreter's entry in ``binfmt_misc`` once registered."""
        return BINFMT / self.qemu

    @property
    def binfmt_conf(self) -> Path:
        """The package's registration line (``systemd-binfmt``'s format, which is what ``register`` takes)."""
        return Path("/usr/lib/binfmt.d") / f"{self.qemu}.conf"


EMULATORS = {"arm64": Emulator("arm64", "qemu-aarch64")}
"""The architectures a sandbox host may have besides this machine's."""


def emulator(arch: str) -> Emulator:
    """The emulator for ``arch``; :class:`PrerequisiteError` naming what is accepted for another."""
    try:
        return EMULATORS[arch]
    except KeyError:
        raise PrerequisiteError(
            f"no emulation for {arch!r} hosts: accepted {', '.join(sorted(EMULATORS))} (or this machine's own)"
        ) from None


def _flags(registration: Path) -> str:
    """The ``flags:`` of a ``binfmt_misc`` entry (``''`` when it has none), or ``disabled``."""
    lines = registration.read_text().splitlines()
    if not lines or lines[0] != "enabled":
        return "disabled"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("flags:")), "")


def prepare(arch: str, say: Callable[[str], None]) -> None:
    """
    Make this machine run ``arch`` programs in any mount namespace: ``qemu-user-static`` installed (apt-get),
    ``binfmt_misc`` mounted, the interpreter registered with the ``F`` flag. Raises :class:`PrerequisiteError`
    saying what is missing and what to do where it cannot be done here.
    """
    chosen = emulator(arch)
    if not chosen.binary.exists():
        if shutil.which("apt-get") is None:
            raise PrerequisiteError(f"{arch} hosts need {chosen.binary}: install the package {PACKAGE}")
        apt_install([PACKAGE], say, why=f"{arch} hosts run under emulation")
    if not (BINFMT / "register").exists():
        result = subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True, text=True, check=False
        )
        if not (BINFMT / "register").exists():
            raise PrerequisiteError(
                f"this kernel cannot run {arch} programs: binfmt_misc is not mounted at {BINFMT} and mounting it"
                f" failed ({(result.stderr or result.stdout).strip() or f'exit {result.returncode}'}); {arch} hosts"
                " need binfmt_misc (a kernel with CONFIG_BINFMT_MISC, and a container allowed to mount it)"
            )
    if not chosen.registration.exists():
        if not chosen.binfmt_conf.is_file():
            raise PrerequisiteError(f"{chosen.binfmt_conf} is missing: reinstall the package {PACKAGE}")
        say(f"registering {chosen.qemu} with binfmt_misc")
        try:
            (BINFMT / "register").write_text(chosen.binfmt_conf.read_text().strip())
        except OSError as error:
            raise PrerequisiteError(
                f"this kernel refused to register {chosen.qemu} with binfmt_misc ({error}): {arch} hosts cannot run"
            ) from error
        if not chosen.registration.exists():
            raise PrerequisiteError(
                f"binfmt_misc took {chosen.binfmt_conf}'s line but shows no {chosen.registration}: {arch} hosts"
                " cannot run"
            )
    flags = _flags(chosen.registration)
    if flags == "disabled":
        raise PrerequisiteError(
            f"{chosen.registration} is disabled: enable it (echo 1 > {chosen.registration}) to run {arch} hosts"
        )
    if "F" not in flags:
        raise PrerequisiteError(
            f"{chosen.qemu} is registered without the F flag (flags: {flags or 'none'}), so a host's programs"
            f" cannot find their interpreter inside the host: remove it (echo -1 > {chosen.registration}) and run"
            " `sandbox up` again, which registers the package's own entry (flags OPF)"
        )


def check_runs(image: Path, arch: str) -> None:
    """
    Run ``/usr/bin/true`` of ``image`` (an ``arch`` root) in a chroot: :class:`PrerequisiteError` saying that this
    kernel cannot run ``arch`` programs when it fails.
    """
    try:
        result = subprocess.run(
            ["chroot", str(image), "/usr/bin/true"], capture_output=True, text=True, timeout=60, check=False
        )
    except subprocess.TimeoutExpired:
        raise PrerequisiteError(
            f"this machine did not run an {arch} program within 60 s (chroot {image} true)"
        ) from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip() or f"exit {result.returncode}"
        raise PrerequisiteError(
            f"this kernel cannot run {arch} programs (chroot {image} /usr/bin/true: {detail}); check"
            f" {emulator(arch).registration}"
        )
