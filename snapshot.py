"""
Read ahead: every fact a deploy's operations will read on a host, read in one round trip before they run.

pyinfra 3 runs one command per fact an operation reads and shares nothing between operations, so a converged
worker deploy cost one round trip per fact (37 per host). A deploy instead names what its operations read —
:data:`~pyinfra_iluvatar.facts.combined.Probe` s, from its settings — and :func:`read_ahead` reads them on every
host at once with :class:`~pyinfra_iluvatar.facts.combined.Combined`. From then on the host's ``get_fact`` answers
those facts from what was read, as long as it is still what the host would say:

- until the first command that is not a fact read runs on the host (an operation's, or any other code's; a file
  upload too). From then on every fact is read live, as pyinfra does. On a converged host nothing runs, so every
  operation decides from the one read; a run that changes something is as correct as pyinfra alone;
- only for the same fact with the same arguments (defaults filled in), read as the same user (``_sudo``,
  ``_su_user``, ``_chdir``, ... equal to the read-ahead's); anything else is read live. Installed packages
  (:class:`~pyinfra_iluvatar.facts.packages.DebPackageVersions`) are the one exception: any names the read-ahead's
  ``dpkg-query`` covered are answered from it;
- a probe the host could not process (:class:`~pyinfra_iluvatar.facts.combined.Unreadable`) is read live again,
  so its error comes from the fact itself.

Every answer is a copy: an operation that edits a fact's value changes nothing for the next one.
"""

from __future__ import annotations

import copy
import fnmatch
import inspect
import json
import posixpath
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import gevent  # type: ignore[import-untyped]
from pyinfra import logger
from pyinfra.api import arguments as pyinfra_arguments
from pyinfra.api.facts import FactBase, ShortFactBase
from pyinfra.api.host import Host
from pyinfra.api.state import State
from pyinfra.context import ctx_host
from pyinfra.facts.files import Directory, File, Link, Sha1File
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus

from pyinfra_iluvatar.facts.combined import Combined, Probe, Unreadable, fact_class
from pyinfra_iluvatar.facts.files import FileHashes, PathStats
from pyinfra_iluvatar.facts.packages import DebPackageVersions
from pyinfra_iluvatar.facts.systemd import SystemdUnitStates

Key = tuple[str, str]
"""A fact read: the fact's class path and its arguments (defaults filled in) as sorted JSON."""
Identity = tuple[Any, ...]
"""Who and where a fact read runs as: the values of the :data:`_IDENTITY` global arguments, in that order."""

_IDENTITY = (
    "_sudo",
    "_sudo_user",
    "_use_sudo_login",
    "_preserve_sudo_env",
    "_su_user",
    "_use_su_login",
    "_preserve_su_env",
    "_su_shell",
    "_doas",
    "_doas_user",
    "_chdir",
    "_env",
    "_shell_executable",
)
"""The global arguments that change what a fact's command sees (who runs it, where, with what environment)."""
_METHODS = ("get_fact", "run_shell_command", "put_file")


def fact_path(fact: type[FactBase[Any]]) -> str:
    """``pyinfra.facts.files.File``: the path :class:`Combined` probes name a fact by."""
    return f"{fact.__module__}.{fact.__qualname__}"


_signatures: dict[type[FactBase[Any]], tuple[inspect.Signature, frozenset[str]] | None] = {}


def _command_signature(fact: type[FactBase[Any]]) -> tuple[inspect.Signature, frozenset[str]] | None:
    """
    The signature of ``fact``'s ``command`` method (``self`` first) and the names of its other parameters when
    they are all plain (named, no ``*args``/``**kwargs``); ``None`` for a command that is a string.
    """
    if fact not in _signatures:
        command = fact.command
        if not callable(command):
            _signatures[fact] = None
        else:
            signature = inspect.signature(command)
            rest = list(signature.parameters.values())[1:]
            plain = all(parameter.kind is parameter.POSITIONAL_OR_KEYWORD for parameter in rest)
            _signatures[fact] = (signature, frozenset(parameter.name for parameter in rest) if plain else frozenset())
    return _signatures[fact]


def key(fact: type[FactBase[Any]], arguments: Mapping[str, Any]) -> Key | None:
    """The read of ``fact`` with ``arguments``, defaults filled in; ``None`` when the arguments do not fit."""
    found = _command_signature(fact)
    if found is None:
        return None if arguments else (fact_path(fact), "{}")
    signature, names = found
    if names and names == arguments.keys():  # every parameter given by name: nothing to fill in
        filled = dict(arguments)
    else:
        try:
            bound = signature.bind(None, **arguments)
        except TypeError:
            return None
        bound.apply_defaults()
        filled = dict(bound.arguments)
        filled.pop(next(iter(signature.parameters)))
    return fact_path(fact), json.dumps(filled, sort_keys=True, default=str)


