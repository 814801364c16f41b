"""``deploys.changing``: whether a host changes in an operation registered so far, asked of real pyinfra on
``@local`` (API mode, ``check_for_changes`` off as with ``-y``, so the check is this function's own)."""

from __future__ import annotations

from pathlib import Path

from pyinfra.api.config import Config
from pyinfra.api.connect import connect_all
from pyinfra.api.inventory import Inventory
from pyinfra.api.state import State
from pyinfra.context import ctx_host, ctx_state
from pyinfra.operations import files

from pyinfra_iluvatar.deploys import changing


def test_a_host_is_changing_from_its_first_operation_that_would_change_it(tmp_path: Path) -> None:
    present = tmp_path / "present"
    present.write_text("")
    state = State(Inventory((["@local"], {})), Config())
    state.check_for_changes = False
    connect_all(state)
    (local,) = state.inventory.get_active_hosts()
    with ctx_state.use(state), ctx_host.use(local):
        assert not changing()  # nothing registered
        files.file(name="present already", path=str(present), present=True)
        assert not changing()
        files.file(name="made", path=str(tmp_path / "missing"), present=True)
        assert changing()
        files.file(name="present still", path=str(present), present=True)
        assert changing()
    assert not (tmp_path / "missing").exists()  # asking ran nothing
