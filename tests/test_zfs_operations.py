"""``operations/zfs.py`` where pyinfra-testing fixtures cannot reach, and the import unit's script run for real.

Fixtures run every operation as if pyinfra were preparing (their ``FakeState`` has ``is_executing`` false and no
``current_stage``), so the execute-stage branch (ZFS does not answer: fail the host) is tested here, with the
fixtures' own arguments and facts, under pyinfra-testing's ``FakeState`` set executing and under a real pyinfra
``State`` in each stage. The import unit's script runs in ``sh`` against stand-in ``zpool``/``zfs`` commands.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api.config import Config
from pyinfra.api.exceptions import OperationError
from pyinfra.api.inventory import Inventory
from pyinfra.api.state import State, StateStage
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.operations import parse_commands
from pyinfra_testing.util import FakeState, create_host

from pyinfra_iluvatar.operations import zfs

FIXTURES = Path(__file__).parent / "operations"
NOT_ANSWERING = (
    "ZFS does not answer (no zpool/zfs command, the zfs kernel module not loaded, or the zfs-fuse daemon not "
    "running): cannot check or create {}"
)


def _fake_state(executing: bool) -> Any:
    state = FakeState()
    state.is_executing = executing
    return state


def _real_state(stage: StateStage) -> State:
    state = State(inventory=Inventory(([], {})), config=Config())
    for step in (StateStage.Connect, StateStage.Prepare, StateStage.Execute):
        if step <= stage:
            state.set_stage(step)
    return state


def _run(operation: Any, kwargs: dict[str, Any], facts: dict[str, Any], state: Any) -> list[Any]:
    host = create_host(state, facts=facts)
    with ctx_state.use(state), ctx_host.use(host):
        commands: list[Any] = parse_commands(list(operation._inner(**kwargs)))
    return commands


def _fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())  # type: ignore[no-any-return]


SILENT_CASES = [
    (zfs.pool, "zfs.pool/zfs_not_answering_while_preparing_fresh_host", "pool iluvatar"),
    (zfs.pool, "zfs.pool/zfs_not_answering_while_preparing_own_label", "pool iluvatar"),
    (zfs.dataset, "zfs.dataset/zfs_not_answering_while_preparing", "dataset tank/containerd"),
]
EXECUTING_STATES: list[tuple[str, Callable[[], Any]]] = [
    ("pyinfra-testing FakeState, is_executing", lambda: _fake_state(True)),
    ("pyinfra State, current_stage Execute", lambda: _real_state(StateStage.Execute)),
]


@pytest.mark.parametrize(("operation", "fixture", "subject"), SILENT_CASES, ids=[case[1] for case in SILENT_CASES])
@pytest.mark.parametrize("make_state", [entry[1] for entry in EXECUTING_STATES], ids=[e[0] for e in EXECUTING_STATES])
def test_zfs_not_answering_while_executing_fails_the_host(
    operation: Any, fixture: str, subject: str, make_state: Callable[[], Any]
) -> None:
    data = _fixture(fixture)
    with pytest.raises(OperationError) as raised:
        _run(operation, data["kwargs"], data["facts"], make_state())
    assert str(raised.value).endswith(NOT_ANSWERING.format(subject))


@pytest.mark.parametrize(("operation", "fixture", "subject"), SILENT_CASES, ids=[case[1] for case in SILENT_CASES])
def test_zfs_not_answering_while_preparing_gives_the_fixture_commands(
    operation: Any, fixture: str, subject: str
) -> None:
    """A real ``State`` in the Prepare stage takes the same branch as the fixtures' ``FakeState``."""
    data = _fixture(fixture)
    assert _run(operation, data["kwargs"], data["facts"], _real_state(StateStage.Prepare)) == data["commands"]


