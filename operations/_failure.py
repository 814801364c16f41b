"""How an operation fails its host alone, with a message."""

from __future__ import annotations

from pyinfra.api.command import QuoteString, StringCommand


def fail_host(message: str) -> StringCommand:
    """
    A command that prints ``pyinfra-iluvatar: <message>`` to stderr and fails: an operation yields it to fail this
    host when it finds the host unfit at execution. Raising instead would stop every host of the run at this
    operation, those it has nothing to do with included.
    """
    return StringCommand("echo", QuoteString(f"pyinfra-iluvatar: {message}"), ">&2", "&&", "exit", "1")
