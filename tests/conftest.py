"""Shared test fixtures.

``sandbox``: tests marked ``@pytest.mark.sandbox`` get three real hosts (``pyinfra-iluvatar sandbox``), brought
up once per session and always taken down. Needs root; ``pytest -m "not sandbox"`` runs everything else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pyinfra_iluvatar.sandbox import Sandbox
from pyinfra_iluvatar.sandbox.settings import STATE_DIR_ENV
from pyinfra_iluvatar.tests.support.sandbox import SandboxSession, free_test_network

SANDBOX_HOSTS = 3


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxSession]:
    """Three sandbox hosts (workers) for the whole session, on a free test network."""
    with free_test_network() as (index, state_dir):
        box = Sandbox(state_dir, net=index, say=print)
        try:
            hosts = box.up(hosts=SANDBOX_HOSTS)
            yield SandboxSession(box, hosts, env={**os.environ, STATE_DIR_ENV: str(state_dir)})
        finally:
            box.down()
