#!/usr/bin/env bash
# Issue 12 follow-up, docs/RESULTS.md section 18: does copy-paste augmentation generalise to the
# two lesion sets it was not measured on? augment with and without --copy-paste 0.5, N = 16,
# seeds 1-8, busi and isic2018_sample (no out-of-domain set). Fixed before any of its results.
# Binary at commit 5cee477. Usage: copy-paste-more.sh busi|isic2018_sample (resumable).
G=/work/studies/genseg-cp; D=/work/shared/data
COMMON="--n 16 --seeds 8 --size 64 --width 16 --depth 4 --batch-size 4 --iters 1000 --val-every 50 \
  --patience 4 --min-iters 300 --augment geometric --methods augment"
$G --threads 1 study $D/$1 $COMMON --out CPMORE/$1/augment
$G --threads 1 study $D/$1 $COMMON --copy-paste 0.5 --out CPMORE/$1/copy-paste
