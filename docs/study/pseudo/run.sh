#!/usr/bin/env bash
# Issue 31, item 3: does a generator trained on labelled plus confidently pseudo-labelled pairs
# teach more than one trained on the labelled pairs alone?
# Design, fixed before any result: sets kvasir_seg and busi; N = 16 labelled pairs (12 train, 4
# validation); the unlabelled pool is 200 of the set's own cases outside N (--unlabelled-n 200),
# in both arms, so both arms have the same split and test cases; seeds 1-3; the settings of the
# earlier generator studies (docs/study/generator: 64 px, U-Net width 16 depth 4, the
# data-efficient generator with ngf/ndf 16 and 600 pretraining steps, early stopping). Arms: `labelled` (the generator learns from the 12 training pairs) and `pseudo`
# (plus the pool images the TRTR segmenter labels confidently: pixel confidence 0.95 on 90 % of
# the image, foreground >= 0.5 %, at most 400). Compared: TSTR test Dice (a segmenter trained on
# synthetic pairs only), paired by seed, with memorisation, diversity and held-out L1 beside it.
# Usage: bash docs/study/pseudo/run.sh STUDY_DIR GENSEG_BINARY SET...   (one lane per set)
set -euo pipefail
study=$1 genseg=$2
shift 2
for set in "$@"; do
  for seed in 1 2 3; do
    for arm in labelled pseudo; do
      out=$study/$set-$arm-s$seed
      [ -f "$out/synth_eval.json" ] && continue
      extra=()
      [ "$arm" = pseudo ] && extra=(--pseudo-labels)
      "$genseg" --threads 1 experimental synth-eval "/work/shared/data/$set" --n 16 --unlabelled-n 200 \
        --size 64 --width 16 --depth 4 --batch-size 4 --ngf 16 --ndf 16 --pretrain-iters 600 --iters 1000 \
        --val-every 50 --patience 4 --min-iters 300 --diff-augment --joint-augment --feature-matching 10 \
        --seed "$seed" "${extra[@]}" --out "$out" > "$out.log" 2>&1 || echo "failed: $out"
      rm -rf "$out"/*/checkpoint
    done
  done
done
