#!/bin/bash
# Arm `fit-all` of the N = 40 fit study (issue 32 item 1: "or one model on all pairs if
# cross-validation shows that is better"). Design fixed before its results (docs/RESULTS.md,
# "Does fit beat train?"): per finished cell, one model trained on all the cell's labelled pairs
# with the recipe fit chose (its chosen candidate's fold-0 config.json: side, network, batch,
# poly schedule, last model, the candidate's options, seed), no validation cases, as many
# iterations as the most any of that candidate's fold runs trained; predicted and scored on the
# same test cases (and out-of-domain set) as the other arms. One thread, one cell at a time.
#   bash docs/study/fit/all.sh STUDY_DIR CELL...       (e.g. kvasir_seg-s1; resumable)
set -eu
STUDY=$(realpath "$1"); shift
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
D=${DATA:-$ROOT/../shared/data}
G="$STUDY/genseg --threads 1 --device cpu"
for cell in "$@"; do
  c="$STUDY/$cell"
  [ -f "$c/eval-fit-all/summary.json" ] && continue
  mkdir -p "$c/fit-all-config"
  python3 - "$c" <<'PY'
import json, os, sys
c = sys.argv[1]
rec = json.load(open(os.path.join(c, "fit", "plan.json")))
chosen = rec["cv"]["chosen"]
row = next(r for r in rec["cv"]["rows"] if r["candidate"] == chosen)
run = json.load(open(os.path.join(c, "fit", "runs", chosen, "fold0", "config.json")))
ids = os.path.join(c, "fit-all-config", "all.txt")
open(ids, "w").write("".join(i + "\n" for i in rec["plan"]["profile"]["ids"]))
cfg = run["config"]
cfg["data"]["train_ids"], cfg["data"]["val_ids"] = ids, None
cfg["iters"] = max(row["stopped_iters"])
json.dump(run, open(os.path.join(c, "fit-all-config", "config.json"), "w"), indent=1)
PY
  start=$(date +%s)
  [ -f "$c/fit-all/summary.json" ] || $G train "$c/labelled" --config "$c/fit-all-config/config.json" --out "$c/fit-all" > "$c/fit-all.log" 2>&1
  echo "fit-all $(( $(date +%s) - start ))" >> "$c/seconds"
  $G predict --run "$c/fit-all" "$c/test/images" --out "$c/pred-fit-all" > /dev/null 2>&1
  $G evaluate "$c/pred-fit-all" "$c/test" --out "$c/eval-fit-all" > /dev/null 2>&1
  ood=$(awk -v s="${cell%-s*}" '$1 == s {print $3; exit}' "$ROOT/docs/study/fit/cells.txt")
  if [ -n "$ood" ] && [ "$ood" != "''" ]; then
    $G predict --run "$c/fit-all" "$D/$ood/images" --out "$c/ood-pred-fit-all" > /dev/null 2>&1
    $G evaluate "$c/ood-pred-fit-all" "$D/$ood" --out "$c/ood-eval-fit-all" > /dev/null 2>&1
  fi
  rm -rf "$c/pred-fit-all" "$c/ood-pred-fit-all" "$c/fit-all/checkpoint"
  echo "$cell fit-all done $(date)"
done
