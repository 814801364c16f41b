"""Sandbox settings, given as arguments or from the environment: checked when a ``Sandbox`` is made (no root)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pyinfra_iluvatar.sandbox import Sandbox, settings
from pyinfra_iluvatar.sandbox.errors import SandboxError

ENVIRONMENT = (
    settings.STATE_DIR_ENV,
    settings.CACHE_DIR_ENV,
    settings.MIRROR_ENV,
    settings.NET_ENV,
    settings.PROXY_ALLOW_ENV,
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


def test_directories_may_be_strings_or_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    box = Sandbox("state", str(tmp_path / "cache"))
    assert (box.state_dir, box.cache_dir) == (tmp_path / "state", tmp_path / "cache")
    assert Sandbox(tmp_path / "state").state_dir == tmp_path / "state"


def test_defaults() -> None:
    box = Sandbox()
    assert (box.state_dir, box.cache_dir, box.mirror) == (
        settings.DEFAULT_STATE_DIR,
        settings.DEFAULT_CACHE_DIR,
        settings.DEFAULT_MIRROR,
    )
    assert box.proxy_allow == list(settings.DEFAULT_PROXY_ALLOW)
    assert settings.NET.get() == 0


def test_the_environment_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.STATE_DIR_ENV, str(tmp_path / "state"))
    monkeypatch.setenv(settings.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(settings.MIRROR_ENV, "https://mirror.example.net/debian")
    monkeypatch.setenv(settings.NET_ENV, "7")
    monkeypatch.setenv(settings.PROXY_ALLOW_ENV, "deb.debian.org, .example.net,cache.local:3142")
    box = Sandbox()
    assert (box.state_dir, box.cache_dir) == (tmp_path / "state", tmp_path / "cache")
    assert (box.mirror, box.gateway) == ("https://mirror.example.net/debian", "198.18.7.1")
    assert box.proxy_allow == ["deb.debian.org", ".example.net", "cache.local:3142"]


def test_an_empty_variable_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENVIRONMENT:
        monkeypatch.setenv(name, "")
    box = Sandbox()
    assert (box.state_dir, box.cache_dir, box.mirror) == (
        settings.DEFAULT_STATE_DIR,
        settings.DEFAULT_CACHE_DIR,
        settings.DEFAULT_MIRROR,
    )
    assert box.proxy_allow == list(settings.DEFAULT_PROXY_ALLOW)
    assert settings.NET.get() == 0


def test_arguments_win_over_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.NET_ENV, "abc")
    monkeypatch.setenv(settings.PROXY_ALLOW_ENV, "*")
    box = Sandbox(tmp_path, net=9, proxy_allow=["pypi.org"])
    assert (box.gateway, box.proxy_allow) == ("198.18.9.1", ["pypi.org"])


@pytest.mark.parametrize(
    ("name", "value", "reason", "accepted"),
    [
        (settings.NET_ENV, "abc", "not an integer", "an integer from 0 to 255"),
        (settings.NET_ENV, "1e3", "not an integer", "an integer from 0 to 255"),
        (settings.NET_ENV, " 3", "not an integer", "an integer from 0 to 255"),
        (settings.NET_ENV, "256", "out of range", "an integer from 0 to 255"),
        (settings.NET_ENV, "-1", "out of range", "an integer from 0 to 255"),
        (settings.MIRROR_ENV, "not a url", "contains whitespace", "an http:// or https:// URL"),
        (settings.MIRROR_ENV, "ftp://deb.debian.org/debian", "not an http:// or https:// URL", "an http://"),
        (settings.PROXY_ALLOW_ENV, "deb.debian.org,*", "bad allowlist entry '\\*': not a host name", "HOST"),
        (settings.PROXY_ALLOW_ENV, "deb.debian.org,", "bad allowlist entry '': empty", "comma-separated"),
        (settings.PROXY_ALLOW_ENV, "pypi.org:0", "bad allowlist entry 'pypi.org:0': the port", ":PORT"),
        (settings.PROXY_ALLOW_ENV, "http://pypi.org", "bad allowlist entry 'http://pypi.org': a URL", ":PORT"),
    ],
)
def test_a_bad_variable_is_named_with_its_value_and_what_is_accepted(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, reason: str, accepted: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(
        SandboxError, match=rf"^{name} = {re.escape(repr(value))} is not valid \({reason}.*accepted: .*{accepted}"
    ):
        Sandbox()


@pytest.mark.parametrize("name", [settings.STATE_DIR_ENV, settings.CACHE_DIR_ENV])
def test_a_directory_that_is_a_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, str(tmp_path / "file"))
    (tmp_path / "file").write_text("")
    with pytest.raises(SandboxError, match=rf"^{name} = '{tmp_path}/file' is not valid \(not a directory\)"):
        Sandbox()
    with pytest.raises(SandboxError, match=r"^cache_dir = '.*/file' is not valid \(not a directory\)"):
        Sandbox(tmp_path / "state", tmp_path / "file")


def test_a_mirror_with_credentials_is_refused_without_showing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.MIRROR_ENV, "https://user:secret@mirror.example.net/debian")
    with pytest.raises(SandboxError, match=r"'https://\*\*\*@mirror\.example\.net/debian' .*credentials") as caught:
        Sandbox()
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"net": 256}, "net = 256 is not valid (out of range)"),
        ({"net": True}, "net = True is not valid (not an integer)"),
        ({"mirror": "deb.debian.org"}, "mirror = 'deb.debian.org' is not valid (not an http:// or https:// URL)"),
        ({"proxy_allow": []}, "proxy_allow = [] is not valid (no entries)"),
        ({"proxy_allow": ["pypi.org", "*"]}, "proxy_allow = ['pypi.org', '*'] is not valid (bad allowlist entry '*'"),
        ({"state_dir": ""}, "state_dir = '' is not valid (not a path)"),
    ],
)
def test_a_bad_argument_is_named(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(SandboxError, match=f"^{re.escape(message)}"):
        Sandbox(**arguments)  # type: ignore[arg-type]


def test_a_comma_separated_allowlist_argument_is_split(tmp_path: Path) -> None:
    assert Sandbox(tmp_path, proxy_allow="pypi.org, files.pythonhosted.org").proxy_allow == [
        "pypi.org",
        "files.pythonhosted.org",
    ]
