"""
An example lab inventory: copy it, put your hosts in, then

    pyinfra-iluvatar lock                               # once: iluvatar.lock.json, committed beside this file
    pyinfra inventories/lab.py deploys/worker.py        # every worker, in parallel

Groups: ``workers`` get the worker deploy; ``build`` compiles Ilúvatar; ``controller`` runs Ilúvatar's controller
(each worker's ``load_balancer_url`` is port 8078 of its first host, unless ``iluvatar_load_balancer_url`` says
otherwise). A group is a list of hosts, or a ``(hosts, data)`` pair whose data every host of the group gets
(pyinfra also reads ``group_data/<group>.py`` beside the inventory); data beside a host wins over its group's.
Every key is in the README's data-key table; a bad value stops the run before the first change on any host,
naming host and key.
"""

# Every worker: a pool on a 200 GiB file on the data disk (the setup page's layout), 2 GiB and one CPU kept for
# the host, and Ilúvatar's logs where the lab keeps them.
_workers_data = {
    "ssh_user": "root",
    "iluvatar_zfs_vdev_file": "/data2/iluvatar/zfs/ilu-pool",
    "iluvatar_zfs_vdev_size": "200G",
    "iluvatar_memory_reserve_mb": 2048,
    "iluvatar_cpu_reserve": 1,
    "iluvatar_worker_config": {"logging": {"directory": "/data2/iluvatar/logs"}},
}

_workers = [
    # A Debian 12 worker: OpenZFS comes from contrib (zfs-dkms builds the module for the running kernel).
    ("worker-01.lab.example", {"iluvatar_energy_tools": True}),
    # An Ubuntu 24.04 worker whose pool is a whole disk instead of a file (never one that holds data: a disk with
    # a filesystem, partition table or another pool's label is refused unless iluvatar_zfs_force is true).
    (
        "worker-02.lab.example",
        {"iluvatar_zfs_devices": ["/dev/disk/by-id/nvme-SAMSUNG_MZQL21T9HCJR-00A07_S64GNE0R000001"]},
    ),
    # A Jetson (arm64): the lock needs arm64 artifacts (`pyinfra-iluvatar lock` locks amd64 and arm64 by
    # default); reached as a sudoer, with its smaller memory mostly left to functions.
    (
        "jetson-01.lab.example",
        {"ssh_user": "ubuntu", "_sudo": True, "iluvatar_memory_reserve_mb": 1024, "iluvatar_zfs_vdev_size": "40G"},
    ),
]
workers = (_workers, _workers_data)

controller = [
    ("controller.lab.example", {"ssh_user": "root"}),
]

build = [
    ("build-01.lab.example", {"ssh_user": "root"}),
]
