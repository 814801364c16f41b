"""
The hosts of the sandbox that is up on this machine (``pyinfra-iluvatar sandbox up``), grouped like a real lab.

``pyinfra inventories/sandbox.py deploys/worker.py`` runs a deploy on them over SSH. Hosts carry their address,
the sandbox's key and its known_hosts file (host keys are checked strictly). ``$PYINFRA_ILUVATAR_SANDBOX_STATE``
picks another sandbox than the default one.
"""

from pyinfra_iluvatar.sandbox.inventory import groups as _groups

_hosts = _groups()
workers = _hosts["workers"]
build = _hosts["build"]
