#!/usr/bin/env bash
# Issue 12, docs/RESULTS.md section 18: the no-generator control. Copy-paste augmentation of the
# real pairs (--copy-paste 0.5: half the pairs of each batch receive another pair's lesions, pixels
# and labels) on top of the geometric preset, against verdict.sh's augment and separate (same
# settings, seeds and splits). Fixed before any of its results. Binary at commit 5cee477.
# check: augment without copy-paste, seed 1, must reproduce verdict.sh's augment seed 1.
# Usage: copy-paste.sh fuseg|kvasir_seg [check] (resumable).
G=/work/studies/genseg-cp; D=/work/shared/data
COMMON="--n 16 --size 64 --width 16 --depth 4 --batch-size 4 --iters 1000 --val-every 50 \
  --patience 4 --min-iters 300 --augment geometric --methods augment"
case $1 in
  fuseg) OOD=medetec_foot_ulcer;;
  kvasir_seg) OOD=cvc_clinicdb;;
  *) echo "unknown set $1" >&2; exit 2;;
esac
if [ "$2" = check ]; then
  $G --threads 1 study $D/$1 --ood $D/$OOD $COMMON --seeds 1 --out CP-CHECK/$1
else
  $G --threads 1 study $D/$1 --ood $D/$OOD $COMMON --seeds 8 --copy-paste 0.5 --out CP/$1
fi
