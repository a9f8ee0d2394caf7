# One command trains (`make train`), one tests (`make test`); both set up .venv/ first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=
SWEEP ?= outputs/multiruns

# Where a shared copy of the datasets sits beside the checkout (this workplace, CI), use it;
# otherwise the data lands in ./data, downloaded by torchvision.
ifneq ($(wildcard ../shared/data/MNIST/raw),)
export MNIST_LAB_DATA_DIR ?= $(abspath ../shared/data)
endif

# CPU=avx2 runs torch's, oneDNN's and MKL's AVX2 kernels on an AVX-512 CPU too (bf16 then emulated, as on
# an AVX2-only CPU): `make test CPU=avx2`, `make bench CPU=avx2`, `make bench-keras CPU=avx2`
ifeq ($(CPU),avx2)
export ATEN_CPU_CAPABILITY := avx2
export ONEDNN_MAX_CPU_ISA := AVX2
export MKL_ENABLE_INSTRUCTIONS := AVX2
else ifneq ($(CPU),)
$(error CPU=$(CPU): the one CPU kind to emulate is CPU=avx2; leave CPU unset for this CPU's own kernels)
endif

.PHONY: install cpu data train test lint format bench bench-keras keras-venv gpu-wheels report tensorboard screenshots clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# what a CPU run here gets: the instruction set, threads, the precision auto picks and why
cpu: install
	$(BIN)/python -m mnist_lab.hardware

data: install
	$(BIN)/python -m mnist_lab.datasets

train: data
	$(BIN)/python -m mnist_lab $(ARGS)

# TESTS=path/to/test_file.py runs those tests only
test: data
	$(BIN)/pytest $(TESTS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: data
	$(BIN)/python benchmarks/bench.py --write BENCHMARKS.md
	$(BIN)/python benchmarks/step_overhead.py --write BENCHMARKS.md
	$(BIN)/python benchmarks/cnn_step.py --write BENCHMARKS.md

# The seed's Keras code runs in its own environment: TensorFlow is never a dependency of mnist_lab.
KERAS_VENV := .venv-keras
keras-venv: $(KERAS_VENV)/.installed

$(KERAS_VENV)/.installed:
	$(PYTHON) -m venv $(KERAS_VENV)
	$(KERAS_VENV)/bin/pip install --quiet tensorflow-cpu==2.21.0
	touch $@

bench-keras: data keras-venv
	$(BIN)/python benchmarks/vs_keras.py --keras-python $(KERAS_VENV)/bin/python --write BENCHMARKS.md

# What a bare GPU image lacks (Hydra and its parser), as pure-Python wheels in .whl/ for scripts/gpu_check.sh
gpu-wheels: install
	$(BIN)/pip wheel --quiet --no-deps -w .whl hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3

report: install
	$(BIN)/python -m mnist_lab.report runs=$(SWEEP)

tensorboard: install
	$(BIN)/tensorboard --logdir $${MNIST_LAB_OUTPUT_DIR:-outputs} --host 127.0.0.1

# PNGs of TensorBoard's views (outputs/screenshots/) and the README's pictures (docs/) from a fresh
# two-run sweep; needs Chromium (Debian: apt-get install chromium)
screenshots: data
	$(BIN)/python scripts/screenshots.py --pictures docs

clean:
	rm -rf $(VENV) $(KERAS_VENV) build *.egg-info .pytest_cache .ruff_cache
