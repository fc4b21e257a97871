#!/usr/bin/env bash
# Peer check: nnU-Net v2 on the very split of one genseg run, scored by `genseg evaluate`.
#
#   scripts/nnunet_peer.sh RUN OUT [EPOCHS] [DEVICE]
#
# RUN: a genseg run folder (e.g. STUDY/runs/augment-n16-s1); OUT: a new folder for nnU-Net's
# raw/preprocessed/results trees, its predictions and the evaluation. EPOCHS picks one of
# nnU-Net's short-schedule trainers (nnUNetTrainer_1epoch, _{5,10,20,50,100,...}epochs; 250 iterations
# an epoch), default 5; DEVICE cpu (default) or cuda.
#
# nnunetv2 (pinned) goes into its own venv under OUT/venv, which reuses the project's torch
# (.venv) through a .pth file; nothing here is part of `make test`.
set -euo pipefail
RUN=$(realpath "$1"); OUT=$(realpath -m "$2"); EPOCHS=${3:-5}; DEVICE=${4:-cpu}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
G="$ROOT/target/debug/genseg"
[ -f "$RUN/split.json" ] || { echo "$RUN: not a genseg run folder (no split.json)" >&2; exit 1; }
[ -x "$G" ] || { echo "$G missing: run make build first" >&2; exit 1; }
mkdir -p "$OUT"
if [ ! -x "$OUT/venv/bin/nnUNetv2_train" ]; then
  python3 -m venv "$OUT/venv"
  ls -d "$ROOT"/.venv/lib/python3*/site-packages > "$(ls -d "$OUT"/venv/lib/python3*/site-packages)/genseg-torch.pth"
  "$OUT/venv/bin/pip" install -q nnunetv2==2.8.1
fi
export nnUNet_raw="$OUT/raw" nnUNet_preprocessed="$OUT/preprocessed" nnUNet_results="$OUT/results"
export PATH="$OUT/venv/bin:$PATH"
# Background augmentation workers: one by default (2-core machines); raise it on a GPU machine.
export nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-1}
ID=501
# nnU-Net names its one-epoch trainer in the singular.
TRAINER=nnUNetTrainer_${EPOCHS}epochs; [ "$EPOCHS" = 1 ] && TRAINER=nnUNetTrainer_1epoch
"$OUT/venv/bin/python" "$ROOT/scripts/nnunet_peer.py" "$RUN" "$nnUNet_raw" "$nnUNet_preprocessed" $ID
nnUNetv2_plan_and_preprocess -d $ID -c 2d -np 1 --verify_dataset_integrity
start=$(date +%s)
nnUNetv2_train $ID 2d 0 -tr "$TRAINER" -device "$DEVICE"
trained=$(date +%s)
nnUNetv2_predict -i "$nnUNet_raw/Dataset${ID}_Genseg/imagesTs" -o "$OUT/pred" -d $ID -c 2d -f 0 \
  -tr "$TRAINER" -device "$DEVICE"
echo "nnU-Net training: $((trained - start)) s for $EPOCHS epochs of 250 iterations on $DEVICE"
# nnU-Net leaves its plans and arguments beside the masks; evaluate reads masks only.
mkdir -p "$OUT/pred_records" && mv "$OUT"/pred/*.json "$OUT/pred_records/"
"$G" evaluate "$OUT/pred" "$nnUNet_raw/Dataset${ID}_Genseg/labelsTs" --out "$OUT/eval"
