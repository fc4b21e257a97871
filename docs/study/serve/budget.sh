#!/usr/bin/env bash
# The annotation campaign at serve's default retrain budget (3 minutes), against the 60 s
# campaign of run.sh. Design, fixed before any result was seen (2026-12-05):
# - the question: do serve's default retrains (fit with 180 s instead of 60 s) lift test Dice
#   and bring the effort of correcting proposals below drawing from scratch (issue 33's aim:
#   half or less from 16 annotations on)?
# - everything as run.sh (sets kvasir_seg and busi, test split 80, pool 200, rounds 4,10,16,28,40,
#   3 folds, the augment candidate, one thread, seeds 1-3) but the budget, 180 s, and the
#   strategy, random only (serve's default; the 60 s campaign found no strategy above it);
# - compared per set and seed against run.sh's random cells (same split and first 4 images):
#   paired test Dice by round, and the effort ratio per round; one lane per set, both at once.
# Usage: bash docs/study/serve/budget.sh STUDY_DIR GENSEG_BINARY SET...   (one lane per set)
# Cells are named SET-budget180-sSEED so table.py reads them beside run.sh's.
set -euo pipefail
study=$1 genseg=$2
shift 2
for set in "$@"; do
  for seed in 1 2 3; do
    out=$study/$set-budget180-s$seed
    [ -f "$out/done" ] && continue
    "$genseg" --threads 1 experimental annotation-campaign "/work/shared/data/$set" --strategy random \
      --rounds 4,10,16,28,40 --test-n 80 --pool-n 200 --budget 180s --folds 3 --seed "$seed" --out "$out" \
      > "$out.log" 2>&1 && touch "$out/done"
    rm -rf "$out"/project/models/*/fit/runs/*/*/checkpoint
  done
done
