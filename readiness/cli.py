"""
``pyinfra-iluvatar check INVENTORY``: which hosts are ready for Ilúvatar, and why the others are not.

It loads the inventory the way ``pyinfra`` does (same files, data and SSH settings), connects to every host in
parallel, reads each host's state in one round trip (:func:`requirements.probes`), and prints a table host by
requirement with the reason for each failure, then ``N/M ready``. It changes nothing on any host, except that
``--smoke`` starts (and removes) one function container per host the way the worker does. Exit status 0 only when
every host is ready, requirements given to ``--ignore`` aside.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Any

import click

from pyinfra_iluvatar import data, preflight
from pyinfra_iluvatar.readiness.requirements import REQUIREMENTS, Verdict, probes, verdicts
from pyinfra_iluvatar.readiness.smoke import SmokeResult, format_steps, parse, smoke_script

FORMAT = 1
"""The version of ``check --json``'s document (README, "Readiness")."""
SMOKE = "smoke"


@dataclass
class HostReport:
    """One host's verdicts (the smoke test's among them, with its steps), or why it has none (unreachable, bad data)."""

    name: str
    verdicts: list[Verdict] = field(default_factory=list)
    smoke: SmokeResult | None = None

    def ready(self, ignored: Sequence[str]) -> bool:
        """Whether every verdict not ignored holds."""
        return bool(self.verdicts) and all(verdict.ok or verdict.requirement in ignored for verdict in self.verdicts)


def _overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``--data KEY=VALUE`` pairs as pyinfra reads them: a value that parses as JSON is that JSON, else a string."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--data")
        try:
            overrides[key] = json.loads(value)
        except ValueError:
            overrides[key] = value
    return overrides


def _limited(inventory: Any, patterns: Sequence[str]) -> list[Any] | None:
    """The hosts ``--limit`` selects: group names, host names or shell patterns (comma-separated or repeated)."""
    wanted = [part for pattern in patterns for part in pattern.split(",") if part]
    if not wanted:
        return None
    selected = []
    for host in inventory:
        for pattern in wanted:
            if pattern in host.groups or fnmatch(host.name, pattern):
                selected.append(host)
                break
    if not selected:
        raise click.UsageError(f"--limit {','.join(wanted)} matches no host of the inventory")
    return selected


@click.command("check")
@click.argument("inventory")
@click.option("--limit", multiple=True, help="Only these hosts or groups (names or patterns; comma-separated).")
@click.option("--data", "data_pairs", multiple=True, metavar="KEY=VALUE", help="Override data, as pyinfra's --data.")
@click.option("--sudo", is_flag=True, help="Run the reads (and the smoke test) through sudo, as pyinfra's --sudo.")
@click.option("--smoke", is_flag=True, help="Also start one function container per host, as the worker does.")
@click.option(
    "--ignore",
    multiple=True,
    type=click.Choice((*REQUIREMENTS, SMOKE)),
    help="A requirement accepted as failing: shown, not counted (repeat for several).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as a JSON document (README, Readiness).")
def check(
    inventory: str,
    limit: tuple[str, ...],
    data_pairs: tuple[str, ...],
    sudo: bool,
    smoke: bool,
    ignore: tuple[str, ...],
    as_json: bool,
) -> None:
    """Tell which hosts of INVENTORY are ready for Ilúvatar, and why the others are not; changes nothing."""
    warnings.filterwarnings("ignore", message="Monkey-patching ssl after ssl has already been imported")
    from pyinfra.api.state import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory  # type: ignore[import-untyped]

    logging.getLogger("pyinfra").setLevel(logging.CRITICAL)
    started = time.monotonic()
    state = State()
    with ctx_state.use(state):  # an inventory file is executed the way pyinfra's command line does it
        loaded = make_inventory(inventory, override_data=_overrides(data_pairs), cwd=os.getcwd())
    reports = run_checks(state, loaded, _limited(loaded, limit), sudo=sudo, smoke=smoke)
    seconds = time.monotonic() - started
    if as_json:
        click.echo(json.dumps(document(reports, ignore, seconds), indent=2, sort_keys=True))
    else:
        for line in table(reports, ignore, color=sys.stdout.isatty()):
            click.echo(line)
        ready = sum(report.ready(ignore) for report in reports)
        ignored = f" (ignored: {', '.join(ignore)})" if ignore else ""
        click.echo(f"{ready}/{len(reports)} ready{ignored} in {seconds:.1f} s")
    if not reports or not all(report.ready(ignore) for report in reports):
        sys.exit(1)


