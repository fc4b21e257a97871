#!/usr/bin/env bash
# Issue 12 follow-up, docs/RESULTS.md section 19: does the pasting generator's N = 16 gain over
# `augment` (section 18, verdict.sh) repeat at N = 8? `separate` with verdict.sh's flags at N = 8,
# seeds 1-8, fuseg then kvasir_seg, no out-of-domain sets; paired with run.sh's `augment` cells
# (same settings, seeds and splits). Fixed before any of its results. Binary at commit 7d11488.
G=/work/studies/genseg-prior; D=/work/shared/data
COMMON="--n 8 --seeds 8 --size 64 --width 16 --depth 4 --batch-size 4 --iters 1000 --val-every 50 \
  --patience 4 --min-iters 300 --ngf 16 --ndf 16 --pretrain-iters 600 --diff-augment --joint-augment \
  --feature-matching 10 --inpaint --paste --augment geometric --augment-real --methods separate"
cd /work/studies/oasis
for set in fuseg kvasir_seg; do
  $G --threads 1 study $D/$set $COMMON --out PASTEN8/$set > /dev/null 2>> PASTEN8.log
done
