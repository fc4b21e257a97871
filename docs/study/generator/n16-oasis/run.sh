#!/usr/bin/env bash
# Issue 12: OASIS's segmenting discriminator against the PatchGAN generators (binary at commit 7ce7b6c).
# Arms fixed before any result: old600 (defaults), new600 (data-efficient, the verdict's generator),
# oasis (DiffAugment + joint augmentation + --discriminator segmenting; feature matching needs the
# PatchGAN), oasisl1 (the same, L1 weight 10). oasisl0 (no L1, OASIS as published) was queued before
# any oasisl1 result; oasisinpaint (it judging section 15's inpainting) was chosen after the others' results.
# Usage: run.sh ARM SEED... ; each cell skipped when its report exists (resumable).
G=/work/studies/genseg-oasis; D=/work/shared/data
COMMON="--n 16 --size 64 --width 16 --depth 4 --batch-size 4 --ngf 16 --ndf 16 --pretrain-iters 600 --iters 1000 \
  --val-every 50 --patience 4 --min-iters 300"
arm=$1; shift
case $arm in
  old600) FLAGS="";;
  new600) FLAGS="--diff-augment --joint-augment --feature-matching 10";;
  oasis) FLAGS="--diff-augment --joint-augment --discriminator segmenting";;
  oasisl1) FLAGS="--diff-augment --joint-augment --discriminator segmenting --lambda-l1 10";;
  oasisl0) FLAGS="--diff-augment --joint-augment --discriminator segmenting --lambda-l1 0";;
  oasisinpaint) FLAGS="--diff-augment --joint-augment --discriminator segmenting --inpaint";;
  *) echo "unknown arm $arm" >&2; exit 2;;
esac
for seed in "$@"; do for data in fuseg kvasir_seg; do
  out=GEN/n16/$data/$arm-s$seed
  [ -f $out/synth_eval.json ] && continue
  start=$(date +%s)
  $G --threads 1 synth-eval $D/$data $COMMON --seed $seed $FLAGS --out $out > $out.log 2>&1 || echo "FAILED $out"
  echo "$out $(( $(date +%s) - start )) s"
done; done
