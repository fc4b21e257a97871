#!/usr/bin/env bash
# Issue 12 follow-up, docs/RESULTS.md section 19: does section 18's copy-paste gain hold at N = 8
# and N = 32? augment with and without --copy-paste 0.5 (section 18's settings), seeds 1-8, the
# four lesion sets in this order, no out-of-domain sets. Fixed before any of its results.
# Binary at commit 7d11488. Usage: run.sh augment|copy-paste (one worker per arm; resumable).
G=/work/studies/genseg-prior; D=/work/shared/data
COMMON="--n 8,32 --seeds 8 --size 64 --width 16 --depth 4 --batch-size 4 --iters 1000 --val-every 50 \
  --patience 4 --min-iters 300 --augment geometric --methods augment"
cd /work/studies/oasis
for set in fuseg kvasir_seg busi isic2018_sample; do
  case $1 in
    augment) $G --threads 1 study $D/$set $COMMON --out CPN/$set/augment;;
    copy-paste) $G --threads 1 study $D/$set $COMMON --copy-paste 0.5 --out CPN/$set/copy-paste;;
    *) echo "unknown arm $1" >&2; exit 2;;
  esac > /dev/null 2>> CPN-$1.log
  echo "$set done $(date +%T)" >> CPN-$1.log
done
