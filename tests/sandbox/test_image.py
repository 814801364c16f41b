"""Image cache naming: one directory per recipe (no root needed)."""

from __future__ import annotations

import os
from pathlib import Path

from pyinfra_iluvatar.sandbox.host import NETWORK_UNIT
from pyinfra_iluvatar.sandbox.image import ADDRESS_UNIT, NETWORKD_UNITS, ImageSpec, _adjust_emulated, cached


def test_name_is_readable_and_changes_with_the_recipe() -> None:
    bookworm = ImageSpec("bookworm", "amd64", "http://deb.debian.org/debian")
    assert bookworm.name.startswith("debian-bookworm-amd64-")
    assert bookworm.name == ImageSpec("bookworm", "amd64", "http://deb.debian.org/debian").name
    others = {
        ImageSpec("trixie", "amd64", "http://deb.debian.org/debian").name,
        ImageSpec("bookworm", "arm64", "http://deb.debian.org/debian").name,
        ImageSpec("bookworm", "amd64", "http://mirror.example/debian").name,
    }
    assert bookworm.name not in others and len(others) == 3


def test_an_image_without_its_manifest_is_not_cached(tmp_path: Path) -> None:
    spec = ImageSpec("bookworm", "amd64", "http://deb.debian.org/debian")
    (tmp_path / spec.name).mkdir()
    assert cached(tmp_path, spec) is None, "an interrupted build"
    (tmp_path / f"{spec.name}.json").write_text("{}")
    assert cached(tmp_path, spec) == tmp_path / spec.name


def test_an_emulated_image_has_its_own_recipe_and_a_native_one_keeps_its_name() -> None:
    native = ImageSpec("bookworm", "arm64", "http://deb.debian.org/debian")
    emulated = ImageSpec("bookworm", "arm64", "http://deb.debian.org/debian", emulated=True)
    assert emulated.name != native.name and emulated.name.startswith("debian-bookworm-arm64-")
    assert "emulated_recipe_version" not in native.recipe  # images built before emulation existed stay cached


def test_an_emulated_image_sets_its_address_with_ip_and_drops_credentials(tmp_path: Path) -> None:
    """On a tree shaped like Debian's (unit files as bookworm's systemd 252 ships them, trimmed)."""
    units = tmp_path / "lib/systemd/system"
    units.mkdir(parents=True)
    (units / "systemd-sysctl.service").write_text(
        "[Service]\nExecStart=/lib/systemd/systemd-sysctl\nLoadCredential=sysctl.extra\n"
    )
    (units / "ssh.service").write_text("[Service]\nExecStart=/usr/sbin/sshd -D\n")
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    _adjust_emulated(tmp_path)
    unit = (tmp_path / "etc/systemd/system" / ADDRESS_UNIT).read_text()
    assert "ip address replace" in unit and f"/{NETWORK_UNIT}" in unit
    assert (tmp_path / "etc/systemd/system/multi-user.target.wants" / ADDRESS_UNIT).is_symlink()
    for masked in NETWORKD_UNITS:
        assert os.readlink(tmp_path / "etc/systemd/system" / masked) == "/dev/null"
    drop_ins = sorted(path.relative_to(tmp_path) for path in (tmp_path / "etc/systemd/system").glob("*.d/*.conf"))
    assert [str(path) for path in drop_ins] == [
        "etc/systemd/system/systemd-sysctl.service.d/pyinfra-iluvatar-sandbox-emulated.conf"
    ]
    assert "LoadCredential=\n" in (tmp_path / drop_ins[0]).read_text()
