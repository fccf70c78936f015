# The README's two commands: `make demo` and `make test`. Both build .venv from nothing when it is missing.
PYTHON ?= python3
TORCH_INDEX ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ups-installed

.PHONY: demo test test-slow lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned to 2.13.0, then everything else under that constraint, so nothing swaps torch.
	# Which build pip takes is pip's choice for your platform and index: from PyPI on Linux x86-64 that is the
	# CUDA build (several GB). On a CPU-only machine ask for the CPU wheel:
	#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
	# (where pip is configured with a local index holding the CPU build, the plain command takes it).
	$(BIN)/pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	echo "torch==2.13.0" > $(VENV)/constraints.txt
	$(BIN)/pip install --quiet -c $(VENV)/constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ups-exp run specs/burgers.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not gpu"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow"

lint: $(STAMP)
	$(BIN)/ruff check ups tests benchmarks
	$(BIN)/ruff format --check ups tests benchmarks

clean:
	rm -rf $(VENV)
