# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each installs what it needs first (venv, pip, npm ci), and only when the
# dependency lists changed.

# Python 3.13, the version the app runs on in Azure: python3.13 on PATH, else pyenv's 3.13 (scripts/find-python.sh).
PYTHON ?= $(shell bash scripts/find-python.sh)
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: setup demo test quick lint unit infra-check bench dashboard clean

setup: $(PY_STAMP) $(NODE_STAMP)

$(PY_STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.13 is required: install it (python3.13 on PATH, or pyenv install 3.13), or run make PYTHON=/path/to/python3.13" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 13) else f"Python 3.13 is required, {sys.executable} is {sys.version.split()[0]}")'
	@test ! -x $(PY) || $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' || { echo "$(VENV) is not Python 3.13: making it again"; rm -rf $(VENV); }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# make demo KEEP=1 (or KEEP=1 in the environment): the stack stays up until Ctrl-C, see README.
demo: setup
	$(PY) -m devtools.demo $(if $(filter 1 true yes,$(KEEP)),--keep)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: setup
	$(PY) -m pytest

infra-check:
	bash scripts/check-infra.sh

test: lint unit infra-check

# The pure core and the app's logic against in-memory edges: seconds, no Azurite.
quick: setup
	$(PY) -m pytest tests/unit -q

bench: setup
	$(PY) -m bench.transfer_bench

# docs/dashboard.png: the workbook's panels from a local run's telemetry.
dashboard: setup
	$(PY) -m devtools.dashboard

# Everything the targets above create (tests/unit/test_makefile.py holds it to .gitignore); never the user's own
# local.settings.json or .azure/ (azd's environments).
clean:
	rm -rf $(VENV) .venv-infra node_modules .demo .bench .dashboard .pytest_cache .mypy_cache .ruff_cache .hypothesis \
		samples/subscriber/.mypy_cache build dist *.egg-info
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
