"""The ``lab`` fixture of the end-to-end tests: the session's sandbox hosts plus a fake upstream serving them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pyinfra_iluvatar.tests.support.lab import Lab, running_lab
from pyinfra_iluvatar.tests.support.sandbox import SandboxSession


@pytest.fixture(scope="module")
def lab(sandbox: SandboxSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The lab for one test module; containerd stopped and this package's releases removed afterwards."""
    with running_lab(sandbox, tmp_path_factory.mktemp("lab")) as each:
        yield each
