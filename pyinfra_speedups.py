"""
Three of pyinfra's per-operation costs, made cheap without changing a result: installed by :func:`install` when
this package's deploys are imported, and only on the pyinfra versions whose functions they were checked against
(:data:`CHECKED_VERSIONS`; on any other, pyinfra is left as it is, only slower).

pyinfra 3's command line registers each operation by walking the Python stack (``inspect.stack()``, then
``inspect.getframeinfo`` again per frame): every frame's source line is looked up, its file ``stat``-ed and its
module searched for, at every operation on every host. The walk only needs each frame's file and line;
:func:`operation_order` reads those from the frame (the file name as ``inspect`` gives it, kept per file name).
And every operation asks ``typing.get_type_hints`` for the global arguments' types anew, which never change in a
process: :func:`global_argument_types` asks once. On 8 converged sandbox hosts these were some 15% of the
controller's CPU (profiled, 2026-12-04; README, "Converged speed"). And each operation (and each ``@deploy``) looks
up every global argument in the host's data (``getattr(host.data, key)``), each lookup merging the host's group
data anew: :func:`global_arguments` gathers the host's data once per operation and looks every argument up in
it, in the same order.

``tests/test_pyinfra_speedups.py`` checks each against pyinfra's own function (on real stacks, on real inventories
with host, group, override and ``@deploy`` data).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import itertools
import sys
from collections.abc import Callable, Mapping
from copy import copy
from importlib import metadata
from types import CodeType, FrameType
from typing import Any

import pyinfra
from pyinfra.api.exceptions import ArgumentTypeError
from pyinfra.api.host import Host, HostData, extract_callable_datas
from pyinfra.api.state import State
from pyinfra.api.util import raise_if_bad_type
from pyinfra.context import ctx_config

# Modules, not the names `pyinfra.api` re-exports (its `operation` is the decorator).
arguments = importlib.import_module("pyinfra.api.arguments")
deploy = importlib.import_module("pyinfra.api.deploy")
facts = importlib.import_module("pyinfra.api.facts")
operation = importlib.import_module("pyinfra.api.operation")
util = importlib.import_module("pyinfra.api.util")

CHECKED_VERSIONS = ("3.10.",)
"""pyinfra versions (prefixes) whose ``get_operation_order_from_stack``, ``all_global_arguments`` and
``pop_global_arguments`` these replace exactly; read them again before adding one."""

_REPLACED = (
    (operation, "get_operation_order_from_stack"),
    (arguments, "all_global_arguments"),
    (facts, "all_global_arguments"),
    # Each module that imported it by name.
    (arguments, "pop_global_arguments"),
    (deploy, "pop_global_arguments"),
    (facts, "pop_global_arguments"),
    (operation, "pop_global_arguments"),
)
_ORIGINALS = {(module, name): getattr(module, name) for module, name in _REPLACED}


_filenames: dict[str, str] = {}


def _filename(code: CodeType) -> str:
    """The file ``inspect.getframeinfo`` names for a frame running ``code`` (which depends on the code's file name
    only: kept per file name, as equal code objects from two files are one key)."""
    if code.co_filename not in _filenames:
        _filenames[code.co_filename] = inspect.getsourcefile(code) or inspect.getfile(code)
    return _filenames[code.co_filename]


def _line(frame: FrameType) -> int:
    """The line ``inspect.getframeinfo`` gives for ``frame``: from Python 3.11 where its current instruction starts
    (the code's positions, one per 2-byte code unit), before that the frame's current line."""
    positions = getattr(frame.f_code, "co_positions", None)
    if positions is not None and frame.f_lasti >= 0:
        start = next(itertools.islice(positions(), frame.f_lasti // 2, None), (None,))[0]
        if start is not None:
            return int(start)
    return frame.f_lineno


def operation_order(state: State) -> list[int]:
    """
    pyinfra's ``get_operation_order_from_stack``: the line numbers of the calls that led here, from the outermost
    frame in the deploy file being run (none when the stack has none), leaving out pyinfra's own frames; the
    deploy file's number first on the command line.
    """
    frames: list[FrameType] = []
    frame: FrameType | None = sys._getframe(1)  # the caller: pyinfra's, as the original's own frame was
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    start = 0
    if state.current_deploy_filename:
        # Not found: pyinfra's loop ends at the innermost frame, its function's own, which it leaves out.
        deploy_file = state.current_deploy_filename
        found_at = (index for index, outer in enumerate(frames) if _filename(outer.f_code) == deploy_file)
        start = next(found_at, len(frames))
    found = [state.current_op_file_number] if pyinfra.is_cli else []
    pyinfra_dir = util.PYINFRA_INSTALL_DIR
    return found + [_line(inner) for inner in frames[start:] if not _filename(inner.f_code).startswith(pyinfra_dir)]


@functools.cache
def _global_argument_types() -> tuple[tuple[str, Any], ...]:
    return tuple(_ORIGINALS[(arguments, "all_global_arguments")]())


def global_argument_types() -> list[tuple[str, type]]:
    """pyinfra's ``all_global_arguments``: each global argument and its type (a new list, as pyinfra's)."""
    return list(_global_argument_types())


@functools.cache
def _host_data_attribute(key: str) -> bool:
    """Whether ``key`` names an attribute of pyinfra's ``HostData`` class (looked up there, not in the data)."""
    return hasattr(HostData, key)


