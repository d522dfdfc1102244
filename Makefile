# Two commands: `make demo` and `make test`. Both build .venv from scratch if needed.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# BLAS kernels and malloc thresholds are tuned by tensorcalc.backend at import (see
# benchmarks/RESULTS.md); nothing here forces a CPU-specific setting that could crash.

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null
	$(BIN)/pip install -e '.[dev,fast]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tensorcalc demo

test: $(STAMP)
	$(BIN)/ruff check tensorcalc tests benchmarks
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2

lint: $(STAMP)
	$(BIN)/ruff check tensorcalc tests benchmarks

# Benchmarks against PyTorch live in their own venv (torch is never a dependency of the package).
bench:
	test -x .venv-bench/bin/python || $(PY) -m venv .venv-bench
	.venv-bench/bin/pip install -e '.[fast]' 'torch==2.13.0' threadpoolctl
	.venv-bench/bin/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs
