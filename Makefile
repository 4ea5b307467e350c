# One command to run the demo, one to run the tests; both create (or reuse) .venv.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench clean

$(VENV)/.stamp: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# the CPU build of torch 2.13.0 (a bare `torch` would pull a multi-GB CUDA build)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,plot]"
	touch $@

demo: $(VENV)/.stamp
	$(VENV)/bin/lazygeom demo

test: $(VENV)/.stamp
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -q

bench: $(VENV)/.stamp
	$(PY) benchmarks/reference.py

clean:
	rm -rf $(VENV) .pytest_cache
