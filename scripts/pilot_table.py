"""Per-run table of the issue-13 pilot (docs/history §9, docs/study/pilot/pilot_runs.md):
best validation, test and out-of-domain Dice per arm and seed, and each arm minus augment per
seed. Paths are those of the session that ran it (STUDIES=/work/studies); edit `base` for yours.
"""
import json, os
base = "/work/studies"
arms = [("augment (section 7)", "val25/kvasir_seg/geometric/runs/augment"),
        ("separate, augmented real pairs", "pilot/kvasir_seg/real_aug/runs/separate"),
        ("separate, augmented real pairs, --reweight", "pilot/kvasir_seg/reweight/runs/separate"),
        ("genseg (exact), augmented real pairs", "pilot/kvasir_seg/real_aug/runs/genseg")]
def get(prefix, seed):
    p = os.path.join(base, f"{prefix}-n16-s{seed}", "summary.json")
    if not os.path.exists(p): return None
    d = json.load(open(p)); return d["best_val_dice"], d["test"]["dice"]["mean"], d["ood"]["dice"]["mean"], d["best_iter"], d["stopped_iter"]
print("| arm | seed | best validation Dice | test Dice | out-of-domain Dice (cvc) | best / stopped iteration |")
print("|---|---|---|---|---|---|")
for name, prefix in arms:
    for seed in (1, 2, 3):
        r = get(prefix, seed)
        if r: print(f"| {name} | {seed} | {r[0]:.3f} | {r[1]:.3f} | {r[2]:.3f} | {r[3]} / {r[4]} |")
print()
print("| arm minus augment, per seed (validation; test) | seed 1 | seed 2 | seed 3 | mean |")
print("|---|---|---|---|---|")
for name, prefix in arms[1:]:
    cells, vals = [], []
    for seed in (1, 2, 3):
        a, r = get(arms[0][1], seed), get(prefix, seed)
        if r: cells.append(f"{r[0]-a[0]:+.3f}; {r[1]-a[1]:+.3f}"); vals.append((r[0]-a[0], r[1]-a[1]))
        else: cells.append("-")
    mean = f"{sum(v for v,_ in vals)/len(vals):+.3f}; {sum(t for _,t in vals)/len(vals):+.3f} [{len(vals)}]" if vals else "-"
    print(f"| {name} | " + " | ".join(cells) + f" | {mean} |")
