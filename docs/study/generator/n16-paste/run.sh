#!/usr/bin/env bash
# Issue 12: the pasting generator (--inpaint --paste) against section 17's generators
# (docs/RESULTS.md section 18).
# Arms fixed before any result: paste (the data-efficient recipe with --inpaint --paste; binary at
# commit 2fc3757, paste's first version); check (new600 rerun by that binary: seed 1 must
# reproduce section 17's new600 to every digit, so that section 17's old600 and new600 pair).
# paste2: the same flags, binary at commit 571073e (paste's second version, designed after the
# first's sample sheets had been seen).
# Usage: run.sh ARM SEED... ; each cell skipped when its report exists (resumable).
G=/work/studies/genseg-paste; D=/work/shared/data
COMMON="--n 16 --size 64 --width 16 --depth 4 --batch-size 4 --ngf 16 --ndf 16 --pretrain-iters 600 --iters 1000 \
  --val-every 50 --patience 4 --min-iters 300"
NEW="--diff-augment --joint-augment --feature-matching 10"
arm=$1; shift
case $arm in
  check) FLAGS="$NEW";;
  paste) FLAGS="$NEW --inpaint --paste";;
  paste2) FLAGS="$NEW --inpaint --paste"; G=/work/studies/genseg-paste2;;
  *) echo "unknown arm $arm" >&2; exit 2;;
esac
for seed in "$@"; do for data in fuseg kvasir_seg; do
  out=GEN/n16/$data/$arm-s$seed
  [ -f $out/synth_eval.json ] && continue
  mkdir -p $(dirname $out)
  start=$(date +%s)
  $G --threads 1 synth-eval $D/$data $COMMON --seed $seed $FLAGS --out $out > $out.log 2>&1 || echo "FAILED $out"
  echo "$out $(( $(date +%s) - start )) s"
done; done
