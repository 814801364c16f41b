"""Emulated hosts' prerequisites: which architectures, and what a binfmt_misc registration must say (no root needed:
``binfmt_misc`` is a folder here, its entries written as the kernel shows them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyinfra_iluvatar.sandbox import emulation
from pyinfra_iluvatar.sandbox.errors import PrerequisiteError

# /proc/sys/fs/binfmt_misc/qemu-aarch64 on this machine (Debian 12, qemu-user-static 1:7.2, registered from
# /usr/lib/binfmt.d/qemu-aarch64.conf), and the same entry as binfmt-support registers it (no F flag).
REGISTERED = """enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: POF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""
WITHOUT_F = REGISTERED.replace("flags: POF", "flags: P")


@pytest.fixture
def binfmt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``binfmt_misc`` with ``register``, qemu-aarch64-static installed (a file of that name)."""
    (tmp_path / "binfmt").mkdir()
    (tmp_path / "binfmt" / "register").write_text("")
    monkeypatch.setattr(emulation, "BINFMT", tmp_path / "binfmt")
    binary = tmp_path / "qemu-aarch64-static"
    binary.write_text("")
    monkeypatch.setattr(emulation.Emulator, "binary", property(lambda self: binary))
    return tmp_path / "binfmt"


def test_an_architecture_without_emulation_names_the_accepted_ones() -> None:
    with pytest.raises(PrerequisiteError, match=r"no emulation for 'riscv64' hosts: accepted arm64"):
        emulation.emulator("riscv64")


def test_a_registration_with_the_f_flag_is_accepted(binfmt: Path) -> None:
    (binfmt / "qemu-aarch64").write_text(REGISTERED)
    emulation.prepare("arm64", say=print)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (WITHOUT_F, r"registered without the F flag \(flags: P\).*echo -1 > .*qemu-aarch64"),
        (REGISTERED.replace("enabled", "disabled"), r"qemu-aarch64 is disabled: enable it"),
    ],
)
def test_a_registration_that_cannot_serve_a_host_says_what_to_do(binfmt: Path, entry: str, message: str) -> None:
    (binfmt / "qemu-aarch64").write_text(entry)
    with pytest.raises(PrerequisiteError, match=message):
        emulation.prepare("arm64", say=print)


def test_a_missing_registration_is_made_from_the_packages_line(
    binfmt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "qemu-aarch64.conf"
    conf.write_text(":qemu-aarch64:M::\\x7f\\x45\\x4c\\x46:\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF\n")
    monkeypatch.setattr(emulation.Emulator, "binfmt_conf", property(lambda self: conf))
    # The kernel answers a write to `register` with a new entry; this folder does not.
    with pytest.raises(PrerequisiteError, match=r"binfmt_misc took .*qemu-aarch64.conf's line but shows no"):
        emulation.prepare("arm64", say=print)
    assert (binfmt / "register").read_text() == conf.read_text().strip()


def test_an_image_whose_programs_do_not_run_says_the_kernel_cannot(tmp_path: Path) -> None:
    with pytest.raises(PrerequisiteError, match=r"this kernel cannot run arm64 programs \(chroot .* /usr/bin/true"):
        emulation.check_runs(tmp_path, "arm64")
