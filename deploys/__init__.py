"""Deploys for Ilúvatar hosts; each module also runs as a pyinfra deploy file (:func:`run_as_deploy_file`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from pyinfra.context import host, state

from pyinfra_iluvatar import pyinfra_speedups

pyinfra_speedups.install()


def run_as_deploy_file(path: str, module: str, deploy: Callable[[], object]) -> None:
    """
    Run ``deploy`` from the deploy file at ``path`` (its ``__file__``), the file of ``module``.

    pyinfra's command line orders operations by walking the stack at every operation call (``inspect.stack``), and
    ``inspect`` names a frame's module from its file: a file it has not seen under that name costs a scan of every
    loaded module, for every frame, at every operation. pyinfra compiles a deploy file under the path as typed
    (``deploys/worker.py``), which no module has: registering that path as ``module``'s saves the scans (about a
    third of a converged run's controller time on three hosts).
    """
    inspect.modulesbyfile.setdefault(path, module)
    deploy()


def changing() -> bool:
    """
    Whether this run changes the current host in an operation registered on it so far: one that ran and changed
    it, or one that would change it now. That is pyinfra's own check (run the operation until its first command,
    on the state read so far), which pyinfra makes at each operation when it shows changes before running (no
    ``-y``) and this makes only up to the first operation that changes something.

    The deploys register their ``_if=``-gated follow-ups (reload systemd, restart, wait until a daemon answers)
    only when this is true: on a host where no operation before them changes anything, no ``_if=`` built from
    those operations can hold, and every operation registered costs the controller time per host on every run.
    """
    registered = state.ops.get(host, {})
    for op_hash in host.op_hash_order:
        op = registered.get(op_hash)
        if op is not None and (
            op.operation_meta.did_change() if op.operation_meta.is_complete() else op.operation_meta.will_change
        ):
            return True
    return False
