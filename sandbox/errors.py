"""What the sandbox raises: one base class, so the command line can print any of them as a clear error."""

from __future__ import annotations


class SandboxError(Exception):
    """The sandbox cannot do what was asked; the message says why and what to do."""


class PrerequisiteError(SandboxError):
    """This machine lacks something the sandbox needs (root, systemd-nspawn, overlayfs, debootstrap, ...)."""


class NetworkInUseError(SandboxError):
    """The sandbox network (bridge name or address range) is already used by something else on this machine."""
