"""``pyinfra-iluvatar sandbox``: bring disposable hosts up, list them, open a shell on one, take them down."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from pyinfra_iluvatar.sandbox import emulation, proxy, settings
from pyinfra_iluvatar.sandbox.errors import SandboxError
from pyinfra_iluvatar.sandbox.manager import Sandbox
from pyinfra_iluvatar.urls import redact

F = TypeVar("F", bound=Callable[..., Any])


def _say(message: str) -> None:
    click.echo(f"sandbox: {message}", err=True)


class _Checked(click.types.StringParamType):
    """A string option checked by ``parse``, whose ``ValueError`` becomes a usage error saying what is accepted."""

    def __init__(self, name: str, parse: Callable[[str], object], accepted: str) -> None:
        self.name = name
        self._parse = parse
        self._accepted = accepted

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """``value`` as given, once ``parse`` accepts it (shown with credentials masked if it does not)."""
        text = super().convert(value, param, ctx)
        try:
            self._parse(text)
        except ValueError as error:
            self.fail(f"{redact(repr(text))} is not valid ({error}); accepted: {self._accepted}", param, ctx)
        return text


def _sandbox_options(function: F) -> F:
    """The options every subcommand shares (``state_dir``, ``cache_dir``); a :class:`SandboxError` is printed.

    Options left out are None: :class:`Sandbox` takes them from the environment, and names a bad variable.
    """

    @click.option(
        "--state-dir",
        type=click.Path(path_type=Path, file_okay=False),
        help="Where the sandbox keeps its state, keys and host layers"
        f" [env {settings.STATE_DIR_ENV}; default {settings.DEFAULT_STATE_DIR}].",
    )
    @click.option(
        "--cache-dir",
        type=click.Path(path_type=Path, file_okay=False),
        help=f"Where base images are cached [env {settings.CACHE_DIR_ENV}; default {settings.DEFAULT_CACHE_DIR}].",
    )
    @wraps(function)
    def wrapper(**kwargs: Any) -> Any:
        try:
            return function(**kwargs)
        except SandboxError as error:
            raise click.ClickException(str(error)) from error

    return cast(F, wrapper)


@click.group()
def sandbox() -> None:
    """Disposable Debian hosts on this machine (systemd, SSH, own network) to rehearse deploys on. Needs root."""


@sandbox.command()
@click.option("--hosts", "workers", type=click.IntRange(0), default=3, show_default=True, help="Worker hosts.")
@click.option("--build-hosts", type=click.IntRange(0), default=0, show_default=True, help="Build hosts.")
@click.option("--suite", type=click.Choice(settings.SUITES), default="bookworm", show_default=True)
@click.option(
    "--arch",
    type=click.Choice(sorted({"amd64", *emulation.EMULATORS})),
    help="Architecture of the --hosts and --build-hosts [default: this machine's]; another one runs emulated"
    " (qemu-user-static, installed when missing) and names its hosts for it (worker-arm64-1).",
)
@click.option(
    "--arm64-hosts",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="arm64 worker hosts besides --hosts (a mixed fleet), emulated on any other machine.",
)
@click.option(
    "--net",
    type=click.IntRange(0, 255),
    help=f"Network number N: bridge ilusbxN, addresses 198.18.N.0/24 [env {settings.NET_ENV}; default 0].",
)
@click.option(
    "--mirror",
    type=_Checked("URL", settings.MIRROR.parse, settings.MIRROR.accepted),
    help=f"Debian mirror for the image [env {settings.MIRROR_ENV}; default {settings.DEFAULT_MIRROR}].",
)
@click.option(
    "--proxy-allow",
    multiple=True,
    type=_Checked("ENTRY", proxy.parse_entry, proxy.ENTRY_ACCEPTED),
    help="A host the proxy lets hosts reach: HOST, .DOMAIN (its subdomains), or either with :PORT (repeat;"
    f" replaces the default list {', '.join(settings.DEFAULT_PROXY_ALLOW)}) [env {settings.PROXY_ALLOW_ENV},"
    " comma-separated].",
)
@_sandbox_options
def up(
    state_dir: Path | None,
    cache_dir: Path | None,
    workers: int,
    build_hosts: int,
    suite: str,
    arch: str | None,
    arm64_hosts: int,
    net: int | None,
    mirror: str | None,
    proxy_allow: tuple[str, ...],
) -> None:
    """Bring up the sandbox (reused if it is up just so); then `pyinfra inventories/sandbox.py ...`."""
    started = time.monotonic()
    sandbox = Sandbox(state_dir, cache_dir, net=net, mirror=mirror, proxy_allow=proxy_allow or None, say=_say)
    hosts = sandbox.up(hosts=workers, build_hosts=build_hosts, suite=suite, arch=arch, arm64_hosts=arm64_hosts)
    _print_hosts(sandbox)
    _say(f"{len(hosts)} host(s) up in {time.monotonic() - started:.1f} s; gateway and proxy {sandbox.gateway}")


@sandbox.command()
@_sandbox_options
def down(state_dir: Path | None, cache_dir: Path | None) -> None:
    """Take the sandbox down and remove everything it made (safe to repeat)."""
    Sandbox(state_dir, cache_dir, say=_say).down()
    _say("down")


def _print_hosts(sandbox: Sandbox) -> None:
    hosts = sandbox.status()
    if not hosts:
        click.echo("no sandbox is up")
        return
    width = max(len(h.name) for h in hosts)
    click.echo(f"{'HOST':<{width}}  {'GROUP':<7}  {'ARCH':<5}  {'ADDRESS':<13}  STATE")
    for h in hosts:
        click.echo(f"{h.name:<{width}}  {h.group:<7}  {h.arch:<5}  {h.address:<13}  {h.state}")


@sandbox.command()
@_sandbox_options
def status(state_dir: Path | None, cache_dir: Path | None) -> None:
    """List the hosts: name, group, address, state (running, starting, stopped)."""
    _print_hosts(Sandbox(state_dir, cache_dir))


@sandbox.command(context_settings={"ignore_unknown_options": True})
@click.argument("host", required=False)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@_sandbox_options
def shell(state_dir: Path | None, cache_dir: Path | None, host: str | None, command: tuple[str, ...]) -> None:
    """Open a root shell on HOST (the first host by default), or run COMMAND there."""
    sandbox = Sandbox(state_dir, cache_dir)
    hosts = sandbox.status()
    if not hosts:
        raise click.ClickException("no sandbox is up: run `pyinfra-iluvatar sandbox up` first")
    argv = sandbox.ssh_command(host or hosts[0].name, *command)
    os.execvp(argv[0], argv)
