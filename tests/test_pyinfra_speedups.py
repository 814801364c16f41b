"""``pyinfra_speedups``: each replacement gives what pyinfra's own function gives, on real stacks and pyinfra."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyinfra
import pytest
from pyinfra.api.config import Config
from pyinfra.api.deploy import deploy
from pyinfra.api.exceptions import ArgumentTypeError
from pyinfra.api.inventory import Inventory
from pyinfra.api.state import State
from pyinfra.context import ctx_host, ctx_state

from pyinfra_iluvatar import pyinfra_speedups

ORIGINAL_ORDER = pyinfra_speedups._ORIGINALS[(pyinfra_speedups.operation, "get_operation_order_from_stack")]
ORIGINAL_ARGUMENTS = pyinfra_speedups._ORIGINALS[(pyinfra_speedups.arguments, "all_global_arguments")]

# A deploy file's shape: calls spread over several lines, through nested functions and a comprehension.
DEPLOY = textwrap.dedent(
    """
    def inner(functions, state):
        return [
            function(
                state,
            )
            for function in functions
        ]


    def outer(functions, state):
        return inner(
            functions,
            state,
        )


    ORDERS = outer(FUNCTIONS, STATE)
    """
)


def orders(path: str, state: Any) -> list[list[int]]:
    """Both functions' answers, each called at the same place of a deploy file compiled as ``path``."""
    namespace: dict[str, Any] = {"FUNCTIONS": (ORIGINAL_ORDER, pyinfra_speedups.operation_order), "STATE": state}
    exec(compile(DEPLOY, path, "exec"), namespace)
    found: list[list[int]] = namespace["ORDERS"]
    return found


@pytest.mark.parametrize("cli", [True, False])
@pytest.mark.parametrize("deploy_file", ["here", "elsewhere", None])
def test_operation_order_is_pyinfra_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: bool, deploy_file: str | None
) -> None:
    path = tmp_path / "deploy.py"
    path.write_text(DEPLOY)  # a file that exists, as pyinfra's command line compiles it
    monkeypatch.setattr(pyinfra, "is_cli", cli)
    current = {"here": str(path), "elsewhere": str(tmp_path / "other.py"), None: None}[deploy_file]
    state = SimpleNamespace(current_deploy_filename=current, current_op_file_number=7)
    original, replacement = orders(str(path), state)
    assert replacement == original
    if deploy_file == "here":  # the deploy file's calls, outermost first
        calls = ["ORDERS = outer(", "return inner(", "return [", "function("]
        lines = DEPLOY.splitlines()
        expected = [next(n for n, line in enumerate(lines, 1) if call in line) for call in calls]
        assert original == [7, *expected] if cli else original == expected
    elif deploy_file == "elsewhere":  # none of the stack
        assert original == ([7] if cli else [])
    else:  # the whole stack, this test's frames included
        assert len(original) > 4


def test_operation_order_of_a_file_that_is_not_on_disk() -> None:
    state = SimpleNamespace(current_deploy_filename="deploys/nowhere.py", current_op_file_number=0)
    original, replacement = orders("deploys/nowhere.py", state)
    assert replacement == original


def test_global_argument_types_are_pyinfra_s_in_a_new_list_each_time() -> None:
    first = pyinfra_speedups.global_argument_types()
    assert first == ORIGINAL_ARGUMENTS()
    first.clear()
    assert pyinfra_speedups.global_argument_types() == ORIGINAL_ARGUMENTS()