def _identity(state: State, target: Host) -> Identity:
    """Who and where a fact read on ``target`` runs as now: its current operation's global arguments, or (outside
    any operation) those of the host's data and the run's config."""
    current = target.current_op_global_arguments
    found: Mapping[str, Any] = (
        current if current is not None else pyinfra_arguments.pop_global_arguments(state, target, {})[0]
    )
    return tuple(found.get(name) for name in _IDENTITY)


class Snapshot:
    """One host's read-ahead facts; installed as the host's ``get_fact``, ``run_shell_command`` and ``put_file``."""

    def __init__(self, state: State, target: Host) -> None:
        self.state = state
        self.host = target
        self.values: dict[Key, Any] = {}
        self.package_names: list[str] = []
        """The package names and patterns read ahead with :class:`DebPackageVersions` (all its reads made one)."""
        self.packages: dict[str, list[str]] = {}
        """What those reads found installed: a read of any of the names they cover is answered from it."""
        self.identity = _identity(state, target)
        self.stale = False
        """Set by the first command on the host that is not a fact read: every fact is read live from then on."""
        self._reading = 0
        self._methods = {name: getattr(target, name) for name in _METHODS}
        for name in _METHODS:
            setattr(target, name, getattr(self, name))  # an instance attribute over the class's method

    def uninstall(self) -> None:
        """Give the host its own methods back."""
        for name in _METHODS:
            if name in vars(self.host):
                delattr(self.host, name)

    def has(self, probe: Probe, read: Key | None) -> bool:
        """Whether ``probe`` (its :func:`key`: ``read``) was read ahead (or cannot be: a fact that is not a plain
        ``FactBase``)."""
        _, path, arguments = probe
        if path == _PACKAGES:
            return package_answer(self.package_names, self.packages, arguments) is not None
        return read is None or read in self.values

    def get_fact(self, fact: Any, *args: Any, **kwargs: Any) -> Any:
        """The fact as the host would answer now: from the read-ahead while it holds, else read live."""
        if not self.stale and not args and isinstance(fact, type) and issubclass(fact, FactBase):
            arguments = {name: value for name, value in kwargs.items() if not name.startswith("_")}
            if len(arguments) == len(kwargs) and _identity(self.state, self.host) == self.identity:
                found, value = self._answer(fact, arguments)
                if found:
                    return value
            if fact is not Combined:
                logger.debug(f"{self.host.print_prefix}fact not read ahead: {fact_path(fact)} {arguments}")
        self._reading += 1
        try:
            return self._methods["get_fact"](fact, *args, **kwargs)
        finally:
            self._reading -= 1

    def _answer(self, fact: type[FactBase[Any]], arguments: Mapping[str, Any]) -> tuple[bool, Any]:
        """``(True, a copy of the value)`` when the read-ahead has it (a :class:`Combined` read: each of its probes)."""
        if fact is Combined:
            probes = arguments.get("probes", ())
            reads = {name: _probe_key((name, path, values)) for name, path, values in probes}
            if not reads or not all(read in self.values for read in reads.values()):
                return False, None
            return True, {name: _copy(self.values[read]) for name, read in reads.items() if read}
        if fact is DebPackageVersions:
            answer = package_answer(self.package_names, self.packages, arguments)
            return answer is not None, answer
        read = key(fact, arguments)
        if read is None or read not in self.values:
            return False, None
        return True, _copy(self.values[read])

    def run_shell_command(self, *args: Any, **kwargs: Any) -> Any:
        """Run a command; anything but a fact read may change the host, so the read-ahead no longer holds."""
        if not self._reading:
            self.stale = True
        return self._methods["run_shell_command"](*args, **kwargs)

    def put_file(self, *args: Any, **kwargs: Any) -> Any:
        """Upload a file; the read-ahead no longer holds."""
        self.stale = True
        return self._methods["put_file"](*args, **kwargs)


def package_answer(
    read: list[str], installed: Mapping[str, list[str]], arguments: Mapping[str, Any]
) -> dict[str, list[str]] | None:
    """
    What :class:`DebPackageVersions` with ``arguments`` answers, from reads of the names and patterns ``read``
    that found ``installed``; ``None`` unless it asks only for names (no patterns) that those reads covered.
    """
    names = arguments.get("packages")
    if set(arguments) != {"packages"} or not isinstance(names, list):
        return None
    plain = all(isinstance(name, str) and not any(char in name for char in "*?[") for name in names)
    if not plain or not all(any(fnmatch.fnmatchcase(name, pattern) for pattern in read) for name in names):
        return None
    return {name: list(versions) for name, versions in installed.items() if name in names}


