#!/usr/bin/env bash
# Issue 12 follow-up, docs/RESULTS.md section 18: the pasting generator's pairs on top of
# classically augmented real pairs (`separate`) against `augment`; N = 16, seeds 1-8 (5 first, extended to 8 before any result was read), both pairs.
# Fixed before the TSTR results, except the version: paste2 (binary at commit 571073e), tied
# with the first version on TSTR validation Dice and what --paste is on main.
# Usage: verdict.sh fuseg|kvasir_seg (resumable: the study skips finished runs).
G=/work/studies/genseg-paste2; D=/work/shared/data
COMMON="--n 16 --seeds 8 --size 64 --width 16 --depth 4 --batch-size 4 --iters 1000 --val-every 50 \
  --patience 4 --min-iters 300 --ngf 16 --ndf 16 --pretrain-iters 600 --diff-augment --joint-augment \
  --feature-matching 10 --inpaint --paste --augment geometric --augment-real --methods augment,separate"
case $1 in
  fuseg) OOD=medetec_foot_ulcer;;
  kvasir_seg) OOD=cvc_clinicdb;;
  *) echo "unknown set $1" >&2; exit 2;;
esac
$G --threads 1 study $D/$1 --ood $D/$OOD $COMMON --out PASTE/$1
