#!/usr/bin/env bash
# GPU checks on a lent device machine (64 MiB of working tree a call, so one part a call):
#   fit      `genseg fit` on CUDA for the fit study's kvasir_seg cells (docs/study/fit/: N = 16,
#            seeds 1-3, the pairs `train --n 16 --seed S` picks, tested on the other 984 cases),
#            the three fits at once on the one GPU, --budget 3m each; scored like the study's
#            arms, so each seed pairs with its CPU refit and nnunet5 rows (issue 32: does a GPU
#            plan, at a higher resolution, close the gap to nnU-Net on kvasir_seg?).
#   verdict  the GenSeg verdict's recipe (docs/RESULTS.md, "Does GenSeg beat classic
#            augmentation?") at 256 px instead of 64 (depth 5), fuseg -> medetec_foot_ulcer,
#            N = 16, seeds 1-3, augment and genseg, three cells at a time.
# Both designs were fixed before their results.
#
# Here:  bash scripts/device-check.sh prepare PART   (builds, strips the binary into .device/,
#        copies the part's data there; .device/ is git-ignored and carried)
# There: bash scripts/device-check.sh PART           (the machine's own CUDA PyTorch 2.11 libtorch)
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=../shared/data
if [ "${1:-}" = prepare ]; then
  set -e
  part=${2:?prepare fit or verdict}
  export LIBTORCH_USE_PYTORCH=1 PATH="$PWD/.venv/bin:$PATH"
  cargo build -q
  rm -rf .device && mkdir -p .device/data
  strip -o .device/genseg target/debug/genseg
  case $part in
    fit)
      cp -r $DATA/kvasir_seg .device/data/
      # Each seed's labelled pairs: the split `train --n 16 --seed S` writes (its training and
      # validation ids), as the study's cells were made.
      for s in 1 2 3; do
        tmp=$(mktemp -d)
        .device/genseg --device cpu train $DATA/kvasir_seg --n 16 --seed $s --iters 1 --out "$tmp/run" >/dev/null 2>&1
        python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); print("\n".join(s["train"] + s["val"]))' \
          "$tmp/run/split.json" > .device/kvasir_seg-s$s.ids
        rm -rf "$tmp"
      done ;;
    verdict) cp -r $DATA/fuseg $DATA/medetec_foot_ulcer .device/data/ ;;
    *) echo "prepare fit or verdict" >&2; exit 2 ;;
  esac
  du -sh .device
  exit 0
fi
part=${1:?fit or verdict}
OUT=${OUT:-/tmp/genseg-device}
W=/tmp/genseg-work
# A machine still warm from the last call keeps /tmp: start clean (a fit refuses other settings).
rm -rf "$W" && mkdir -p "$OUT" "$W"
TORCH_DIR=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')
export LD_LIBRARY_PATH="$TORCH_DIR/lib:${LD_LIBRARY_PATH:-}"
G="$PWD/.device/genseg --device cuda"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/device.txt"
# Peak GPU memory over the part, sampled every second.
(while sleep 1; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done) > "$W/memory.log" &
sampler=$!
case $part in
  fit)
    cell() {
      local s=$1 c="$W/kvasir_seg-s$1"
      for side in labelled test; do mkdir -p "$c/$side/images" "$c/$side/masks"; done
      for f in .device/data/kvasir_seg/images/*; do
        local stem=$(basename "${f%.*}") to=test
        grep -qx "$stem" .device/kvasir_seg-s$s.ids && to=labelled
        ln -s "$PWD/$f" "$c/$to/images/"
        ln -s "$PWD/.device/data/kvasir_seg/masks/$stem.png" "$c/$to/masks/"
      done
      # Each stage bounded and logged straight into $OUT, so a call cut short still tells where.
      local log="$OUT/s$s.log" start=$(date +%s)
      echo "$(date +%T) fit" > "$log"
      timeout 250 $G fit "$c/labelled" --budget 3m --seed "$s" --no-onnx --out "$c/fit" >> "$log" 2>&1
      local rc=$?
      echo "$(date +%T) fit exit $rc after $(( $(date +%s) - start )) s; predict" >> "$log"
      timeout 90 $G predict --run "$c/fit" "$c/test/images" --out "$c/pred" >> "$log" 2>&1
      rc=$?
      echo "$(date +%T) predict exit $rc; evaluate" >> "$log"
      timeout 60 $G evaluate "$c/pred" "$c/test" --out "$c/eval" >> "$log" 2>&1
      rc=$?
      echo "$(date +%T) evaluate exit $rc" >> "$log"
      mkdir -p "$W/keep/s$s"
      cp "$c/fit/plan.json" "$c/fit/clock.json" "$c/fit/report.html" "$c/eval/summary.json" "$c/eval/cases.csv" \
        "$W/keep/s$s/" 2>/dev/null
    }
    cells=()
    for s in 1 2 3; do cell $s & cells+=($!); done
    wait "${cells[@]}" ;;  # not the memory sampler, which never ends
  verdict)
    D=.device/data
    args=(experimental study $D/fuseg --ood $D/medetec_foot_ulcer --n 16 --seeds 3 --size 256 --width 16 --depth 5
      --batch-size 4 --iters 1000 --val-every 50 --patience 4 --min-iters 300 --ngf 16 --ndf 16 --pretrain-iters 600
      --diff-augment --joint-augment --feature-matching 10 --augment geometric --augment-real --methods augment,genseg
      --out "$W/verdict256")
    timeout 300 $G "${args[@]}" --jobs 3 > "$W/study.log" 2>&1
    echo "study exit code $?" | tee -a "$W/study.log"
    # The tables from the cells that finished, if the time limit cut the study short.
    [ -f "$W/verdict256/results.md" ] || $G "${args[@]}" --tables-only >> "$W/study.log" 2>&1
    mkdir -p "$W/keep"
    cp "$W/study.log" "$W/keep/"
    (cd "$W/verdict256" && find . -name '*.json' -o -name '*.csv' -o -name '*.md' -o -name '*.png' -o -name '*.jsonl' |
      grep -v -e checkpoint -e overlays | tar cf "$W/keep/verdict256.tar" -T -) ;;
esac
kill $sampler
sort -n "$W/memory.log" | tail -1 | sed 's/^/peak GPU memory MiB: /' | tee "$OUT/memory.txt"
tar czf "$OUT/$part.tgz" -C "$W/keep" .
ls -la "$OUT"