def test_importable_fact_not_answering_while_executing_fails_the_host() -> None:
    """``zpool status`` answered, then ``zpool import -d`` did not (the daemon stopped in between)."""
    facts = {
        "zfs.ZpoolStatus": {"pool=tank": {}},
        "zfs.ZpoolImportable": {"directory=/var/lib/iluvatar/zfs": None},
    }
    kwargs = {"pool": "tank", "vdev_file": "/var/lib/iluvatar/zfs/tank.vdev", "vdev_size": "100G"}
    with pytest.raises(OperationError, match="ZFS does not answer"):
        _run(zfs.pool, kwargs, facts, _fake_state(True))


def test_answering_facts_decide_the_same_at_execute() -> None:
    """With ZFS answering, executing changes nothing about the decision: the fixture's commands again."""
    data = _fixture("zfs.pool/exported_is_imported")
    assert _run(zfs.pool, data["kwargs"], data["facts"], _fake_state(True)) == data["commands"]


def test_unit_runs_the_import_script_unchanged() -> None:
    script = zfs.import_script("tank", "/var/lib/iluvatar/zfs")
    unit = zfs.render_import_unit("tank", "/var/lib/iluvatar/zfs", "zfs-fuse")
    assert f"ExecStart=/bin/sh -ec '{script}'\n" in unit
    # Nothing systemd would expand or unescape inside the quotes: the unit runs what a shell runs.
    assert not re.search(r"[$%\\']", script)
    assert zfs.import_unit_name("tank") == "iluvatar-zpool-tank.service"
    subprocess.run(["sh", "-n", "-c", script], check=True)


FAKE_ZPOOL = """#!/bin/sh
echo "zpool $*" >> "$FAKE_LOG"
[ -e "$FAKE_STATE/answering" ] || { echo "connect: No such file or directory" >&2; exit 1; }
case "$1" in
    list) if [ "$2" = -H ]; then [ -e "$FAKE_STATE/imported" ]; exit $?; fi; echo "no pools available" ;;
    import) touch "$FAKE_STATE/imported" ;;
esac
"""
FAKE_ZFS = '#!/bin/sh\necho "zfs $*" >> "$FAKE_LOG"\n'


def _run_script(tmp_path: Path, script: str, *, answering: bool, imported: bool) -> tuple[int, list[str], str]:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir(exist_ok=True)
    state.mkdir(exist_ok=True)
    for name, text in (("zpool", FAKE_ZPOOL), ("zfs", FAKE_ZFS)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    for flag, wanted in (("answering", answering), ("imported", imported)):
        (state / flag).unlink(missing_ok=True)
        if wanted:
            (state / flag).touch()
    log = tmp_path / "calls.log"
    log.write_text("")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log), "FAKE_STATE": str(state)}
    result = subprocess.run(["sh", "-ec", script], env=env, capture_output=True, text=True, timeout=60)
    return result.returncode, log.read_text().splitlines(), result.stderr


def test_import_script_imports_a_pool_that_is_not_imported(tmp_path: Path) -> None:
    script = zfs.import_script("tank", "/var/lib/iluvatar/zfs")
    status, calls, _ = _run_script(tmp_path, script, answering=True, imported=False)
    assert status == 0
    assert calls == [
        "zpool list",
        "zpool list -H -o name tank",
        "zpool import -d /var/lib/iluvatar/zfs tank",
        "zfs mount -a",
    ]


def test_import_script_leaves_an_imported_pool(tmp_path: Path) -> None:
    script = zfs.import_script("tank", "/var/lib/iluvatar/zfs")
    status, calls, _ = _run_script(tmp_path, script, answering=True, imported=True)
    assert status == 0
    assert calls == ["zpool list", "zpool list -H -o name tank", "zfs mount -a"]


def test_wait_gives_up_when_zfs_never_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The import unit's wait, shortened to 2 s (the unit waits 30 s), fails with its message, importing nothing."""
    monkeypatch.setattr(zfs, "IMPORT_WAIT_SECONDS", 2)
    script = zfs.import_script("tank", "/var/lib/iluvatar/zfs")
    assert script.startswith("timeout 2 ")
    status, calls, stderr = _run_script(tmp_path, script, answering=False, imported=False)
    assert status == 1
    assert set(calls) == {"zpool list"}
    assert "ZFS did not answer zpool list within 2 s" in stderr
