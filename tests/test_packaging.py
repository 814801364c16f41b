"""The package as users get it: a wheel with one top-level package, its types and license, importable anywhere."""

from __future__ import annotations

import email
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

import pyinfra_iluvatar

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
        check=True,
    )
    (built,) = out.glob("pyinfra_iluvatar-*.whl")
    return built


def test_wheel_installs_only_pyinfra_iluvatar(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"pyinfra_iluvatar"}
    for package in ("facts", "operations", "deploys"):
        assert f"pyinfra_iluvatar/{package}/__init__.py" in names
    assert not [name for name in names if "/tests/" in name], "tests must not ship in the wheel"


def test_wheel_ships_types_and_license(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    assert "pyinfra_iluvatar/py.typed" in names, "type checkers would ignore the package's hints"
    (license_file,) = [name for name in names if name.endswith(".dist-info/licenses/LICENSE")]
    assert archive.read(license_file) == (ROOT / "LICENSE").read_bytes()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n\nCopyright (c) 2026 pyinfra-iluvatar authors\n")


def test_wheel_metadata(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    (metadata_file,) = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
    metadata = email.message_from_string(archive.read(metadata_file).decode())
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    expected = {
        *(f"Programming Language :: Python :: 3.{minor}" for minor in range(10, 14)),
        "Operating System :: POSIX :: Linux",
        "Intended Audience :: System Administrators",
        "Topic :: System :: Systems Administration",
        "Typing :: Typed",
    }
    assert expected <= set(metadata.get_all("Classifier", []))
    assert "Ilúvatar, https://github.com/COS-IN/iluvatar-faas" in metadata.get_all("Project-URL", [])


def test_wheel_imports_and_answers_from_another_directory(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--quiet", str(wheel)], check=True, cwd=tmp_path)
    imported = subprocess.run(
        [
            python,
            "-c",
            "import pyinfra_iluvatar.facts.network, pyinfra_iluvatar.facts.zfs,"
            " pyinfra_iluvatar.facts.containerd, pyinfra_iluvatar.facts.nvidia;"
            " print(pyinfra_iluvatar.facts.network.__file__)",
        ],
        check=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert imported.stdout.startswith(str(env_dir)), "imported the checkout instead of the installed wheel"
    version = subprocess.run(
        [env_dir / "bin" / "pyinfra-iluvatar", "--version"], check=True, capture_output=True, text=True
    )
    assert version.stdout.strip() == f"pyinfra-iluvatar, version {pyinfra_iluvatar.__version__}"
