#!/usr/bin/env bash
# GPU check on a lent device machine, in one call:
#   1. step benchmarks of genseg vs the PyTorch reference on the same GPU (2-D U-Net and GAN, in
#      float32 and in bf16 autocast), and a genseg iteration against a plain one (issue 14);
#   2. the 3-D hippocampus study (N = 4, 8, 16 volumes; 3 seeds; plain, augment, separate,
#      genseg) on CUDA, packed as study3d.tgz (run folders without weights).
#
# Here:  bash scripts/device-check.sh prepare   (builds, strips the binary into .device/ and copies
#        ../shared/data/msd_hippocampus there; .device/ is git-ignored and carried)
# There: bash scripts/device-check.sh           (uses the machine's own CUDA PyTorch 2.11 libtorch)
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = prepare ]; then
  set -e
  export LIBTORCH_USE_PYTORCH=1 PATH="$PWD/.venv/bin:$PATH"
  cargo build -q
  mkdir -p .device
  strip -o .device/genseg target/debug/genseg
  rm -rf .device/msd_hippocampus
  cp -r ../shared/data/msd_hippocampus .device/
  du -sh .device
  exit 0
fi
OUT=${OUT:-/tmp/genseg-device}
STUDY_SECONDS=${STUDY_SECONDS:-420}
mkdir -p "$OUT"
TORCH_DIR=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')
export LD_LIBRARY_PATH="$TORCH_DIR/lib:${LD_LIBRARY_PATH:-}"
BIN=.device/genseg
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))' | tee "$OUT/device.txt"
# A study cut short earlier continues from .device/study3d (finished runs are kept).
if [ -d .device/study3d ]; then cp -r .device/study3d "$OUT/"; fi
# Each line: genseg's flags, then reference.py's extra flags (--amp = genseg's --precision bf16).
[ -n "${SKIP_BENCH:-}" ] || while IFS='|' read -r args amp; do
  echo "genseg  $(timeout 120 $BIN --device cuda bench $args --steps 20)" | tee -a "$OUT/bench.log"
  echo "pytorch $(timeout 120 python3 bench/reference.py ${args% --precision*} $amp --steps 20 --device cuda)" | tee -a "$OUT/bench.log"
done <<'LINES'
unet --width 64 --depth 5 --size 256 --batch 8|
unet --width 64 --depth 5 --size 256 --batch 8 --precision bf16|--amp
gan --width 64 --size 256 --batch 4|
gan --width 64 --size 256 --batch 4 --precision bf16|--amp
gan --width 64 --size 256 --batch 4 --separate-ops|
LINES
[ -n "${SKIP_BENCH:-}" ] || timeout 180 $BIN --device cuda bench schedule --width 16 --depth 4 --size 64 --batch 4 \
  --steps 64 --every 8 --synthetic-share 0.2 --rounds 3 | tee -a "$OUT/bench.log"
# Seeds outermost: a study cut short by the time limit still holds whole data-efficiency curves.
timeout "$STUDY_SECONDS" $BIN --device cuda experimental study .device/msd_hippocampus --n 4,8,16 --seeds 3 \
  --methods plain,augment,separate,genseg --val-n 4 --width 16 --depth 4 --batch-size 2 \
  --iters 300 --val-every 25 --ngf 16 --ndf 16 --pretrain-iters 300 --out "$OUT/study3d" >"$OUT/study.log" 2>&1
echo "study exit code $?" | tee -a "$OUT/study.log"
tar czf "$OUT/study3d.tgz" -C "$OUT" --exclude='*.safetensors' --exclude='*.ot' --exclude=checkpoint study3d
rm -rf "$OUT/study3d"
ls -la "$OUT"
