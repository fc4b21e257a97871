#!/bin/bash
# Issue 32 comparison, design fixed before any result (docs/RESULTS.md, "Does fit beat train?"):
# per (set, seed): `genseg train DATA --n 16 --seed S` with train's defaults picks the 16 labelled
# pairs (its split.json: 12 training + 4 validation) and the test cases (every other case);
# `genseg fit` gets the same 16 pairs (a folder of links) with --budget 10m --seed S; both predict
# the same test cases (and the out-of-domain set) and `genseg evaluate` scores them at the
# images' own sizes. Sets kvasir_seg (-> cvc_clinicdb), fuseg (-> medetec_foot_ulcer), busi,
# isic2018_sample; N = 16; seeds 1-3, seed-major; two cells at a time, one thread each (so fit's
# 10 minutes are 10 minutes of one core). nnU-Net v2 arm: scripts/nnunet_peer.sh on the train
# run's split, where time allows (see RESULTS). fit-best: the fit's fold runs with their
# best-validation checkpoints instead of their last models (issue 32 item 3).
# N = 40 (issue 32's second label count; design fixed before its results, RESULTS "Does fit beat
# train?"): the same script with N=40 and a study folder of its own; fit is then the fit of
# today's binary (the refit that spends its budget).
#   [N=40] bash docs/study/fit/run.sh STUDY_DIR      (resumable: finished cells are skipped)
set -u
N=${N:-16}
STUDY=$(realpath -m "${1:-/work/studies/fit}")
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
D=${DATA:-$ROOT/../shared/data}
mkdir -p "$STUDY"
[ -x "$STUDY/genseg" ] || cp "$ROOT/target/debug/genseg" "$STUDY/genseg"
export STUDY D ROOT N
cell() {
  set -u
  local set=$1 seed=$2 ood=${3:-}
  local c="$STUDY/$set-s$seed" G="$STUDY/genseg --threads 1 --device cpu"
  [ -f "$c/done" ] && return 0
  mkdir -p "$c"
  local start=$(date +%s)
  [ -f "$c/train/summary.json" ] || $G train "$D/$set" --n "$N" --seed "$seed" --out "$c/train" > "$c/train.log" 2>&1
  local trained=$(date +%s)
  python3 "$ROOT/docs/study/fit/folders.py" "$D/$set" "$c/train/split.json" "$c"
  $G fit "$c/labelled" --budget 10m --seed "$seed" --out "$c/fit" --no-onnx > "$c/fit.log" 2>&1 || return 1
  local fitted=$(date +%s)
  echo "train $((trained - start)) fit $((fitted - trained))" > "$c/seconds"
  # The same fold runs' best-validation checkpoints as an ensemble (fit keeps the last models).
  mkdir -p "$c/fit-best"
  python3 -c "import json,sys; e=json.load(open(sys.argv[1])); e['members']=['../fit/'+m for m in e['members']]; e['weights']='model_best.safetensors'; json.dump(e, open(sys.argv[2],'w'))" "$c/fit/ensemble.json" "$c/fit-best/ensemble.json"
  for arm in train fit fit-best; do
    $G predict --run "$c/$arm" "$c/test/images" --out "$c/pred-$arm" > /dev/null 2>&1
    $G evaluate "$c/pred-$arm" "$c/test" --out "$c/eval-$arm" > /dev/null 2>&1
    if [ -n "$ood" ]; then
      $G predict --run "$c/$arm" "$D/$ood/images" --out "$c/ood-pred-$arm" > /dev/null 2>&1
      $G evaluate "$c/ood-pred-$arm" "$D/$ood" --out "$c/ood-eval-$arm" > /dev/null 2>&1
    fi
  done
  rm -rf "$c"/pred-* "$c"/ood-pred-* "$c"/fit/runs/*/fold*/checkpoint "$c"/train/checkpoint
  touch "$c/done"
}
export -f cell
# The cells (set, seed, out-of-domain set), seed-major: docs/study/fit/cells.txt.
xargs -P 2 -L 1 bash -c 'cell $0 $1 $2' < "$ROOT/docs/study/fit/cells.txt"
python3 "$ROOT/docs/study/fit/table.py" "$STUDY" > "$STUDY/results.md"
