#!/bin/bash
# Issue 31 verdict study, design fixed before any result (docs/RESULTS.md, "Do unlabelled images help?"):
# arms augment, semi; N = 8, 16; seeds 1-5; defaults otherwise (64 px, U-Net 16/4, 1000 iterations,
# early stopping); unlabelled pool U = min(200, half the cases outside N = 16), drawn by the seeded split.
cd /work/studies/semi
D=/work/shared/data
G=./genseg
common="--n 8,16 --seeds 5 --methods augment,semi --jobs 2"
$G study $D/kvasir_seg --ood $D/cvc_clinicdb --unlabelled-n 200 $common --out kvasir > kvasir.log 2>&1
$G study $D/fuseg --ood $D/medetec_foot_ulcer --unlabelled-n 192 $common --out fuseg > fuseg.log 2>&1
$G study $D/busi --unlabelled-n 192 $common --out busi > busi.log 2>&1
$G study $D/isic2018_sample --unlabelled-n 142 $common --out isic > isic.log 2>&1
echo done > done.txt
