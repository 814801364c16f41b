"""The sandbox as a pyinfra inventory: its hosts, grouped like a real lab, with their SSH data.

From a checkout: ``pyinfra inventories/sandbox.py DEPLOY``. Installed: ``pyinfra
pyinfra_iluvatar.sandbox.inventory.groups DEPLOY``. The sandbox is found in ``$PYINFRA_ILUVATAR_SANDBOX_STATE``
(default ``/var/lib/pyinfra-iluvatar/sandbox``).
"""

from __future__ import annotations

from typing import Any

from pyinfra.api.exceptions import InventoryError

from pyinfra_iluvatar.sandbox.errors import SandboxError
from pyinfra_iluvatar.sandbox.manager import Sandbox


def groups() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """``workers`` and ``build``: ``(name, data)`` for each host of the sandbox that is up.

    Raises ``InventoryError`` when there is none or a setting is bad: pyinfra prints its message, no traceback.
    """
    try:
        return Sandbox().inventory()
    except SandboxError as error:
        raise InventoryError(str(error)) from None