def _copy(value: Any) -> Any:
    """A deep copy of a fact's value: dicts, lists, sets and tuples of plain values copied here (a package list,
    read by several operations, in a fraction of ``copy.deepcopy``'s time), anything else by ``copy.deepcopy``."""
    if type(value) is dict:
        return {name: _copy(item) for name, item in value.items()}
    if type(value) is list:
        return [_copy(item) for item in value]
    if type(value) in (set, tuple, frozenset):
        return type(value)(_copy(item) for item in value)
    if value is None or type(value) in (str, int, float, bool):
        return value
    return copy.deepcopy(value)


_snapshots: weakref.WeakKeyDictionary[Host, Snapshot] = weakref.WeakKeyDictionary()


def _probe_key(probe: Probe) -> Key | None:
    _, path, arguments = probe
    fact = fact_class(path)
    return None if issubclass(fact, ShortFactBase) else key(fact, arguments)


def prepare(state: State, probes: Mapping[Host, Iterable[Probe]]) -> dict[Host, list[Probe]]:
    """
    What to read on each host for its ``probes`` to be read ahead: those not read ahead yet (none where the
    read-ahead no longer holds), batched into as few commands as give the same answers and named ``p0``, ``p1``,
    ... for one :class:`Combined` read (with other probes of other names, if the caller reads some too). Hand
    what that read found to :func:`store`.
    """
    wanted: dict[Host, list[Probe]] = {}
    for target, asked in probes.items():
        snapshot = _snapshots.get(target)
        if snapshot is None or snapshot.state is not state:  # a host of an earlier run in this process
            if snapshot is not None:
                snapshot.uninstall()
            snapshot = _snapshots[target] = Snapshot(state, target)
        if snapshot.stale:
            continue
        unique = {}
        for probe in asked:
            read = _probe_key(probe)
            unique[read or probe[1]] = (probe, read)
        unread = _batched([probe for probe, read in unique.values() if not snapshot.has(probe, read)])
        if unread:
            wanted[target] = [(f"p{index}", path, arguments) for index, (_, path, arguments) in enumerate(unread)]
    return wanted


def store(target: Host, asked: list[Probe], found: Mapping[str, Any]) -> None:
    """
    Keep what a :class:`Combined` read of the probes :func:`prepare` gave for ``target`` found (``found``: the
    read's value): from then on the host's ``get_fact`` answers those reads while they hold. A probe the read
    could not process is left out (read live then: the fact reports its own error).
    """
    snapshot = _snapshots[target]
    for name, path, arguments in asked:
        value = found.get(name)
        if name not in found or isinstance(value, Unreadable):
            continue
        if path == _PACKAGES and isinstance(value, dict):
            snapshot.package_names += arguments["packages"]
            snapshot.packages.update(value)
            continue
        for single, one, answer in _split(path, arguments, value):
            known = _probe_key((name, single, one))
            if known is not None:
                snapshot.values[known] = answer


def read_ahead(state: State, probes: Mapping[Host, Iterable[Probe]]) -> None:
    """
    Read each host's ``probes`` (those not read ahead yet, on hosts where the read-ahead still holds) in one round
    trip per host, all hosts at once; from then on the host's ``get_fact`` answers them while they hold.
    """
    wanted = prepare(state, probes)

    def read(target: Host, asked: list[Probe]) -> dict[str, Any]:
        with ctx_host.use(target):
            found: dict[str, Any] = target.get_fact(Combined, probes=tuple(asked))
            return found

    greenlets = {target: gevent.spawn(read, target, asked) for target, asked in wanted.items()}
    gevent.joinall(list(greenlets.values()))
    for target, greenlet in greenlets.items():
        if greenlet.successful() and isinstance(greenlet.value, dict):
            store(target, wanted[target], greenlet.value)


_PER_SERVICE = (fact_path(SystemdStatus), fact_path(SystemdEnabled))
"""Facts of several services at once (``services=[...]``: one ``systemctl show``), answering each one's read."""
_STATS = {fact_path(fact): fact for fact in (File, Directory, Link)}
"""pyinfra's facts that ``stat`` one path: :class:`PathStats` answers them for every path in one ``stat``."""
_HASHES = fact_path(Sha1File)
"""pyinfra's fact that hashes one file: :class:`FileHashes` answers it for every file in one ``sha1sum``."""
_PACKAGES = fact_path(DebPackageVersions)
"""Reads of installed packages: every read ahead made one ``dpkg-query`` of all their names and patterns, which
answers a later read of any names it covers (a read ahead may ask more: a pattern for a name not known yet,
``linux-headers-*`` for the running kernel's)."""


