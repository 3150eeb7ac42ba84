#!/usr/bin/env bash
# Rerun after gpu_check.sh: (1) show that `import bm25s` initialises JAX on the GPU and takes ~75 % of its memory,
# (2) with JAX_PLATFORMS=cpu: the tiny trainer=ddp run that OOM'd, and the fast suite again (ddp run alongside).
set -u
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT" /tmp/runs
T0=$(date +%s)
BUDGET=${BUDGET:-330}
left() { local l=$((BUDGET - ($(date +%s) - T0))); [ "$l" -lt 5 ] && l=5; [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > "$OUT/jax_bm25s.txt" 2>&1
export PYTHONPATH=/tmp/site:$PWD WANDB_MODE=offline HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

PROBE='import torch; f0, t = torch.cuda.mem_get_info(); import bm25s, sys; f1, _ = torch.cuda.mem_get_info()
print(f"free GPU before import bm25s {f0/2**30:.1f} GiB, after {f1/2**30:.1f} GiB of {t/2**30:.1f};",
      "jax imported:", "jax" in sys.modules, "| bm25s.selection.JAX_IS_AVAILABLE:", bm25s.selection.JAX_IS_AVAILABLE)'
{
  echo "== default env"; timeout 60 python3 -c "$PROBE" 2>&1 | tail -3
  echo "== JAX_PLATFORMS=cpu"; JAX_PLATFORMS=cpu timeout 60 python3 -c "$PROBE" 2>&1 | tail -3
  echo "== two processes importing bm25s at once (default env)"
  timeout 60 python3 -c "import bm25s, time; time.sleep(20)" > /tmp/a.log 2>&1 & sleep 8
  timeout 60 python3 -c "import bm25s; print('second import ok')" 2>&1 | tail -2; wait
} >> "$OUT/jax_bm25s.txt" 2>&1
cat "$OUT/jax_bm25s.txt"

export JAX_PLATFORMS=cpu
( timeout -k 10 "$(left 280)" python3 -m pytest -q -m "not slow" -n 12 -p no:cacheprovider --timeout 270 \
    --durations=5 > "$OUT/pytest_jaxcpu.log" 2>&1; echo "pytest exit $? after $(( $(date +%s) - T0 )) s" >> "$OUT/pytest_jaxcpu.log" ) &
PYTEST=$!
TINY=(model=tiny callbacks.rich_progress_bar=null 'tokenizer.words_file=${demo:words.txt}' data.max_length=192
      data.max_val_examples=16 trainer.max_steps=20 trainer.val_check_interval=10
      callbacks.new_word_metrics.max_texts=8 callbacks.clinical_eval.n_prompts=2)
echo "== qwenft train ${TINY[*]} trainer=ddp trainer.devices=1 logger=csv" > "$OUT/tiny_ddp.log"
t=$(date +%s)
timeout -k 10 "$(left 120)" python3 .whl/peak.py train "${TINY[@]}" trainer=ddp trainer.devices=1 logger=csv \
    hydra.run.dir=/tmp/runs/tiny_ddp >> "$OUT/tiny_ddp.log" 2>&1
echo "exit $? after $(( $(date +%s) - t )) s" >> "$OUT/tiny_ddp.log"
python3 -c "
import json; d = json.load(open('/tmp/runs/tiny_ddp/metrics.json'))
print({k: d[k] for k in ['global_step', 'train/loss', 'val/loss', 'val/new_word_nll', 'train/avg_tokens_per_s'] if k in d})
print('world_size', json.load(open('/tmp/runs/tiny_ddp/run_info.json')).get('world_size'))" >> "$OUT/tiny_ddp.log" 2>&1
grep -E "run dir:|GPU_PEAK|^exit|^\{|world_size|Error" "$OUT/tiny_ddp.log"
wait "$PYTEST"
tail -25 "$OUT/pytest_jaxcpu.log"
echo "total $(( $(date +%s) - T0 )) s"
