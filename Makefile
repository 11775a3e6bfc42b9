# Two commands matter: `make demo` and `make test`. Both set everything up from a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test test-fast install dev lint bench clean audit lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

dev: $(STAMP)

demo: $(VENV)/.installed
	$(BIN)/conveyor quickstart

test: $(STAMP)
	mkdir -p .cache && ($(BIN)/python -m tests.export.prewarm > .cache/prewarm.log 2>&1 &)
	bash scripts/system-packages.sh
	$(MAKE) audit
	$(BIN)/python -m pytest -q --durations=25

# pip-audit over the pinned dev install; offline it prints SKIPPED instead of failing
audit: $(STAMP)
	$(BIN)/python scripts/audit.py

# regenerate the pins pip-audit reads, after changing dependencies in pyproject.toml
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable --all | grep -v '^conveyor' | LC_ALL=C sort -f > requirements.lock

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/step_overhead.py
	$(BIN)/python benchmarks/startup.py

clean:
	rm -rf $(VENV) .conveyor .pytest_cache
