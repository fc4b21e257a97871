#!/usr/bin/env bash
# augment only, seeds 9-16 added (seeds 1-8 are finished and skipped); usage: run16.sh PRECISION
G=/work/studies/genseg-bf16; D=/work/shared/data
COMMON="--n 16 --size 64 --width 16 --depth 4 --batch-size 4 --iters 1000 --val-every 50 \
  --patience 4 --min-iters 300 --ngf 16 --ndf 16 --pretrain-iters 600 --diff-augment --joint-augment \
  --feature-matching 10 --augment geometric --augment-real --gan-every 8 --arch-every 8 --synthetic-share 0.2"
p=$1
$G --threads 1 study $D/kvasir_seg --ood $D/cvc_clinicdb $COMMON --seeds 16 --methods augment --precision $p --out kvasir_seg/$p
$G --threads 1 study $D/fuseg --ood $D/medetec_foot_ulcer $COMMON --seeds 16 --methods augment --precision $p --out fuseg/$p
# tables of both arms over what has finished
$G study $D/kvasir_seg --ood $D/cvc_clinicdb $COMMON --seeds 16 --methods augment,genseg --precision $p --out kvasir_seg/$p --tables-only
$G study $D/fuseg --ood $D/medetec_foot_ulcer $COMMON --seeds 16 --methods augment,genseg --precision $p --out fuseg/$p --tables-only
