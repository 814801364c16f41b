# pyinfra-iluvatar: `make test` is the one command CI and a new contributor run.
# It needs only python3 (and, on a fresh Debian/Ubuntu, installs python3-venv itself when run as root).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint typecheck pytest demo clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || ./.ci/install-python-venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Lint, type-check, then every test (fixture tests, real `pyinfra @local` runs, packaging checks).
test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy sees the repository root under its installed name through a symlink in .build/.
typecheck: $(STAMP)
	@mkdir -p .build/mypy && ln -sfn ../.. .build/mypy/pyinfra_iluvatar
	cd .build/mypy && ../../$(BIN)/mypy --config-file ../../pyproject.toml pyinfra_iluvatar

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# The main job: one sandbox host (reused when it is up; needs root), release archives served from this machine
# (tests/support/demo.py), then the whole worker deploy on it for real over SSH, then `check --smoke` on it
# (ignoring only the cgroups this machine cannot give). `$(BIN)/pyinfra-iluvatar sandbox down` removes the host.
demo: $(STAMP)
	$(BIN)/python -m pyinfra_iluvatar.tests.support.demo

clean:
	rm -rf $(VENV) .build .mypy_cache .ruff_cache .pytest_cache *.egg-info
