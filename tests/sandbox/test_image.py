"""Image cache naming: one directory per recipe (no root needed)."""

from __future__ import annotations

from pathlib import Path

from pyinfra_iluvatar.sandbox.image import ImageSpec, cached


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