def run_checks(state: Any, inventory: Any, selected: list[Any] | None, *, sudo: bool, smoke: bool) -> list[HostReport]:
    """Connect to the selected hosts in parallel, read each one's state in one round trip, judge it."""
    import gevent  # type: ignore[import-untyped]
    from pyinfra.api.config import Config
    from pyinfra.api.exceptions import ConnectError
    from pyinfra.context import ctx_host, ctx_state

    from pyinfra_iluvatar.facts.combined import Combined

    state.init(inventory, Config(SUDO=sudo), initial_limit=selected)  # type: ignore[no-untyped-call]
    hosts = [host for host in inventory if state.is_host_in_limit(host)]
    locks: dict[str, Any] = {}

    def one(host: Any) -> HostReport:
        report = HostReport(host.name)
        values, problems = preflight.host_values(host)
        if problems:
            report.verdicts.append(Verdict("data", False, "; ".join(problems)))
            return report
        try:
            host.connect(show_errors=False, raise_exceptions=True)
        except ConnectError as error:
            report.verdicts.append(Verdict("connection", False, f"unreachable: {error}"))
            return report
        state.activate_host(host)
        path = values[data.LOCK_FILE.name]
        if path not in locks:
            locks[path] = preflight.load_lock(path)
        with ctx_state.use(state), ctx_host.use(host):
            facts = host.get_fact(Combined, probes=probes(values))
            report.verdicts = verdicts(host, values, facts, locks[path])
            if smoke and "worker" in values[data.ROLE.name]:  # a function container needs a worker
                report.smoke = _smoke(host, values, sudo)
                report.verdicts.append(_smoke_verdict(report.smoke))
        return report

    greenlets = [gevent.spawn(one, host) for host in hosts]
    gevent.joinall(greenlets, raise_error=True)
    for host in hosts:
        if host.connected:
            host.disconnect()
    return [greenlet.value for greenlet in greenlets]


def _smoke(host: Any, values: Mapping[str, Any], sudo: bool) -> SmokeResult:
    """Run the smoke test on ``host`` (see :mod:`pyinfra_iluvatar.readiness.smoke`) and read its result."""
    script = smoke_script(
        cni_bin_dir=values[data.CNI_BIN_DIR.name],
        subnet=values[data.SMOKE_SUBNET.name],
        snapshotter=values[data.SNAPSHOTTER.name],
    )
    _status, output = host.run_shell_command(script, _sudo=sudo)
    return parse(output.stdout_lines)


def _smoke_verdict(result: SmokeResult) -> Verdict:
    """The ``smoke`` requirement: every step passed and nothing was left behind; else the first reason why not."""
    if result.ok:
        limits = "; ".join(f"{name} limit not enforced" for name in result.not_enforced)
        return Verdict(
            SMOKE, True, f"a function container reached {result.gateway}" + (f" ({limits})" if limits else "")
        )
    failed = [f"{step.name}: {step.message}" for step in result.steps if step.status == "failed"]
    reasons = failed + [f"left behind: {thing}" for thing in result.leftovers] + result.problems
    if not result.complete:
        reasons.append("the run did not finish")
    return Verdict(SMOKE, False, "; ".join(reasons) or "failed")


def document(reports: Sequence[HostReport], ignored: Sequence[str], seconds: float) -> dict[str, Any]:
    """``check --json``: see the README's "Readiness" section for its fields."""
    return {
        "format": FORMAT,
        "ignored": list(ignored),
        "seconds": round(seconds, 2),
        "ready": sum(report.ready(ignored) for report in reports),
        "hosts": {
            report.name: {
                "ready": report.ready(ignored),
                "requirements": {
                    verdict.requirement: {
                        "ok": verdict.ok,
                        "ignored": verdict.requirement in ignored,
                        "detail": verdict.detail,
                    }
                    for verdict in report.verdicts
                },
                **({"smoke": _smoke_document(report.smoke)} if report.smoke is not None else {}),
            }
            for report in reports
        },
    }


def _smoke_document(result: SmokeResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "seconds": result.seconds,
        "steps": [
            {"step": step.key, "status": step.status, "seconds": step.seconds, "message": step.message}
            for step in result.steps
        ],
        "leftovers": result.leftovers,
    }


def table(reports: Sequence[HostReport], ignored: Sequence[str], color: bool) -> list[str]:
    """The host-by-requirement table, then each failure's reason (one line each)."""
    columns = [
        name
        for name in ("connection", "data", *REQUIREMENTS, SMOKE)
        if any(verdict.requirement == name for report in reports for verdict in report.verdicts)
    ]
    width = max([len("HOST"), *(len(report.name) for report in reports)])

    def cell(text: str, ok: bool | None, size: int) -> str:
        padded = f"{text:<{size}}"
        if not color or ok is None:
            return padded
        return click.style(padded, fg="green" if ok else "red")

    lines = ["  ".join([f"{'HOST':<{width}}", *(f"{name:<{max(len(name), 4)}}" for name in columns)])]
    reasons = []
    for report in reports:
        by_name = {verdict.requirement: verdict for verdict in report.verdicts}
        cells = [f"{report.name:<{width}}"]
        for name in columns:
            verdict = by_name.get(name)
            size = max(len(name), 4)
            if verdict is None:
                cells.append(cell("-", None, size))
            elif verdict.ok:
                cells.append(cell("ok", True, size))
            else:
                cells.append(cell("skip" if name in ignored else "FAIL", name in ignored, size))
                reasons.append(f"{report.name}: {name}: {verdict.detail}" + (" (ignored)" if name in ignored else ""))
        lines.append("  ".join(cells))
    smoke_lines = [
        f"{report.name} smoke: {line}" for report in reports if report.smoke for line in format_steps(report.smoke)
    ]
    return lines + reasons + smoke_lines
