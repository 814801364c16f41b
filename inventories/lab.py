"""
An example lab inventory: copy it, put your hosts in, run ``pyinfra inventories/lab.py deploys/worker.py``.

Group names are what the deploys expect: ``workers`` run functions, ``build`` compiles Ilúvatar. Per-host
data keys (README table) sit beside each host; group-wide ones in ``group_data/<group>.py``.
"""

workers = [
    ("worker-01.lab.example", {"ssh_user": "root"}),
    ("worker-02.lab.example", {"ssh_user": "root"}),
    ("jetson-01.lab.example", {"ssh_user": "root", "iluvatar_energy_tools": False}),
]

build = [
    ("build-01.lab.example", {"ssh_user": "root"}),
]
