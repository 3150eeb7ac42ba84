#!/usr/bin/env bash
# The GPU throughput run (issue 29), on the device machine, from the repo root, with .whl/ carried
# (experiments/results/gpu_throughput/make_wheels.sh). Writes into $OUT: gpu_throughput.{json,md}, bench.log, env.txt.
# Bounded: the bench starts no arm after 300 s; the whole script ends within ~7 min even if an arm hangs.
set -u
OUT=${OUT:-/tmp/gpu_throughput_out}
mkdir -p "$OUT"
T0=$(date +%s)
{
  echo "== $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo '?') dirty=$(git status --porcelain 2>/dev/null | wc -l)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 | tail -3
  echo "install done after $(( $(date +%s) - T0 )) s"
} > "$OUT/env.txt" 2>&1
export PYTHONPATH=/tmp/site:$PWD WANDB_MODE=offline HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 \
       TOKENIZERS_PARALLELISM=false JAX_PLATFORMS=cpu
timeout 120 python3 - >> "$OUT/env.txt" 2>&1 <<'PY'
import importlib, importlib.metadata as md, platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
for p in ["transformers", "peft", "pytorch-lightning", "hydra-core", "datasets", "liger-kernel", "triton", "accelerate"]:
    try:
        print(f"  {p} {md.version(p)}")
    except md.PackageNotFoundError:
        print(f"  {p} MISSING")
for mod in ["qwenft.train.loop", "experiments.bench.baseline_recipe", "liger_kernel.transformers"]:
    try:
        importlib.import_module(mod)
        print("import ok:", mod)
    except Exception as err:
        print("IMPORT FAILED:", mod, type(err).__name__, err)
PY
cat "$OUT/env.txt"
timeout -k 10 420 python3 -m experiments.bench.gpu_throughput --out "$OUT" --budget-s 300 "$@" > "$OUT/bench.log" 2>&1
echo "bench exit $? after $(( $(date +%s) - T0 )) s" | tee -a "$OUT/bench.log"
grep -v -i "warn" "$OUT/bench.log" | grep -E "^\{|Error|error|Traceback" | cut -c1-400 | tail -30
cat "$OUT/gpu_throughput.md" 2>/dev/null
