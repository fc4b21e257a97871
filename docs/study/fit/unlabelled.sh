#!/bin/bash
# Does `genseg fit --unlabelled` help? Design, fixed before any result (2026-12-05):
# kvasir_seg (-> cvc_clinicdb out of domain), N = 16, seeds 1-3. Per seed, `genseg train DATA --n
# 16 --seed S --iters 1` picks the 16 labelled pairs as the fit study did (its split.json); of the
# other 984 cases a seeded draw of 200 (python random.Random(S)) is the unlabelled pool and the
# remaining 784 are the test cases, the same for both arms. Arms: `fit` (the labelled pairs alone)
# and `fit-unlabelled` (the same command with --unlabelled POOL, which adds the semi candidate);
# both --budget 10m --seed S --no-onnx, one thread, fit's own plan and choice; the two arms of a
# seed run at the same time (one lane each). Scored by `genseg evaluate` at the images' own sizes;
# paired differences by seed with 95 % bootstrap intervals (docs/study/fit/unlabelled_table.py).
#   bash docs/study/fit/unlabelled.sh STUDY_DIR GENSEG_BINARY      (resumable)
set -u
STUDY=$(realpath -m "$1") GENSEG=$2
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
D=${DATA:-$ROOT/../shared/data}
mkdir -p "$STUDY"
G="$GENSEG --threads 1 --device cpu"
for seed in 1 2 3; do
  c="$STUDY/kvasir_seg-s$seed"
  mkdir -p "$c"
  [ -f "$c/split/split.json" ] || $G train "$D/kvasir_seg" --n 16 --seed "$seed" --iters 1 --out "$c/split" > "$c/split.log" 2>&1
  [ -d "$c/pool" ] || python3 - "$D/kvasir_seg" "$c/split/split.json" "$c" "$seed" <<'PY'
import json, os, random, sys
data, split, cell, seed = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3], int(sys.argv[4])
rest = sorted(split["test"])
random.Random(seed).shuffle(rest)
parts = {"labelled": split["train"] + split["val"], "pool": rest[:200], "test": rest[200:]}
for part, ids in parts.items():
    for kind in ["images", "masks"] if part != "pool" else ["images"]:
        files = {os.path.splitext(f)[0]: f for f in os.listdir(os.path.join(data, kind))}
        os.makedirs(os.path.join(cell, part, kind), exist_ok=True)
        for case in ids:
            os.symlink(os.path.join(data, kind, files[case]), os.path.join(cell, part, kind, files[case]))
PY
  run_arm() {
    local arm=$1 extra=$2
    [ -f "$c/done-$arm" ] && return 0
    local start=$(date +%s)
    $G fit "$c/labelled" --budget 10m --seed "$seed" --no-onnx $extra --out "$c/$arm" > "$c/$arm.log" 2>&1 || return 1
    echo "$arm $(( $(date +%s) - start ))" >> "$c/seconds"
    $G predict --run "$c/$arm" "$c/test/images" --out "$c/pred-$arm" > /dev/null 2>&1
    $G evaluate "$c/pred-$arm" "$c/test" --out "$c/eval-$arm" > /dev/null 2>&1
    $G predict --run "$c/$arm" "$D/cvc_clinicdb/images" --out "$c/ood-pred-$arm" > /dev/null 2>&1
    $G evaluate "$c/ood-pred-$arm" "$D/cvc_clinicdb" --out "$c/ood-eval-$arm" > /dev/null 2>&1
    rm -rf "$c/pred-$arm" "$c/ood-pred-$arm" "$c/$arm"/runs/*/fold*/checkpoint
    touch "$c/done-$arm"
  }
  run_arm fit "" &
  run_arm fit-unlabelled "--unlabelled $c/pool/images" &
  wait
done
