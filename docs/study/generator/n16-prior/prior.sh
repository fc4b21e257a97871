#!/usr/bin/env bash
# Issue 12: leave-one-dataset-out generator priors (docs/RESULTS.md section 19). For target T the
# prior is pretrained on every pair of the other three in-domain lesion sets (kvasir_seg, fuseg,
# busi, isic2018_sample minus T; T's out-of-domain test set is not among them), a folder of links
# made by make-data.sh; the data-efficient recipe, the networks of the N = 16 runs.
cd /work/studies/prior
t=$1; n=$(( $(ls data-$t/images | wc -l) - 50 ))
/work/studies/genseg-prior --threads 1 pretrain-generator data-$t --n $n --val-n 50 --size 64 --ngf 16 --ndf 16 \
  --batch-size 4 --iters 12000 --diff-augment --joint-augment --feature-matching 10 --seed 1 --out prior-$t
