"""Deploys for Ilúvatar hosts; each module also runs as a pyinfra deploy file (:func:`run_as_deploy_file`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable


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
