#!/usr/bin/env bash
# Regenerate the committed tables under experiments/results/ from scratch (CPU-sized budget, offline model).
#   make reproduce          (or: STEPS=20 SEEDS=0,1,2 bash experiments/reproduce.sh)
# Budget: STEPS optimizer steps of batch 8 (<=192 tokens) per run on the bundled synthetic set; that is a few
# hundred examples seen once -- enough to show whether the new rows learn, not to reach convergence.
set -euo pipefail
cd "$(dirname "$0")/.."
Q=.venv/bin/qwenft
STEPS=${STEPS:-20}
SEEDS=${SEEDS:-0,1,2}
INITS=${INITS:-mean_subword,default,random}
ROWS=${ROWS:-frozen,all}
OUT=${OUT:-multirun/reproduce}
common=(trainer.max_steps=$STEPS trainer.val_check_interval=$((STEPS / 2)) callbacks.progress_bar=false
        data.max_val_examples=${VAL:-32})

# OOV ablation, key arms x seeds: no extension; extension x {mean_subword, default, random} with new_rows;
# mean_subword with the naive frozen rows and with the whole matrix trainable.
$Q train -m experiment=oov_ablation tokenizer=none seed=$SEEDS "${common[@]}" hydra.sweep.dir=$OUT/oov_none
$Q train -m experiment=oov_ablation tokenizer.init=$INITS tokenizer.trainable_rows=new_rows \
  seed=$SEEDS "${common[@]}" hydra.sweep.dir=$OUT/oov_init
$Q train -m experiment=oov_ablation tokenizer.init=mean_subword tokenizer.trainable_rows=$ROWS \
  seed=$SEEDS "${common[@]}" hydra.sweep.dir=$OUT/oov_rows
$Q report "runs=[$OUT/oov_none,$OUT/oov_init,$OUT/oov_rows]" \
  "group_by=[tokenizer,tokenizer.init,tokenizer.trainable_rows]" \
  "metrics=[val/new_word_ppl,val/bits_per_byte,val/loss]" out=experiments/results/oov_ablation

# Base vs Instruct formatting on the same (offline, Instruct-Coder) weights: plain template vs chat template.
$Q train -m experiment=base_vs_instruct model.instruct=false,true seed=$SEEDS "${common[@]}" \
  hydra.sweep.dir=$OUT/base_vs_instruct
$Q report "runs=[$OUT/base_vs_instruct]" "group_by=[model.instruct]" \
  "metrics=[val/new_word_ppl,val/bits_per_byte,val/loss]" out=experiments/results/base_vs_instruct
