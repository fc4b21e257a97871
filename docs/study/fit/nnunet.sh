#!/bin/bash
# The nnU-Net v2 arm of the fit study (docs/study/fit/run.sh): per finished cell, nnU-Net v2 with
# its one-epoch trainer (250 iterations, about fit's 10 minutes on this CPU: 510 s in HISTORY §7)
# on the train run's split (fold 0 = its 12 training pairs, validated on its 4), via
# scripts/nnunet_peer.sh at 64 px; its 64 px masks are resized to each test image's own size
# (bilinear, threshold at half) and scored by `genseg evaluate` like the other arms.
#   bash docs/study/fit/nnunet.sh STUDY_DIR NNUNET_VENV CELL...     (e.g. kvasir_seg-s1)
set -eu
STUDY=$(realpath "$1"); VENV=$(realpath "$2"); shift 2
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
for cell in "$@"; do
  c="$STUDY/$cell"
  [ -f "$c/eval-nnunet/summary.json" ] && continue
  mkdir -p "$c/nnunet" && ln -sfn "$VENV" "$c/nnunet/venv"
  if [ ! -d "$c/nnunet/pred" ]; then
    start=$(date +%s)
    bash "$ROOT/scripts/nnunet_peer.sh" "$c/train" "$c/nnunet" 1 cpu > "$c/nnunet.log" 2>&1
    echo "nnunet $(( $(date +%s) - start ))" >> "$c/seconds"
  fi
  "$ROOT/.venv/bin/python" - "$c/nnunet/pred" "$c/test/images" "$c/pred-nnunet" <<'PY'
import os, sys
from PIL import Image
pred, images, out = sys.argv[1:]
os.makedirs(out, exist_ok=True)
sizes = {os.path.splitext(f)[0]: Image.open(os.path.join(images, f)).size for f in os.listdir(images)}
for f in os.listdir(pred):
    case = os.path.splitext(f)[0]
    mask = Image.open(os.path.join(pred, f)).convert("L").point(lambda v: 255 if v > 0 else 0)
    mask = mask.resize(sizes[case], Image.BILINEAR).point(lambda v: 255 if v > 127 else 0)
    mask.save(os.path.join(out, case + ".png"))
PY
  "$ROOT/target/debug/genseg" evaluate "$c/pred-nnunet" "$c/test" --out "$c/eval-nnunet" > /dev/null
  rm -rf "$c/pred-nnunet" "$c/nnunet/preprocessed" "$c/nnunet/results" "$c/nnunet/raw" "$c/nnunet/pred"
done
