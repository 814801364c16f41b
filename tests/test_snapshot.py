"""The read-ahead's bookkeeping: which reads are the same read, and reads of several services made one and split."""

from __future__ import annotations

from pyinfra.facts.files import File
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus

from pyinfra_iluvatar.facts.files import PathStats
from pyinfra_iluvatar.facts.packages import DebPackageVersions
from pyinfra_iluvatar.facts.systemd import SystemdUnitStates
from pyinfra_iluvatar.snapshot import _batched, _split, fact_path, key, package_answer, probe, service_reads


def test_a_read_is_keyed_with_its_defaults_filled_in() -> None:
    assert key(SystemdStatus, {"services": ["a.service"]}) == key(
        SystemdStatus, {"services": ["a.service"], "user_mode": False, "machine": None, "user_name": None}
    )
    assert key(File, {"path": "/a"}) != key(File, {"path": "/b"})
    assert key(File, {"no_such_argument": 1}) is None


def test_reads_of_services_are_one_systemctl_show_and_split_back() -> None:
    probes = [*service_reads("a.service"), probe(File, path="/a"), *service_reads("b.service")]
    batched = _batched(probes)
    assert [(path, arguments) for _, path, arguments in batched] == [
        (fact_path(SystemdUnitStates), {"services": ["a.service", "b.service"]}),
        (fact_path(PathStats), {"paths": ["/a"]}),
    ]
    _, path, arguments = batched[0]
    # What SystemdUnitStates returned for both services (b.service unknown to the host: absent from the value).
    split = _split(path, arguments, {"status": {"a.service": True}, "enabled": {"a.service": False}})
    assert split == [
        (fact_path(SystemdStatus), {"services": ["a.service"]}, {"a.service": True}),
        (fact_path(SystemdEnabled), {"services": ["a.service"]}, {"a.service": False}),
    ]
    assert _split(fact_path(File), {"path": "/a"}, None) == [(fact_path(File), {"path": "/a"}, None)]


def test_reads_of_services_with_other_arguments_are_one_read_of_their_own() -> None:
    probes = [probe(SystemdStatus, services=["a.service"], user_mode=True), *service_reads("b.service")]
    probes.append(probe(SystemdStatus, services=["c.service"], user_mode=True))
    assert [(path, arguments) for _, path, arguments in _batched(probes)] == [
        (fact_path(SystemdUnitStates), {"services": ["b.service"]}),
        (fact_path(SystemdStatus), {"services": ["a.service", "c.service"], "user_mode": True}),
    ]
    _, path, arguments = _batched(probes)[1]
    split = _split(path, arguments, {"a.service": True})
    assert split == [(path, {"services": ["a.service"], "user_mode": True}, {"a.service": True})]


def test_stat_lines_answer_file_directory_and_link_as_pyinfra_would() -> None:
    """A line as GNU stat printed it on a sandbox host (Debian 12) for /usr/bin/ctr, a link the worker deploy made."""
    line = (
        "user=root group=root mode=lrwxrwxrwx atime=1796341060 mtime=1796341059 ctime=1796341059 size=18"
        " '/usr/bin/ctr' -> '/usr/local/bin/ctr'"
    )
    answers = {}
    for single, arguments, answer in _split(
        fact_path(PathStats), {"paths": ["/usr/bin/ctr", "/x"]}, {"/usr/bin/ctr": line}
    ):
        answers[(single.rsplit(".", 1)[-1], arguments["path"])] = answer
    assert answers[("Link", "/usr/bin/ctr")]["link_target"] == "/usr/local/bin/ctr"
    assert answers[("File", "/usr/bin/ctr")] is False and answers[("Directory", "/usr/bin/ctr")] is False
    assert answers[("File", "/x")] is None


def test_reads_of_packages_are_one_dpkg_query_answering_every_name_it_covers() -> None:
    probes = [
        probe(DebPackageVersions, packages=["runc", "jq"]),
        probe(File, path="/a"),
        probe(DebPackageVersions, packages=["zfs-dkms", "linux-headers-*", "jq"]),
    ]
    assert [(path, arguments) for _, path, arguments in _batched(probes)] == [
        (fact_path(PathStats), {"paths": ["/a"]}),
        (fact_path(DebPackageVersions), {"packages": ["jq", "linux-headers-*", "runc", "zfs-dkms"]}),
    ]
    # What the one read found (the fixture's shape: tests/facts/packages.DebPackageVersions).
    read = ["jq", "linux-headers-*", "runc", "zfs-dkms"]
    installed = {"jq": ["1.6-2.1+deb12u3"], "linux-headers-6.1.0-28-amd64": ["6.1.119-1"], "runc": ["1.1.5"]}
    assert package_answer(read, installed, {"packages": ["runc", "zfs-dkms"]}) == {"runc": ["1.1.5"]}
    kernel = "linux-headers-6.1.0-28-amd64"
    assert package_answer(read, installed, {"packages": [kernel]}) == {kernel: ["6.1.119-1"]}
    assert package_answer(read, installed, {"packages": ["linux-headers-6.1.0-29-amd64"]}) == {}
    assert package_answer(read, installed, {"packages": ["runc", "curl"]}) is None  # curl was not read
    assert package_answer(read, installed, {"packages": ["linux-headers-*"]}) is None  # a pattern: read live
    assert package_answer(read, installed, {"packages": ["runc"], "other": 1}) is None
