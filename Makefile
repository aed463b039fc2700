# `make demo` and `make test` work on a fresh machine with Python 3.11: they create (or reuse)
# .venv, install torch==2.13.0 when no torch is present, then the package with its extras.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.structrnn-installed

.PHONY: setup demo test fuzz bench lint docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[all]"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/structrnn demo
	@echo "serve the demo run (a page at http://127.0.0.1:8000/, the API at /docs):"
	@echo "  $(VENV)/bin/structrnn serve runs/demo"

# small models run fastest on one thread, and a shared CPU is not oversubscribed
test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

fuzz: setup
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q -m slow

bench: setup
	$(PY) benchmarks/bench_sequence.py
	$(PY) benchmarks/bench_trees.py
	$(PY) benchmarks/bench_graphs.py

lint: setup
	$(VENV)/bin/ruff check .

# the HTML API reference from the docstrings (pdoc) in site/; any pdoc warning, or a docstring
# reference that names nothing, fails it (see docs/build_api.py)
docs: setup
	rm -rf site
	$(PY) docs/build_api.py --out site

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site
