#!/bin/bash
# The nnU-Net v2 arms of the fit study (docs/study/fit/run.sh): per finished cell, nnU-Net v2 on
# the train run's split (fold 0 = its 12 training pairs, validated on its 4), via
# scripts/nnunet_peer.sh at 64 px, one cell at a time (nnU-Net's own threads); its 64 px masks
# are resized to each test image's own size (bilinear, threshold at half) and scored by
# `genseg evaluate` like the other arms.
#   EPOCHS=1: arm `nnunet`, the one-epoch trainer (250 iterations, planned as about fit's 10
#     minutes: 510 s in HISTORY §7). Its training took 65-80 s on an idle machine, so:
#   EPOCHS=5: arm `nnunet5`, nnU-Net's next short trainer (1250 iterations). Estimated from the
#     one-epoch runs, its whole run (planning, preprocessing, training, prediction) takes about
#     470 s on both cores of an idle machine, more compute than fit's 10 minutes of one core:
#     nnU-Net at equal or more compute. Fixed before its results.
#   [EPOCHS=5] bash docs/study/fit/nnunet.sh STUDY_DIR NNUNET_VENV CELL...     (e.g. kvasir_seg-s1)
set -eu
STUDY=$(realpath "$1"); VENV=$(realpath "$2"); shift 2
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
EPOCHS=${EPOCHS:-1}
ARM=nnunet; [ "$EPOCHS" = 1 ] || ARM=nnunet$EPOCHS
for cell in "$@"; do
  c="$STUDY/$cell"
  [ -f "$c/eval-$ARM/summary.json" ] && continue
  mkdir -p "$c/$ARM" && ln -sfn "$VENV" "$c/$ARM/venv"
  if [ ! -d "$c/$ARM/pred" ]; then
    start=$(date +%s)
    bash "$ROOT/scripts/nnunet_peer.sh" "$c/train" "$c/$ARM" "$EPOCHS" cpu > "$c/$ARM.log" 2>&1
    echo "$ARM $(( $(date +%s) - start ))" >> "$c/seconds"
  fi
  "$ROOT/.venv/bin/python" - "$c/$ARM/pred" "$c/test/images" "$c/pred-$ARM" <<'PY'
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
  "$ROOT/target/debug/genseg" evaluate "$c/pred-$ARM" "$c/test" --out "$c/eval-$ARM" > /dev/null
  rm -rf "$c/pred-$ARM" "$c/$ARM/preprocessed" "$c/$ARM/results" "$c/$ARM/raw" "$c/$ARM/pred"
done
