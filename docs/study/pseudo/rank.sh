#!/usr/bin/env bash
# Issue 31, item 3, second arm: the first filter (docs/study/pseudo/run.sh: pixel confidence 0.95
# on 90 % of an image) kept pseudo-labelled pairs in 1 of 6 cells, so that study said little.
# Design, fixed before any result of this arm: ST++'s selection (Yang et al., CVPR 2022, the
# UniMatch authors' self-training) keeps the most reliable half of the unlabelled images, ranked
# rather than thresholded. Here reliability is the teacher's share of confident pixels (0.95; ST++
# ranks by agreement between checkpoints, which synth-eval's single TRTR run does not have), an
# image needs foreground >= 0.5 %, and the cap is half the pool of 200: 100 images. Arm `rank`;
# everything else as run.sh (sets kvasir_seg and busi, N = 16, --unlabelled-n 200, seeds 1-3, the
# same settings), paired with run.sh's `labelled` cells. The TRTR run (the teacher) is the same
# run in both studies, so its test Dice must equal the earlier cells' (a check that the split and
# settings are the same). Nothing is tuned: this is the one filter tried.
# Usage: bash docs/study/pseudo/rank.sh STUDY_DIR GENSEG_BINARY SET...   (STUDY_DIR: run.sh's)
set -euo pipefail
study=$1 genseg=$2
shift 2
filter=$study/rank-filter.json
echo '{"pseudo": {"confidence": 0.95, "confident_share": 0.0, "min_foreground": 0.005, "cap": 100}}' > "$filter"
for set in "$@"; do
  for seed in 1 2 3; do
    out=$study/$set-rank-s$seed
    [ -f "$out/synth_eval.json" ] && continue
    "$genseg" --threads 1 experimental synth-eval "/work/shared/data/$set" --config "$filter" --n 16 --unlabelled-n 200 \
      --size 64 --width 16 --depth 4 --batch-size 4 --ngf 16 --ndf 16 --pretrain-iters 600 --iters 1000 \
      --val-every 50 --patience 4 --min-iters 300 --diff-augment --joint-augment --feature-matching 10 \
      --seed "$seed" --out "$out" > "$out.log" 2>&1 || echo "failed: $out"
    rm -rf "$out"/*/checkpoint
  done
done
