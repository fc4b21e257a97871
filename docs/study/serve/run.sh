#!/usr/bin/env bash
# The annotation campaign of issue 33 (genseg serve's loop with a simulated annotator).
# Design, fixed before any result was seen:
# - sets kvasir_seg (polyps, RGB) and busi (breast ultrasound, grey), each: a seeded test split
#   of 80 images never in the pool, a pool of 200 images the strategy chooses from;
# - rounds: 4 images drawn from scratch (the same seeded 4 for every strategy), then retrain and
#   annotate up to 10, 16, 28 and 40 images; every retrain is serve's own: `genseg fit` with a
#   60 s budget, 3 folds, the augment candidate, one thread;
# - strategies random, uncertainty and diverse (uncertainty plus diversity); seeds 1, 2, 3;
#   compared as paired differences against random (same set, seed, split, first 4 images);
# - measured: test Dice after each round; the pixels the annotator changes to turn the model's
#   proposal into the true mask against the true mask's pixels (drawing from scratch).
# Usage: bash docs/study/serve/run.sh STUDY_DIR GENSEG_BINARY SET...   (one lane per set)
set -euo pipefail
study=$1 genseg=$2
shift 2
for set in "$@"; do
  for seed in 1 2 3; do
    for strategy in random uncertainty diverse; do
      out=$study/$set-$strategy-s$seed
      [ -f "$out/done" ] && continue
      "$genseg" --threads 1 experimental annotation-campaign "/work/shared/data/$set" --strategy "$strategy" \
        --rounds 4,10,16,28,40 --test-n 80 --pool-n 200 --budget 60s --folds 3 --seed "$seed" --out "$out" \
        > "$out.log" 2>&1 && touch "$out/done"
      # Keep the tables, drop the models (disk).
      rm -rf "$out"/project/models/*/fit/runs/*/*/checkpoint
    done
  done
done
