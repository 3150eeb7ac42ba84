# qwenft: `make demo` runs the offline demo, `make test` runs the tests; both set up .venv first. `make help` lists all.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXTRAS := dev,offline,dense,tracking,sweep,docs
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.qwenft-vllm-ok

.PHONY: help setup vllm-env offline-model demo test test-fast lint docs bench reproduce wheel-check clean

help:                  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

setup: $(STAMP) vllm-env  ## create .venv (Python >= 3.11, torch 2.13.0 CPU) and install qwenft with its extras, + .venv-vllm

vllm-env:              ## vLLM in its own .venv-vllm (generation.engine=vllm, qwenft serve); QWENFT_SKIP_VLLM=1 skips it
	@test -f $(VLLM_STAMP) || PYTHON=$(PY) bash qwenft/resources/install_vllm.sh $(VLLM_VENV)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

offline-model: setup   ## assemble + dequantise the offline GGUF into ~/.cache/qwenft (once)
	$(BIN)/qwenft import-gguf

demo: offline-model    ## train on the bundled synthetic clinical set with vocabulary extension, offline
	WANDB_MODE=offline $(BIN)/qwenft train experiment=demo

test: setup            ## every test, the slow ones (real weights) included
	$(BIN)/python -m pytest -q --durations=25

test-fast: setup       ## the tests without @pytest.mark.slow
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup            ## ruff
	$(BIN)/ruff check qwenft tests experiments

docs: $(STAMP)          ## the documentation site (mkdocs.yml, docs/) into site/, strictly: a broken link fails
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: offline-model   ## speed / memory ratios side by side (experiments/bench)
	$(BIN)/python -m experiments.bench.run

reproduce: offline-model  ## regenerate experiments/results/
	bash experiments/reproduce.sh

wheel-check: setup     ## build the wheel, install it in a fresh venv, train + answer from outside the checkout
	bash experiments/wheel_check.sh

clean:                 ## remove outputs, multirun, wandb
	rm -rf outputs multirun wandb .pytest_cache site
