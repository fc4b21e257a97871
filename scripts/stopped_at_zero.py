"""Runs that early stopping ended at a validation Dice of 0 (the rule before commit a3ac2a1
allowed it; such a run had found no lesion yet, docs/history §18).

Usage: python3 scripts/stopped_at_zero.py ROOT [ROOT ...]
Every run folder below each ROOT (summary.json beside metrics.jsonl) is checked; prints the
count and each such run with its stopping iteration and best validation Dice.
"""
import glob, json, os, sys

hits, total = [], 0
for root in sys.argv[1:]:
    for metrics in glob.glob(os.path.join(root, "**", "metrics.jsonl"), recursive=True):
        run = os.path.dirname(metrics)
        summary = os.path.join(run, "summary.json")
        lines = [json.loads(l) for l in open(metrics) if l.strip()]
        if not os.path.exists(summary) or not lines:
            continue
        total += 1
        s = json.load(open(summary))
        if s.get("stopped_iter", 0) < s.get("iters", 0) and lines[-1].get("val_dice") == 0.0:
            hits.append((run, s["stopped_iter"], s["best_val_dice"]))
print(f"{total} runs; {len(hits)} stopped at validation Dice 0")
for run, stopped, best in sorted(hits):
    print(f"  {run}: stopped at {stopped}, best validation Dice {best:.3f}")
