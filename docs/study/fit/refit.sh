#!/bin/bash
# The fit study's cells again with the fit that spends its budget (issue 32: later folds run what
# the rate measured on the first affords, instead of the plan's estimate, which had fits end at
# 52-85 % of the budget). Design fixed before its results: the cells of docs/study/fit/run.sh
# (same labelled pairs, test cases, seeds, --budget 10m, two cells at a time, one thread each);
# arm `refit` beside train, fit (the first fit) and nnunet, scored the same way. Tables:
#   python3 docs/study/fit/table.py STUDY_DIR > docs/study/fit/results.md
#   bash docs/study/fit/refit.sh STUDY_DIR      (resumable: finished cells are skipped)
set -u
STUDY=$(realpath "${1:-/work/studies/fit}")
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
D=${DATA:-$ROOT/../shared/data}
[ -x "$STUDY/genseg-refit" ] || cp "$ROOT/target/debug/genseg" "$STUDY/genseg-refit"
export STUDY D ROOT
cell() {
  set -u
  local set=$1 seed=$2 ood=${3:-}
  local c="$STUDY/$set-s$seed" G="$STUDY/genseg-refit --threads 1 --device cpu"
  [ -f "$c/done" ] || return 1
  [ -f "$c/refit.done" ] && return 0
  local start=$(date +%s)
  $G fit "$c/labelled" --budget 10m --seed "$seed" --out "$c/refit" --no-onnx > "$c/refit.log" 2>&1 || return 1
  echo "refit $(( $(date +%s) - start ))" >> "$c/seconds"
  $G predict --run "$c/refit" "$c/test/images" --out "$c/pred-refit" > /dev/null 2>&1
  $G evaluate "$c/pred-refit" "$c/test" --out "$c/eval-refit" > /dev/null 2>&1
  if [ -n "$ood" ]; then
    $G predict --run "$c/refit" "$D/$ood/images" --out "$c/ood-pred-refit" > /dev/null 2>&1
    $G evaluate "$c/ood-pred-refit" "$D/$ood" --out "$c/ood-eval-refit" > /dev/null 2>&1
  fi
  rm -rf "$c/pred-refit" "$c/ood-pred-refit" "$c"/refit/runs/*/fold*/checkpoint
  touch "$c/refit.done"
}
export -f cell
# The cells (set, seed, out-of-domain set), seed-major: docs/study/fit/cells.txt.
xargs -P 2 -L 1 bash -c 'cell $0 $1 $2' < "$ROOT/docs/study/fit/cells.txt"
python3 "$ROOT/docs/study/fit/table.py" "$STUDY" > "$STUDY/results.md"
