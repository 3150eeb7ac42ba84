#!/usr/bin/env bash
# qwenft on one GPU: wheels -> env -> fast tests -> tiny train (gpu, ddp) -> 0.5B-shape throughput.
# Run from the repo root with the wheels in .whl/ (pip download, see README of experiments/results/gpu_check);
# everything lands in $OUT (8 files at most). Every part is bounded so the whole ends within ~520 s.
set -u
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT" /tmp/runs
T0=$(date +%s)
BUDGET=${BUDGET:-520}
left() { local l=$((BUDGET - ($(date +%s) - T0))); [ "$l" -lt 5 ] && l=5; [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
ENVF=$OUT/env.txt

# 1. wheels into /tmp/site (protobuf only where the machine's is older than googleapis-common-protos needs)
{
  echo "== install"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 | tail -5
  if ! python3 -c "import google.protobuf as p, sys; v=tuple(int(x) for x in p.__version__.split('.')[:3]); print('device protobuf', p.__version__); sys.exit(v < (6, 33, 5))"; then
    echo "carrying protobuf 7.36.2"; python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/opt/*.whl 2>&1 | tail -3
  fi
  echo "install done after $(( $(date +%s) - T0 )) s"
} > "$ENVF" 2>&1
export PYTHONPATH=/tmp/site:$PWD WANDB_MODE=offline HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

# a. the machine
{
  echo "== nvidia-smi -L"; nvidia-smi -L
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  echo "== python"
  timeout 120 python3 - <<'EOF'
import importlib.metadata as md, platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda available", torch.cuda.is_available(),
      "| device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
      "| bf16 supported", torch.cuda.is_available() and torch.cuda.is_bf16_supported())
for p in ["transformers", "tokenizers", "huggingface_hub", "peft", "accelerate", "pytorch-lightning", "torchmetrics",
          "hydra-core", "omegaconf", "datasets", "wandb", "protobuf", "fsspec", "pydantic", "sentence-transformers"]:
    try:
        print(f"  {p} {md.version(p)}")
    except md.PackageNotFoundError:
        print(f"  {p} MISSING")
import qwenft.cli  # noqa: F401
from qwenft.config import compose
from qwenft.hardware import cpu_flags, cpu_precision
print("qwenft.hardware.cpu_precision() =", cpu_precision(), "| bf16 cpu flags:",
      sorted(cpu_flags() & {"amx_bf16", "avx512_bf16"}))
for t in ("cpu", "gpu", "ddp"):
    c = compose("train", ["model=tiny", f"trainer={t}"]).trainer
    print(f"trainer={t}: accelerator={c.accelerator} devices={c.devices} strategy={c.strategy} precision={c.precision}")
EOF
  echo "env done after $(( $(date +%s) - T0 )) s"
} >> "$ENVF" 2>&1

# b. fast tests, in the background while the tiny runs train
( timeout -k 10 "$(left 300)" python3 -m pytest -q -m "not slow" -n 8 -p no:cacheprovider --timeout 200 \
    --durations=10 > "$OUT/pytest.log" 2>&1; echo "pytest exit $? after $(( $(date +%s) - T0 )) s" >> "$OUT/pytest.log" ) &
PYTEST=$!

# c. tiny model on the GPU: trainer=gpu (W&B offline, the default logger) and trainer=ddp with one device
TINY=(model=tiny callbacks.rich_progress_bar=null 'tokenizer.words_file=${demo:words.txt}' data.max_length=192
      data.max_val_examples=16 trainer.max_steps=20 trainer.val_check_interval=10
      callbacks.new_word_metrics.max_texts=8 callbacks.clinical_eval.n_prompts=2)
train() {  # name seconds overrides...
  local name=$1 secs=$2; shift 2
  echo "== qwenft train $*" > "$OUT/$name.log"
  local t=$(date +%s)
  timeout -k 10 "$(left "$secs")" python3 .whl/peak.py train "$@" hydra.run.dir=/tmp/runs/$name >> "$OUT/$name.log" 2>&1
  echo "exit $? after $(( $(date +%s) - t )) s" >> "$OUT/$name.log"
}
train tiny_gpu 120 "${TINY[@]}" trainer=gpu
train tiny_ddp 120 "${TINY[@]}" trainer=ddp trainer.devices=1 logger=csv
wait "$PYTEST"

# d. throughput: random Qwen2.5-0.5B shape (24 layers, 896 wide, 14/2 heads, tied), the demo's settings, bf16-mixed
BIG=(model=tiny model.hidden_size=896 model.num_hidden_layers=24 model.num_attention_heads=14
     model.num_key_value_heads=2 model.intermediate_size=4864 model.tie_word_embeddings=true trainer=gpu logger=csv
     callbacks.rich_progress_bar=null 'tokenizer.words_file=${demo:words.txt}' tokenizer.init=mean_subword
     tokenizer.rows_lr=5e-3 peft.dropout=0.0 data.max_length=192 data.max_val_examples=32 optim.lr=3e-4
     scheduler.num_warmup_steps=3 callbacks.new_word_metrics.max_texts=16 callbacks.clinical_eval.n_prompts=2)
train big_b8 150 "${BIG[@]}" data.batch_size=8 trainer.max_steps=30 trainer.val_check_interval=15 \
    callbacks.last_checkpoint.every_n_train_steps=15
train big_b32 90 "${BIG[@]}" data.batch_size=32 trainer.max_steps=20 trainer.val_check_interval=20 \
    validate_before=false callbacks.clinical_eval.n_prompts=0 export.enabled=false

# summary: each run's final metrics + GPU peak
{
  for r in tiny_gpu tiny_ddp big_b8 big_b32; do
    echo "== $r"; grep -h -E "run dir:|GPU_PEAK|^exit |Error|error:" "$OUT/$r.log" | tail -6
    timeout 30 python3 - "$r" <<'EOF'
import json, sys
from pathlib import Path
run = Path("/tmp/runs") / sys.argv[1]
m = run / "metrics.json"
if not m.exists():
    print("  no metrics.json"); sys.exit()
d = json.loads(m.read_text())
keys = ["global_step", "train/loss", "val/loss", "val/new_word_nll", "val/new_word_ppl", "val/bits_per_byte",
        "train/avg_tokens_per_s", "data/train_pad_fraction_epoch"]
keys += [k for k in d if k.startswith("clinical") or "clinical" in k]
for k in dict.fromkeys(keys):
    if k in d:
        print(f"  {k} = {d[k]}")
h = run / "history.jsonl"
if h.exists():
    tps = [json.loads(l).get("train/tokens_per_s") for l in h.read_text().splitlines() if l.strip()]
    tps = [t for t in tps if t is not None]
    if tps:
        print(f"  per-step tokens/s: n={len(tps)} first={tps[0]:.0f} median={sorted(tps)[len(tps)//2]:.0f} last={tps[-1]:.0f}")
print("  files:", sorted(p.name for p in run.iterdir()))
EOF
  done
  echo "== pytest"; tail -3 "$OUT/pytest.log"
  echo "total $(( $(date +%s) - T0 )) s"
} > "$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"
