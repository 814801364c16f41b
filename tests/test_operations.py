"""Every operation against pyinfra-testing fixtures: given facts and arguments, the exact commands it yields.

Each directory ``tests/operations/<module>.<operation>/`` holds JSON cases (``args``/``kwargs``, ``facts``,
``commands``, ``noop_description`` or ``exception``). The shell scripts the release operations yield also run
for real in the end-to-end tests.
"""

from __future__ import annotations

from pathlib import Path
from unittest import TestCase

from pyinfra_testing.operations import make_operation_tests

OPERATIONS_DIR = Path(__file__).parent / "operations"

for _op_dir in sorted(path for path in OPERATIONS_DIR.iterdir() if path.is_dir()):
    _test_class: type[TestCase] = make_operation_tests("pyinfra_iluvatar.operations", _op_dir.name, _op_dir)
    globals()[f"TestOperation_{_op_dir.name.replace('.', '_')}"] = _test_class
del _test_class  # pytest would collect the last class a second time under this name
