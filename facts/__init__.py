"""Facts that pyinfra-iluvatar adds to pyinfra: one module per domain."""
