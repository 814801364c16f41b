"""
The GPU deploy's toolkit step alone, for sandbox hosts: they have no NVIDIA GPU, so the GPU deploy's pre-flight
would skip them (``iluvatar_gpu: auto``) or refuse them (``true``). The repository, fingerprint and version come
from the package's own data keys, parsed as the deploy parses them.
"""

from pyinfra.context import host
from pyinfra.facts.deb import DebArch

from pyinfra_iluvatar import data
from pyinfra_iluvatar.deploys.gpu import nvidia_toolkit

nvidia_toolkit(
    repository=data.parse(host, data.NVIDIA_REPOSITORY),
    fingerprint=data.parse(host, data.NVIDIA_KEY_FINGERPRINT),
    version=data.parse(host, data.NVIDIA_TOOLKIT_VERSION),
    arch=host.get_fact(DebArch),
)
