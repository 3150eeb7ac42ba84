#!/usr/bin/env bash
# Regenerate the committed tables under experiments/results/ from scratch (CPU-sized budget, offline model).
#   make reproduce          (or: STEPS=16 SEEDS=0,1,2 bash experiments/reproduce.sh)
# Budget: STEPS optimizer steps of batch 8 per run (<=192 tokens each) on the bundled synthetic set, validation at
# STEPS/2 and STEPS on VAL examples; a few hundred examples seen once -- enough to show whether the new rows
# learn, not to reach convergence. Key arms run SEEDS (>= 3); the other ablation arms run seed 0 only
# (ONE_SEED) to fit a CPU session -- set ONE_SEED=$SEEDS for the full grid.
set -euo pipefail
cd "$(dirname "$0")/.."
Q=${Q:-.venv/bin/qwenft}
STEPS=${STEPS:-16}
SEEDS=${SEEDS:-0,1,2}
ONE_SEED=${ONE_SEED:-0}
OUT=${OUT:-multirun/reproduce}
common=(trainer.max_steps=$STEPS trainer.val_check_interval=$((STEPS / 2)) callbacks.rich_progress_bar=null
        data.max_val_examples=${VAL:-32})

# OOV ablation. Key arms x SEEDS: no extension vs extension (mean_subword init, new rows trainable).
$Q train -m experiment=oov_ablation tokenizer=none seed=$SEEDS "${common[@]}" hydra.sweep.dir=$OUT/oov_none
$Q train -m experiment=oov_ablation tokenizer.init=mean_subword tokenizer.trainable_rows=new_rows \
  seed=$SEEDS "${common[@]}" hydra.sweep.dir=$OUT/oov_key
# Other arms: init {default, random} with new rows; mean_subword with the naive frozen rows / whole matrix.
$Q train -m experiment=oov_ablation tokenizer.init=default,random tokenizer.trainable_rows=new_rows \
  seed=$ONE_SEED "${common[@]}" hydra.sweep.dir=$OUT/oov_init
$Q train -m experiment=oov_ablation tokenizer.init=mean_subword tokenizer.trainable_rows=frozen,all \
  seed=$ONE_SEED "${common[@]}" hydra.sweep.dir=$OUT/oov_rows
$Q report "runs=[$OUT/oov_none,$OUT/oov_key,$OUT/oov_init,$OUT/oov_rows]" \
  "group_by=[tokenizer,tokenizer.init,tokenizer.trainable_rows]" \
  "metrics=[val/new_word_nll,val/new_word_ppl,val/bits_per_byte,val/loss]" out=experiments/results/oov_ablation

# Base vs Instruct formatting on the same (offline, Instruct-Coder) weights: plain template vs chat template.
$Q train -m experiment=base_vs_instruct model.instruct=false,true seed=$SEEDS "${common[@]}" \
  hydra.sweep.dir=$OUT/base_vs_instruct
$Q report "runs=[$OUT/base_vs_instruct]" "group_by=[model.instruct]" \
  "metrics=[val/new_word_nll,val/new_word_ppl,val/bits_per_byte,val/loss]" out=experiments/results/base_vs_instruct
# ... and on the tiny random model (both formats, same seeds): the pipeline, not the language, is compared.
$Q train -m experiment=base_vs_instruct model=tiny model.instruct=false,true seed=$SEEDS "${common[@]}" \
  hydra.sweep.dir=$OUT/base_vs_instruct_tiny
$Q report "runs=[$OUT/base_vs_instruct_tiny]" "group_by=[model.instruct]" \
  "metrics=[val/new_word_nll,val/new_word_ppl,val/bits_per_byte,val/loss]" out=experiments/results/base_vs_instruct_tiny

# Clinical strategies (inference): all six at both retrieval budgets on the synthetic test split.
$Q evaluate model=offline n_prompts=${N_PROMPTS:-6} k=2 generation.max_new_tokens=${NEW_TOKENS:-32} \
  out=experiments/results/strategy_comparison
