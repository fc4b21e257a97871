#!/usr/bin/env bash
# Reruns, under the early-stopping rule of commit a3ac2a1, the TSTR segmenters that had stopped at
# validation Dice 0 (section 18): generators and TRTR runs are reused as they are.
D=/work/shared/data
COMMON="--n 16 --size 64 --width 16 --depth 4 --batch-size 4 --ngf 16 --ndf 16 --pretrain-iters 600 --iters 1000 \
  --val-every 50 --patience 4 --min-iters 300"
NEW="--diff-augment --joint-augment --feature-matching 10"
cd /work/studies/oasis
for cell in fuseg/old600-s2 fuseg/old600-s3 fuseg/paste-s2 fuseg/paste-s8 fuseg/paste2-s2 fuseg/paste2-s8; do
  arm=$(basename $cell); arm=${arm%-s*}; seed=${cell##*-s}; data=$(dirname $cell)
  case $arm in
    old600) G=/work/studies/genseg-stop; FLAGS="";;
    paste) G=/work/studies/genseg-paste1-stop; FLAGS="$NEW --inpaint --paste";;
    paste2) G=/work/studies/genseg-stop; FLAGS="$NEW --inpaint --paste";;
  esac
  out=GEN/n16stop/$cell
  [ -f $out/synth_eval.json ] && [ -d $out/tstr-stopped0 ] && continue
  [ -d $out/tstr-stopped0 ] || { mv $out/tstr $out/tstr-stopped0; mv $out/synth_eval.json $out/synth_eval-stopped0.json; }
  start=$(date +%s)
  $G --threads 1 synth-eval $D/$data $COMMON --seed $seed $FLAGS --out $out > $out.log 2>&1 || echo "FAILED $out"
  echo "$out $(( $(date +%s) - start )) s"
done