def _batched(probes: list[Probe]) -> list[Probe]:
    """
    ``probes`` in as few commands as give the same answers: reads of :data:`_PER_SERVICE` facts that differ only
    in their services made one (one :class:`SystemdUnitStates` for both facts' services when neither has other
    arguments), every :data:`_STATS` read one :class:`PathStats`, every :data:`_HASHES` read one
    :class:`FileHashes`, every :data:`_PACKAGES` read one.
    """
    singles: list[Probe] = []
    services: dict[tuple[str, str], list[str]] = {}
    first: dict[tuple[str, str], Probe] = {}
    stats: list[str] = []
    hashes: list[str] = []
    packages: list[str] = []
    for name, path, arguments in probes:
        plain_path = isinstance(arguments.get("path"), str) and arguments["path"].startswith("/")
        if path in _STATS and plain_path and "\n" not in arguments["path"]:
            stats.append(arguments["path"])
        elif path == _HASHES and plain_path and "\n" not in arguments["path"]:
            hashes.append(arguments["path"])
        elif path == _PACKAGES and set(arguments) == {"packages"} and isinstance(arguments["packages"], list):
            packages += arguments["packages"]
        elif path in _PER_SERVICE and "services" in arguments:
            rest = json.dumps({k: v for k, v in arguments.items() if k != "services"}, sort_keys=True, default=str)
            first.setdefault((path, rest), (name, path, arguments))
            services.setdefault((path, rest), []).extend(arguments["services"])
        else:
            singles.append((name, path, arguments))
    plain = [group for group in first if group[1] == "{}"]
    merged: list[Probe] = []
    if len(plain) == len(_PER_SERVICE):  # both facts, no other arguments: one systemctl show for both
        units = list(dict.fromkeys(service for group in plain for service in services.pop(group)))
        merged.append(("units", fact_path(SystemdUnitStates), {"services": units}))
    merged += [
        (name, path, {**arguments, "services": services[group]})
        for group, (name, path, arguments) in first.items()
        if group in services
    ]
    if stats:
        merged.append(("stats", fact_path(PathStats), {"paths": sorted(set(stats))}))
    if hashes:
        merged.append(("hashes", fact_path(FileHashes), {"paths": sorted(set(hashes))}))
    if packages:
        merged.append(("packages", _PACKAGES, {"packages": sorted(set(packages))}))
    return singles + merged


def _split(path: str, arguments: Mapping[str, Any], value: Any) -> list[tuple[str, Mapping[str, Any], Any]]:
    """Each single read a :func:`_batched` read answers, with its answer as the third item."""
    if path in _PER_SERVICE and isinstance(value, dict):
        return [
            (path, {**arguments, "services": [service]}, {service: value[service]})
            for service in arguments["services"]
            if service in value
        ]
    if path == fact_path(SystemdUnitStates) and isinstance(value, dict):
        return [
            (single, {"services": [service]}, {service: value[part][service]})
            for part, single in zip(("status", "enabled"), _PER_SERVICE, strict=True)
            for service in arguments["services"]
            if service in value[part]
        ]
    if path in (fact_path(PathStats), fact_path(FileHashes)) and not isinstance(value, dict):
        return []  # the tool printed nothing: each file is read on its own then
    if path == fact_path(PathStats):
        return [
            (single, {"path": file}, fact().process([value[file]]) if file in value else None)
            for file in arguments["paths"]
            for single, fact in _STATS.items()
        ]
    if path == fact_path(FileHashes):
        return [(_HASHES, {"path": file}, value.get(file)) for file in arguments["paths"]]
    return [(path, arguments, value)]


def probe(fact: type[FactBase[Any]], **arguments: Any) -> Probe:
    """A read of ``fact`` with ``arguments``, for a deploy's list of what its operations read."""
    return ("read", fact_path(fact), arguments)


def put_reads(path: str) -> list[Probe]:
    """What pyinfra's ``files.put`` (and ``files.template``) reads for ``dest=path`` on a host that has the file."""
    return [probe(File, path=path), probe(Directory, path=posixpath.dirname(path)), probe(Sha1File, path=path)]


def service_reads(service: str) -> list[Probe]:
    """What pyinfra's ``systemd.service`` reads for ``service`` (its state, and whether it is enabled)."""
    return [probe(SystemdStatus, services=[service]), probe(SystemdEnabled, services=[service])]
