#!/usr/bin/env bash
# The plain-install path a user takes: build the wheel, install it (not editable) into a fresh venv, and run
# `qwenft train` + `qwenft answer` from a directory that is not the checkout. Catches configs or resources
# missing from the package, which an editable install hides.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
.venv/bin/python -m pip wheel -q --no-deps -w "$WORK/dist" .
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --upgrade pip
"$WORK/venv/bin/python" -m pip install -q "$(ls "$WORK"/dist/qwenft-*.whl)"
cd "$WORK"
export WANDB_MODE=offline HF_HUB_OFFLINE=1
Q="$WORK/venv/bin/qwenft"
"$Q" --help > /dev/null
"$Q" train model=tiny logger=csv trainer.max_steps=2 trainer.val_check_interval=2 data.max_length=96 \
  data.batch_size=2 data.max_val_examples=2 trainer.precision=32-true callbacks.rich_progress_bar=null \
  callbacks.clinical_eval.n_prompts=1 callbacks.clinical_eval.generation.max_new_tokens=2 \
  'tokenizer.words_file=${demo:words.txt}' hydra.run.dir="$WORK/run" > "$WORK/train.log" 2>&1 \
  || { tail -40 "$WORK/train.log"; exit 1; }
test -f "$WORK/run/merged/model.safetensors" && test -f "$WORK/run/merged/README.md"
printf 'A 45-year-old woman has fatigue.\n1. What is the diagnosis?\n2. What is the treatment?\n' \
  | "$Q" answer model=tiny output=json generation.max_new_tokens=2 retrieval.cache_dir="$WORK/bm25" \
  | "$WORK/venv/bin/python" -c 'import json, sys; r = json.load(sys.stdin); assert len(r["answers"]) == 2, r'
# the metadata a PyPI user sees, the typing marker, and the sweep extra named when it is missing (not installed here)
"$WORK/venv/bin/python" -c 'import importlib.metadata as md, importlib.resources as r
m = md.metadata("qwenft")
assert m["License-Expression"] == "MIT" and m["Author"] == "qwenft developers", dict(m)
assert "sweep" in m.get_all("Provides-Extra") and r.files("qwenft").joinpath("py.typed").is_file()'
set +e
"$Q" train -m hparams_search=newword_optuna 2> "$WORK/sweep.err"; rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q "pip install 'qwenft\[sweep\]'" "$WORK/sweep.err" \
  || { echo "wheel-check: hparams_search without the sweep extra: exit $rc"; cat "$WORK/sweep.err"; exit 1; }
test ! -e "$WORK/cli.log" || { echo "wheel-check: a verb wrote cli.log into the working directory"; exit 1; }
case "$("$WORK/venv/bin/python" -c 'import qwenft; print(qwenft.__file__)')" in
  "$ROOT"/*) echo "wheel-check: imported the checkout, not the wheel"; exit 1 ;;
esac
echo "wheel-check: ok (train + answer from $WORK with the installed wheel)"
