"""Every fact against captured real command output.

Each directory ``tests/facts/<module>.<Fact>/`` holds pyinfra-testing fixtures (``command``, ``output``,
``fact``) plus a ``source`` that says where the output was captured. ``invalid/`` beside them holds outputs
the fact must refuse with ``FactProcessError``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from unittest import TestCase

import pytest
from pyinfra.api.exceptions import FactProcessError
from pyinfra_testing.facts import make_fact_tests

FACTS_DIR = Path(__file__).parent / "facts"
FACT_DIRS = sorted(path for path in FACTS_DIR.iterdir() if path.is_dir())


def _fact_class(fact_dir: Path) -> type:
    module_name, class_name = fact_dir.name.rsplit(".", 1)
    return getattr(importlib.import_module(f"pyinfra_iluvatar.facts.{module_name}"), class_name)  # type: ignore[no-any-return]


for _fact_dir in FACT_DIRS:
    _test_class: type[TestCase] = make_fact_tests("pyinfra_iluvatar.facts", _fact_dir.name, _fact_dir)
    globals()[f"TestFact_{_fact_dir.name.replace('.', '_')}"] = _test_class
del _test_class  # pytest would collect the last class a second time under this name


ALL_FIXTURES = sorted(FACTS_DIR.glob("*/*.json")) + sorted(FACTS_DIR.glob("*/invalid/*.json"))
INVALID_FIXTURES = sorted(FACTS_DIR.glob("*/invalid/*.json"))


@pytest.mark.parametrize("fixture", ALL_FIXTURES, ids=lambda path: str(path.relative_to(FACTS_DIR)))
def test_fixture_names_its_source(fixture: Path) -> None:
    data = json.loads(fixture.read_text())
    assert isinstance(data.get("source"), str) and len(data["source"]) > 20, (
        "fixture must say where its output came from"
    )
    if fixture.parent.name != "invalid":
        assert "command" in data, "fixture must pin the command the fact runs"


@pytest.mark.parametrize("fixture", INVALID_FIXTURES, ids=lambda path: str(path.relative_to(FACTS_DIR)))
def test_fact_refuses_unparseable_output(fixture: Path) -> None:
    data = json.loads(fixture.read_text())
    fact = _fact_class(fixture.parent.parent)()
    output = data["output"].splitlines() if isinstance(data["output"], str) else data["output"]
    with pytest.raises(FactProcessError, match=data["error"]):
        fact.process(output)


def test_every_fact_has_fixtures() -> None:
    """Each fact class the package defines has a fixture directory."""
    from pyinfra.api.facts import FactBase, ShortFactBase

    import pyinfra_iluvatar.facts as facts_package

    tested = {path.name for path in FACT_DIRS}
    missing = []
    for module_path in sorted(Path(facts_package.__file__).parent.glob("[!_]*.py")):
        module = importlib.import_module(f"pyinfra_iluvatar.facts.{module_path.stem}")
        for name, value in vars(module).items():
            is_fact = isinstance(value, type) and issubclass(value, (FactBase, ShortFactBase))
            if is_fact and value.__module__ == module.__name__ and f"{module_path.stem}.{name}" not in tested:
                missing.append(f"{module_path.stem}.{name}")
    assert not missing, f"facts without fixtures: {missing}"
