#!/usr/bin/env bash
# Issue 12: the data-efficient generator fine-tuned from a leave-one-dataset-out prior
# (prior.sh) against section 18's old600 and new600 (docs/RESULTS.md section 19).
# Arms fixed before any result: prior (new600's flags, its 600 steps starting from prior-T);
# check (new600 rerun by this binary, seed 1: must reproduce section 18's to every digit so that
# the arms pair); n8new600 and n8prior (the same two generators at N = 8, fixed before any
# result, both run by this binary). Usage: run.sh ARM SEED... ; cells whose report exists are skipped (resumable).
G=/work/studies/genseg-prior; D=/work/shared/data; P=/work/studies/prior
COMMON="--size 64 --width 16 --depth 4 --batch-size 4 --ngf 16 --ndf 16 --pretrain-iters 600 --iters 1000 \
  --val-every 50 --patience 4 --min-iters 300"
NEW="--diff-augment --joint-augment --feature-matching 10"
arm=$1; shift
cd /work/studies/oasis
for seed in "$@"; do for data in fuseg kvasir_seg; do
  case $arm in
    check) FLAGS="--n 16 $NEW"; out=GEN/check/$data/new600-s$seed;;
    prior) FLAGS="--n 16 $NEW --generator-prior $P/prior-$data"; out=GEN/n16stop/$data/prior-s$seed;;
    n8new600) FLAGS="--n 8 $NEW"; out=GEN/n8prior/$data/new600-s$seed;;
    n8prior) FLAGS="--n 8 $NEW --generator-prior $P/prior-$data"; out=GEN/n8prior/$data/prior-s$seed;;
    *) echo "unknown arm $arm" >&2; exit 2;;
  esac
  [ -f $out/synth_eval.json ] && continue
  mkdir -p $(dirname $out)
  start=$(date +%s)
  $G --threads 1 synth-eval $D/$data $COMMON --seed $seed $FLAGS --out $out > $out.log 2>&1 || echo "FAILED $out"
  echo "$out $(( $(date +%s) - start )) s"
done; done
