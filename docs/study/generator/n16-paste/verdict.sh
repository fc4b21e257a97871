#!/usr/bin/env bash
# Issue 12 follow-up (fixed before the TSTR results): does the pasting generator's pairs on top
# of classically augmented real pairs (`separate`) beat `augment`? N = 16, seeds 1-8, both pairs.
# Binary at commit 2fc3757. Usage: run.sh fuseg|kvasir_seg (resumable: the study skips finished runs).
G=/work/studies/genseg-paste; D=/work/shared/data
COMMON="--n 16 --seeds 8 --size 64 --width 16 --depth 4 --batch-size 4 --iters 1000 --val-every 50 \
  --patience 4 --min-iters 300 --ngf 16 --ndf 16 --pretrain-iters 600 --diff-augment --joint-augment \
  --feature-matching 10 --inpaint --paste --augment geometric --augment-real --methods augment,separate"
case $1 in
  fuseg) OOD=medetec_foot_ulcer;;
  kvasir_seg) OOD=cvc_clinicdb;;
esac
$G --threads 1 study $D/$1 --ood $D/$OOD $COMMON --out PASTE/$1
