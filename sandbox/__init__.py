"""Disposable systemd hosts over SSH: rehearse deploys, and the end-to-end test bed.

``Sandbox(state_dir, cache_dir).up(hosts=3)`` brings up Debian hosts on this machine (root needed), each with
systemd as PID 1, its own network namespace and address, and an SSH server; ``.down()`` removes them.
"""

from pyinfra_iluvatar.sandbox.errors import PrerequisiteError, SandboxError
from pyinfra_iluvatar.sandbox.manager import Sandbox, SandboxHost

__all__ = ["PrerequisiteError", "Sandbox", "SandboxError", "SandboxHost"]
