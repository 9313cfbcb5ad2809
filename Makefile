# `make demo` and `make test` set everything up on first use: .venv, the package, its dependencies.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# pytest-xdist workers for `make test` (one per core of the 2-core machines we size for); 0 runs one process.
TEST_WORKERS ?= 2
# pip installs without compiling the 18,500 modules of the dependencies (55 s of CPU): Python compiles the
# ~4,900 a run imports on first use (15 s) and keeps them, which it cannot while this is set.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-fast lint format clean browser gpu-check

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-compile -c constraints.txt -e '.[dev,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cmadapter demo $(DEMO_ARGS)

test: $(STAMP) browser
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The edit loop: every test not marked slow (no training run, trained demo, torchrun, Ray or browser).
# `make test` (CI) still runs them all.
test-fast: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup -m "not slow" $(PYTEST_ARGS)

# Browser tests drive Debian's chromium (Playwright's own download is unreachable): installed when missing
# and we are root; otherwise those tests skip and say how to install it.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		{ apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; } \
		|| echo "chromium not installed: browser tests will skip (as root: apt-get install -y chromium)"; }

# On a machine with a CUDA GPU: CUDA tests and the efficiency figures into gpu_check_out/ (docs/BENCHMARKS.md).
gpu-check:
	bash benchmarks/gpu_check.sh $(GPU_CHECK_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

format: $(STAMP)
	$(PY) -m ruff format src tests benchmarks
	$(PY) -m ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