def _data_lookup(target: Host) -> Callable[[str, Any], Any]:
    """
    A lookup of ``target``'s data that answers as ``getattr(target.data, key, default)`` does, for the duration of
    one :func:`global_arguments` call: each of the host's data sources (override, host, groups, inventory,
    ``@deploy`` defaults) is gathered once instead of once per key. Any data object but pyinfra's own
    ``HostData`` is looked up as it is.
    """
    found = target.data
    if type(found) is not HostData:
        return lambda key, default: getattr(found, key, default)
    datas: list[Mapping[str, Any]] = list(extract_callable_datas(found.datas))
    own = vars(found)

    def lookup(key: str, default: Any) -> Any:
        if key in own or _host_data_attribute(key):  # an attribute of the object, not a data key
            return getattr(found, key, default)
        for source in datas:
            if type(source) is dict:
                if key in source:
                    return copy(source[key])  # a shallow copy, as HostData gives
                continue
            try:  # a mapping of the user's: asked as HostData asks it
                return copy(source[key])
            except KeyError:
                pass
        return default

    return lookup


def global_arguments(state: State, target: Host, kwargs: dict[str, Any]) -> tuple[Any, list[str]]:
    """
    pyinfra's ``pop_global_arguments``: the operation's global arguments, popped from ``kwargs``, else from the
    current ``@deploy``'s, else the host's data, else the config's defaults; and the keys ``kwargs`` gave.
    """
    config = state.config
    if ctx_config.isset():  # type: ignore[no-untyped-call]
        config = ctx_config.get()  # type: ignore[no-untyped-call]
        assert config is not None
    meta_kwargs: dict[str, Any] = target.current_deploy_kwargs or {}  # type: ignore[assignment]
    lookup = _data_lookup(target)
    found: dict[str, Any] = {}
    found_keys: list[str] = []
    for key, type_ in arguments.all_global_arguments():
        argument_meta = arguments.all_argument_meta[key]
        default = lookup(key, argument_meta.default(config))
        if key in kwargs:
            found_keys.append(key)
            value = kwargs.pop(key)
        else:
            value = meta_kwargs.get(key, default)
        if argument_meta.handler:
            value = argument_meta.handler(config, value)
        if value != default:
            raise_if_bad_type(value, type_, ArgumentTypeError, f"Invalid argument `{key}`:")
        found[key] = value
    return found, found_keys


def installable() -> bool:
    """Whether the installed pyinfra is one these replacements were checked against."""
    return metadata.version("pyinfra").startswith(CHECKED_VERSIONS)


def install() -> None:
    """Replace pyinfra's functions with these (once; not on an unchecked pyinfra)."""
    if not installable():
        return
    replacements = {
        "get_operation_order_from_stack": operation_order,
        "all_global_arguments": global_argument_types,
        "pop_global_arguments": global_arguments,
    }
    for module, name in _REPLACED:
        setattr(module, name, replacements[name])


def uninstall() -> None:
    """Give pyinfra its own functions back."""
    for (module, name), original in _ORIGINALS.items():
        setattr(module, name, original)
