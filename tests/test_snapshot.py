"""The read-ahead's bookkeeping: which reads are the same read, and reads of several services made one and split."""

from __future__ import annotations

from pyinfra.facts.files import File
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus

from pyinfra_iluvatar.snapshot import _batched, _split, fact_path, key, probe, service_reads


def test_a_read_is_keyed_with_its_defaults_filled_in() -> None:
    assert key(SystemdStatus, {"services": ["a.service"]}) == key(
        SystemdStatus, {"services": ["a.service"], "user_mode": False, "machine": None, "user_name": None}
    )
    assert key(File, {"path": "/a"}) != key(File, {"path": "/b"})
    assert key(File, {"no_such_argument": 1}) is None


def test_reads_of_services_are_one_read_per_fact_and_split_back() -> None:
    probes = [*service_reads("a.service"), probe(File, path="/a"), *service_reads("b.service")]
    batched = _batched(probes)
    assert [(path, arguments.get("services")) for _, path, arguments in batched] == [
        (fact_path(File), None),
        (fact_path(SystemdStatus), ["a.service", "b.service"]),
        (fact_path(SystemdEnabled), ["a.service", "b.service"]),
    ]
    _, path, arguments = batched[1]
    # What SystemdStatus returned for both services (b.service unknown to the host: absent from the value).
    split = _split(path, arguments, {"a.service": True})
    assert split == [({"services": ["a.service"]}, {"a.service": True})]
    assert _split(fact_path(File), {"path": "/a"}, None) == [({"path": "/a"}, None)]
