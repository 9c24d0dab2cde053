# Each target bootstraps .venv itself (once; again when pyproject.toml, setup.py or the C kernels change).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PRESET ?= default

.PHONY: help run test test-fast test-browser course lab bench notebooks clean

help:
	@echo "make run        execute the tutorial notebooks (preset $(PRESET)) into outputs/"
	@echo "make test       unit tests + notebook validation (nbval) + papermill smoke runs + browser tests"
	@echo "make course     student / instructor notebooks, two offline websites and slides in course/"
	@echo "make lab        JupyterLab on notebooks/"
	@echo "make bench      DMD, recording, disk and distributed benchmarks (ratios against baselines)"
	@echo "make notebooks  re-execute notebooks/ in place (refresh committed outputs)"

$(STAMP): pyproject.toml setup.py koopman_tut/numerics/_fused.c
	@if [ ! -x $(BIN)/python ]; then echo ">> creating $(VENV)"; $(PYTHON) -m venv $(VENV); fi
	@echo ">> installing koopman_tut and its test extras into $(VENV) (first time: a few minutes)"
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

run: $(STAMP)
	@echo ">> koopman-tut run --preset $(PRESET)"
	$(BIN)/koopman-tut run --preset $(PRESET)

# The suite runs on JOBS pytest-xdist workers, each (and each notebook kernel it starts) on
# one thread: these small models gain little from a second thread, and JOBS workers with
# several threads each would oversubscribe the cores. Tests are spread one by one (an idle
# worker steals queued ones); nbval's cells stay with their notebook (--dist loadfile).
# stdin is /dev/null: a harness that closes stdin must not change what the tests see
# (pytest's stand-in fails on IPython's import).
JOBS ?= 2
# the numerical tests run again under ATen's portable kernels (one thread), AVX2 and MKL's
# conditional-numerical-reproducibility path (MKL_CBWR=COMPATIBLE: other LAPACK/BLAS kernels,
# other rounding, also on AMD CPUs where MKL_ENABLE_INSTRUCTIONS changes nothing)
KERNEL_TESTS := tests/test_dmd.py tests/test_snapshots.py tests/test_eig_order.py tests/test_limits.py tests/test_native.py
PYTEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -p no:cacheprovider -n $(JOBS)

test: $(STAMP)
	@echo ">> DMD tests under other CPU kernels (a precision bug or an eigenvalue order must not hide behind one BLAS path)"
	ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q $(KERNEL_TESTS) -p no:cacheprovider < /dev/null
	ATEN_CPU_CAPABILITY=avx2 $(BIN)/python -m pytest -q $(KERNEL_TESTS) -p no:cacheprovider < /dev/null
	MKL_CBWR=COMPATIBLE $(BIN)/python -m pytest -q $(KERNEL_TESTS) -p no:cacheprovider < /dev/null
	@echo ">> unit tests, claims on real networks, papermill runs at other seeds, browser ($(JOBS) workers)"
	$(PYTEST) --dist worksteal tests < /dev/null
	@echo ">> nbval: re-execute notebooks/ and compare the checked outputs ($(JOBS) workers)"
	$(PYTEST) -p tests.nbval_retry --dist loadfile notebooks --nbval-lax < /dev/null

test-fast: $(STAMP)
	$(PYTEST) --dist worksteal tests -m "not slow and not browser" < /dev/null

test-browser: $(STAMP)
	$(BIN)/python -m pytest -q tests -m browser -p no:cacheprovider

course: $(STAMP)
	$(BIN)/koopman-tut course course --force

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root,)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_dmd.py --n 1000000 --t 64
	$(BIN)/python benchmarks/bench_gram_blocks.py
	$(BIN)/python benchmarks/bench_recording.py
	$(BIN)/python benchmarks/bench_scale.py

notebooks: $(STAMP)
	$(BIN)/koopman-tut run --preset default --in-place

clean:
	rm -rf outputs course test-artifacts .pytest_cache
