#!/usr/bin/env bash
# GPU check for a lent device machine: carries only the built binary (target/debug/genseg) and
# uses that machine's own CUDA PyTorch 2.11 libtorch. Runs the demo on CUDA (phantom data; the
# shared data does not travel) and the step benchmarks against PyTorch on the same GPU.
# Usage there: bash scripts/device-check.sh   (writes logs under $OUT when set)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/genseg-device}
mkdir -p "$OUT"
TORCH_DIR=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')
export LD_LIBRARY_PATH="$TORCH_DIR/lib:${LD_LIBRARY_PATH:-}"
BIN=${BIN:-target/debug/genseg}
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))'
timeout 300 "$BIN" --device cuda demo --out "$OUT/demo" 2>&1 | tee "$OUT/demo.log"
for args in "unet --width 64 --depth 5 --size 256 --batch 8" "gan --width 64 --size 256 --batch 4" "gan --width 64 --size 256 --batch 4 --separate-ops"; do
  ours=$("$BIN" --device cuda bench $args --steps 20)
  ref=$(python3 bench/reference.py $args --steps 20 --device cuda)
  echo "genseg  $ours" | tee -a "$OUT/bench.log"
  echo "pytorch $ref" | tee -a "$OUT/bench.log"
done
