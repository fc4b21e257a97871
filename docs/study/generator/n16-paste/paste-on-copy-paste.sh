#!/usr/bin/env bash
# Issue 12, docs/RESULTS.md section 18: do the pasting generator's pairs add anything on top of
# copy-paste augmentation? separate (--inpaint --paste) with real pairs augmented by the geometric
# preset and --copy-paste 0.5, against copy-paste.sh's augment --copy-paste 0.5 (same settings,
# seeds and splits). N = 16, seeds 1-8, both pairs. Fixed before any of its results.
# Binary at commit 5cee477. Usage: paste-on-copy-paste.sh fuseg|kvasir_seg (resumable).
G=/work/studies/genseg-cp; D=/work/shared/data
COMMON="--n 16 --seeds 8 --size 64 --width 16 --depth 4 --batch-size 4 --iters 1000 --val-every 50 \
  --patience 4 --min-iters 300 --ngf 16 --ndf 16 --pretrain-iters 600 --diff-augment --joint-augment \
  --feature-matching 10 --inpaint --paste --augment geometric --augment-real --copy-paste 0.5 --methods separate"
case $1 in
  fuseg) OOD=medetec_foot_ulcer;;
  kvasir_seg) OOD=cvc_clinicdb;;
  *) echo "unknown set $1" >&2; exit 2;;
esac
$G --threads 1 study $D/$1 --ood $D/$OOD $COMMON --out PASTECP/$1
