"""pyinfra-iluvatar: pyinfra facts, operations and deploys for Ilúvatar worker and build hosts.

The repository root is this package: ``facts/`` is ``pyinfra_iluvatar.facts``, ``operations/`` is
``pyinfra_iluvatar.operations`` and ``deploys/`` is ``pyinfra_iluvatar.deploys``.
"""

__version__ = "0.1.0"
