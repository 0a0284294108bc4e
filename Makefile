# Two commands do all the set-up on a fresh machine:
#   make train   — the main job: python train.py with defaults (synthetic benchmark, CPU)
#   make test    — the style check (ruff) and the test suite
# Both create .venv/ on first use and reuse it afterwards.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

# the suite on every usable core (pytest-xdist; at most 4 workers: each holds its own torch
# and tiny datasets); PYTEST_PARALLEL= runs it in one process
PYTEST_PARALLEL ?= -n auto --maxprocesses=4 --dist worksteal

.PHONY: train test venv

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
	# MTCNN face-detector weights (dataset.crop=detect): only the package's three weight files
	# are read; --no-deps because it pins an old torch that must not replace ours
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps 'facenet-pytorch==2.6.0'
	touch $(STAMP)

venv: $(STAMP)

train: $(STAMP)
	$(VENV)/bin/python train.py $(ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/python -m pytest -q $(PYTEST_PARALLEL) $(PYTEST_ARGS)