def test_install_replaces_pyinfra_s_functions_and_uninstall_gives_them_back() -> None:
    pyinfra_speedups.install()
    assert pyinfra_speedups.installable()  # the pyinfra this project pins (3.10) is a checked one
    assert pyinfra_speedups.operation.get_operation_order_from_stack is pyinfra_speedups.operation_order
    assert pyinfra_speedups.facts.all_global_arguments is pyinfra_speedups.global_argument_types
    for module in (pyinfra_speedups.arguments, pyinfra_speedups.deploy, pyinfra_speedups.facts):
        assert module.pop_global_arguments is pyinfra_speedups.global_arguments
    assert pyinfra_speedups.operation.pop_global_arguments is pyinfra_speedups.global_arguments
    pyinfra_speedups.uninstall()
    try:
        assert pyinfra_speedups.operation.get_operation_order_from_stack is ORIGINAL_ORDER
        assert pyinfra_speedups.arguments.all_global_arguments is ORIGINAL_ARGUMENTS
    finally:
        pyinfra_speedups.install()  # as the deploys left it on import


def test_an_unchecked_pyinfra_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    pyinfra_speedups.uninstall()
    monkeypatch.setattr(pyinfra_speedups, "CHECKED_VERSIONS", ("0.",))
    try:
        pyinfra_speedups.install()
        assert pyinfra_speedups.operation.get_operation_order_from_stack is ORIGINAL_ORDER
    finally:
        monkeypatch.undo()
        pyinfra_speedups.install()
    assert sys.modules["pyinfra.api.operation"].get_operation_order_from_stack is pyinfra_speedups.operation_order


ORIGINAL_POP = pyinfra_speedups._ORIGINALS[(pyinfra_speedups.arguments, "pop_global_arguments")]


def _state() -> State:
    inventory = Inventory(
        (["one", ("two", {"_sudo": True, "_env": {"A": "1"}, "_success_exit_codes": [0, 2]})], {"_chdir": "/srv"}),
        workers=(["one", "two"], {"_sudo_user": "builder", "_timeout": 5, "iluvatar_gpu": "auto"}),
        late=(["two"], {"_sudo_user": "late", "_retries": 2}),
    )
    return State(inventory, Config(SUDO_PASSWORD="secret", SHELL="bash"))


@pytest.mark.parametrize("name", ["one", "two"])
@pytest.mark.parametrize(
    "given",
    [{}, {"_sudo": False, "name": "an op", "other": 1}, {"_su_user": "x", "_if": [], "_serial": True}],
)
def test_global_arguments_are_pyinfra_s(name: str, given: dict[str, Any]) -> None:
    state = _state()
    target = state.inventory.get_host(name)
    target.data._timeout = 30  # override data (HostData.__setattr__), before the host's and groups' data
    original_kwargs, kwargs = dict(given), dict(given)
    expected = ORIGINAL_POP(state, target, original_kwargs)
    replaced = pyinfra_speedups.global_arguments(state, target, kwargs)
    assert replaced == expected
    assert replaced[0]["_timeout"] == 30
    assert kwargs == original_kwargs  # the same keys popped
    if name == "two":  # a list of its own: the value is a copy of the host's, as pyinfra gives
        replaced[0]["_success_exit_codes"].append(3)
        assert target.data._success_exit_codes == [0, 2]

    # Inside a @deploy with keyword arguments and data defaults (pyinfra's "current deploy" data).
    found: list[Any] = []

    @deploy("a deploy", data_defaults={"_timeout": 9, "_shell_executable": "dash"})
    def wrapped() -> None:
        replaced = pyinfra_speedups.global_arguments(state, target, dict(given))
        found.append((ORIGINAL_POP(state, target, dict(given)), replaced))

    with ctx_state.use(state), ctx_host.use(target):
        wrapped(_sudo_user="from the deploy")
    ((inside, replaced),) = found
    assert replaced == inside
    assert inside[0]["_sudo_user"] == "from the deploy"  # the deploy's keyword arguments first


def test_global_arguments_reject_bad_types_as_pyinfra_does() -> None:
    state = _state()
    target = state.inventory.get_host("one")
    with pytest.raises(ArgumentTypeError) as original:
        ORIGINAL_POP(state, target, {"_sudo": "yes please"})
    with pytest.raises(ArgumentTypeError) as replaced:
        pyinfra_speedups.global_arguments(state, target, {"_sudo": "yes please"})
    assert str(replaced.value) == str(original.value)
