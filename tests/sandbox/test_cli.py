"""``pyinfra-iluvatar sandbox`` and the sandbox inventory refuse bad settings with a message, no traceback (no root)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pyinfra_iluvatar.cli import main
from pyinfra_iluvatar.sandbox import Sandbox, settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_sandbox_is_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """State in the test's directory, other settings unset; ``up`` fails the test if it gets to build anything."""

    def up(*args: object, **kwargs: object) -> None:
        raise AssertionError("Sandbox.up was called with a bad setting")

    monkeypatch.setattr(Sandbox, "up", up)
    monkeypatch.setenv(settings.STATE_DIR_ENV, str(tmp_path / "state"))
    for name in (settings.CACHE_DIR_ENV, settings.MIRROR_ENV, settings.NET_ENV, settings.PROXY_ALLOW_ENV):
        monkeypatch.delenv(name, raising=False)


def sandbox(*args: str, **env: str) -> Result:
    return CliRunner().invoke(main, ["sandbox", *args], env=env)


def test_status_with_good_settings() -> None:
    result = sandbox("status", PYINFRA_ILUVATAR_SANDBOX_NET="7")
    assert (result.exit_code, result.output) == (0, "no sandbox is up\n")


@pytest.mark.parametrize("value", ["abc", "256", "-1", "1e3"])
@pytest.mark.parametrize("command", ["status", "down", "up"])
def test_a_bad_network_number_in_the_environment(tmp_path: Path, command: str, value: str) -> None:
    result = sandbox(command, PYINFRA_ILUVATAR_SANDBOX_NET=value)
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: PYINFRA_ILUVATAR_SANDBOX_NET = '{value}' is not valid ("), result.output
    assert result.output.endswith("accepted: an integer from 0 to 255 (bridge ilusbxN, addresses 198.18.N.0/24)\n")
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        (settings.MIRROR_ENV, "not a url", "'not a url' is not valid (contains whitespace"),
        (settings.MIRROR_ENV, "https://me:secret@example.net/debian", "'https://***@example.net/debian' is not"),
        (settings.PROXY_ALLOW_ENV, "pypi.org,*", "'pypi.org,*' is not valid (bad allowlist entry '*': not a host"),
    ],
)
def test_other_bad_settings_in_the_environment(name: str, value: str, shown: str) -> None:
    result = sandbox("up", **{name: value})
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {name} = {shown}"), result.output
    assert "secret" not in result.output


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("--proxy-allow", "*", "not a host name, IPv4 address or .DOMAIN"),
        ("--proxy-allow", "", "empty"),
        ("--proxy-allow", " ", "empty"),
        ("--proxy-allow", "pypi .org", "contains whitespace"),
        ("--proxy-allow", "pypi.org:0", "the port is not a number from 1 to 65535"),
        ("--proxy-allow", "pypi.org:99999", "the port is not a number from 1 to 65535"),
        ("--proxy-allow", "https://pypi.org", "a URL: give its host name only"),
        ("--mirror", "not a url", "contains whitespace or control characters"),
        ("--mirror", "ftp://deb.debian.org/debian", "not an http:// or https:// URL"),
    ],
)
def test_bad_options_are_refused_before_anything_is_built(tmp_path: Path, option: str, value: str, reason: str) -> None:
    result = sandbox("up", "--proxy-allow", "deb.debian.org", option, value)
    assert result.exit_code == 2
    assert f"Error: Invalid value for '{option}': {value!r} is not valid ({reason}); accepted: " in result.output
    assert not (tmp_path / "state").exists()


def test_a_mirror_option_with_credentials_is_not_echoed() -> None:
    result = sandbox("up", "--mirror", "https://me:secret@example.net/debian")
    assert result.exit_code == 2
    assert "'https://***@example.net/debian' is not valid (holds credentials" in result.output
    assert "secret" not in result.output


def test_the_inventory_reports_a_bad_setting_without_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, settings.NET_ENV: "abc"}  # the fixture set the state directory, unset the rest
    result = subprocess.run(
        [Path(sys.executable).parent / "pyinfra", ROOT / "inventories" / "sandbox.py", "debug-inventory"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "PYINFRA_ILUVATAR_SANDBOX_NET = 'abc' is not valid (not an integer); accepted: an integer" in output
    assert "Traceback" not in output
    assert not (tmp_path / "pyinfra-debug.log").exists()


@pytest.mark.parametrize(
    ("option", "value", "shown"),
    [
        ("--arch", "riscv64", "'riscv64' is not one of 'amd64', 'arm64'"),
        ("--arch", "aarch64", "'aarch64' is not one of 'amd64', 'arm64'"),
        ("--arm64-hosts", "-1", "-1 is not in the range x>=0"),
        ("--arm64-hosts", "two", "'two' is not a valid integer"),
    ],
)
def test_bad_architecture_options_are_refused_before_anything_is_built(option: str, value: str, shown: str) -> None:
    result = sandbox("up", option, value)
    assert result.exit_code == 2
    assert f"Invalid value for '{option}': {shown}" in result.output, result.output
