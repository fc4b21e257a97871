#!/usr/bin/env bash
# genseg's fast setting with window blocks (commit 4f259f9), paired with the precision study's fp32 genseg arm.
G=/work/studies/genseg-blocks; D=/work/shared/data
COMMON="--n 16 --seeds 8 --size 64 --width 16 --depth 4 --batch-size 4 --iters 1000 --val-every 50 \
  --patience 4 --min-iters 300 --ngf 16 --ndf 16 --pretrain-iters 600 --diff-augment --joint-augment \
  --feature-matching 10 --augment geometric --augment-real --gan-every 8 --arch-every 8 --synthetic-share 0.2 \
  --methods genseg"
for data in kvasir_seg fuseg; do
  ood=$([ $data = kvasir_seg ] && echo cvc_clinicdb || echo medetec_foot_ulcer)
  $G --threads 1 study $D/$data --ood $D/$ood $COMMON --precision fp32 --out $data
done
