# The README's two commands: `make demo` and `make test`. Both build .venv from nothing when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ups-installed

.PHONY: demo test test-slow lint install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: this exact version is the CPU wheel on the machine's disk; anything else pulls CUDA.
	$(BIN)/pip install --quiet torch==2.13.0
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
