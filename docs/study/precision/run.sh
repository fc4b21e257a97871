#!/usr/bin/env bash
# Precision study: augment and genseg (fast setting) at N = 16, seeds 1-4, fp32 vs bf16.
# usage: run.sh PRECISION   (runs kvasir_seg then fuseg)
G=/work/studies/genseg-bf16; D=/work/shared/data
COMMON="--n 16 --seeds 4 --size 64 --width 16 --depth 4 --batch-size 4 --iters 1000 --val-every 50 \
  --patience 4 --min-iters 300 --ngf 16 --ndf 16 --pretrain-iters 600 --diff-augment --joint-augment \
  --feature-matching 10 --augment geometric --augment-real --gan-every 8 --arch-every 8 --synthetic-share 0.2 \
  --methods augment,genseg"
p=$1
$G --threads 1 study $D/kvasir_seg --ood $D/cvc_clinicdb $COMMON --precision $p --out kvasir_seg/$p
$G --threads 1 study $D/fuseg --ood $D/medetec_foot_ulcer $COMMON --precision $p --out fuseg/$p
