# Everything runs inside .venv, which the first `make demo` or `make test` creates.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# A process per core (pytest-xdist; tests/conftest.py keeps each to one thread), at most 4: a
# container may see more cores than its CPU quota gives it, and each process loads torch.
PYTEST := $(PY) -m pytest -q -n auto --maxprocesses 4

.PHONY: demo test test-all clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), f"gatedrnn needs Python >= 3.11, $(PYTHON) is {sys.version.split()[0]}"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

demo: $(VENV)/.installed          ## the main job: train a char-LM on the embedded corpus, sample
	$(VENV)/bin/gatedrnn demo

test: $(VENV)/.installed          ## the test suite CI runs
	$(PYTEST)

test-all: $(VENV)/.installed      ## also the slow tests
	$(PYTEST) --runslow

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
