#!/bin/bash
# Issue 31: genseg with unlabelled images (semi's unlabelled loss beside its synthetic pairs)
# against semi on the semi study's cells. Design fixed before any result: the semi study's sets
# in order of interest (kvasir_seg -> cvc_clinicdb, where semi helped; then busi), its
# --unlabelled-n, N = 8, 16, seeds 1-5, `study`'s defaults (the semi study's); genseg as in the
# verdict study (the data-efficient generator, ngf/ndf 16, 600 pretraining steps, augmented real
# pairs, exact hypergradient every iteration). Arms augment (its rows must equal the semi study's
# augment rows: the same split and stream) and genseg. genseg - semi is paired by
# `genseg experimental compare` with docs/study/semi/*/results.csv.
# Usage: run.sh STUDY_DIR GENSEG_BINARY
cd "$1" || exit 1
D=/work/shared/data
G=$2
common="--n 8,16 --seeds 5 --methods augment,genseg --jobs 2 --ngf 16 --ndf 16 --pretrain-iters 600 \
  --diff-augment --joint-augment --feature-matching 10 --augment-real"
$G experimental study $D/kvasir_seg --ood $D/cvc_clinicdb --unlabelled-n 200 $common --out kvasir > kvasir.log 2>&1
rm -rf kvasir/runs/*/checkpoint kvasir/generators/*/checkpoint
$G experimental study $D/busi --unlabelled-n 192 $common --out busi > busi.log 2>&1
rm -rf busi/runs/*/checkpoint busi/generators/*/checkpoint
echo done > done.txt
