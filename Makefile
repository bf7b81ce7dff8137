# Everything runs inside .venv, which the first `make demo` or `make test` creates.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet -c constraints.txt
# A process per core (pytest-xdist; tests/conftest.py keeps each to one thread), at most 4: a
# container may see more cores than its CPU quota gives it, and each process loads torch.
PYTEST := $(PY) -m pytest -q -n auto --maxprocesses 4
# On Linux the test extra installs Triton (constraints.txt: 3.6, with a NumPy its interpreter
# runs with), so a Triton the backend cannot use there is a broken environment: the suite stops
# at once (tests/conftest.py) rather than skipping the backend's tests, a third of the suite.
ifeq ($(shell uname -s),Linux)
export GATEDRNN_REQUIRE_TRITON := 1
endif

.PHONY: demo test test-all test-triton-floor docs package clean

# The package and what it needs, nothing more: what `make demo` installs.
$(VENV)/.package: pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), f"gatedrnn needs Python >= 3.11, $(PYTHON) is {sys.version.split()[0]}"'
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $@

$(VENV)/.installed: $(VENV)/.package
	$(PIP) -e '.[test]'
	touch $@

$(VENV)/.docs: $(VENV)/.package
	$(PIP) -e '.[docs]'
	touch $@

demo: $(VENV)/.package           ## the main job: train a char-LM on the embedded corpus, sample
	$(VENV)/bin/gatedrnn demo

test: $(VENV)/.installed          ## the test suite CI runs
	$(PYTEST)

test-all: $(VENV)/.installed      ## also the slow tests
	$(PYTEST) --runslow

# The site, from docs/ with the README as its home page (links into docs/ made relative).
docs: $(VENV)/.docs               ## the documentation site, in site/, built strictly
	sed -e 's#](docs/#](#g' README.md > docs/index.md
	$(VENV)/bin/mkdocs build --strict --quiet

# A wheel and an sdist, and the wheel installed into a new venv, where it runs the demo.
package: $(VENV)/.installed       ## build the wheel and sdist, check the wheel in a clean venv
	rm -rf dist build/package-check
	$(PIP) build
	$(PY) -m build --outdir dist .
	$(PYTHON) -m venv build/package-check
	build/package-check/bin/python -m pip install --quiet -c constraints.txt dist/gatedrnn-*.whl
	cd build && package-check/bin/python -c 'import gatedrnn, torch; \
		out, _ = gatedrnn.GRU(3, 4)(torch.randn(5, 2, 3)); assert out.shape == (5, 2, 4)'
	build/package-check/bin/gatedrnn --version
	cd build && package-check/bin/gatedrnn demo --steps 20 --out package-check/demo

# The oldest Triton the "triton" backend supports (gatedrnn/kernels/triton.py, MIN_TRITON), put
# before .venv's own on the path: the backend against the reference (every variant, float32
# and float64), every launch across several tiles (the barrier launches with a thread per
# program) and the interpreter's memory checks fail there on any Triton feature newer than it.
FLOOR := $(VENV)/triton-floor
test-triton-floor: $(VENV)/.installed   ## the triton backend's tests on its oldest Triton
	version=$$($(PY) -c 'from gatedrnn.kernels.triton import MIN_TRITON as v; print("%d.%d.0" % v)') && \
	$(PY) -m pip install --quiet --no-deps --upgrade --target $(FLOOR) "triton==$$version" && \
	PYTHONPATH=$(FLOOR) $(PY) -c "import triton; assert triton.__version__ == '$$version', triton.__version__" && \
	PYTHONPATH=$(FLOOR) $(PYTEST) tests/test_backends.py -k triton && \
	PYTHONPATH=$(FLOOR) $(PYTEST) tests/test_interpreter_memory.py \
		tests/test_triton.py::test_every_tile_matches_the_loop

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache site docs/index.md dist build
