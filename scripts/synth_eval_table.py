"""Table of synth-eval reports (docs/RESULTS.md section 8): per dataset and seed, each generator
arm's TSTR and TRTR test Dice, TSTR's and TRTR's best validation Dice, memorisation ratios,
diversity and held-out L1; then per dataset the mean of each arm and the paired difference of
the second arm minus the first over seeds.

Usage: python3 scripts/synth_eval_table.py ROOT ARM_A ARM_B
(ROOT/DATASET/ARM-sSEED/synth_eval.json, with tstr/ and trtr/ run folders beside it)
"""
import json, os, re, statistics, sys

root, arms = sys.argv[1], sys.argv[2:]
cols = ["tstr", "trtr", "ratio", "tstr_val", "trtr_val", "mem", "mem_train", "div", "l1"]


def read(folder):
    d = json.load(open(os.path.join(folder, "synth_eval.json")))
    val = lambda run: json.load(open(os.path.join(folder, run, "summary.json")))["best_val_dice"]
    return dict(tstr=d["tstr_dice"], trtr=d["trtr_dice"], ratio=d["tstr_over_trtr"], tstr_val=val("tstr"),
                trtr_val=val("trtr"), mem=d["memorisation_ratio"], mem_train=d["memorisation_ratio_training_masks"],
                div=d["diversity"], l1=d["heldout_l1"])


print("| data | seed | generator | TSTR test | TRTR test | TSTR/TRTR | TSTR val | TRTR val | memorisation | from training masks | diversity | held-out L1 |")
print("|---" * 12 + "|")
summary = {}
for data in sorted(os.listdir(root)):
    if not os.path.isdir(os.path.join(root, data)):
        continue
    seeds = sorted({int(m.group(1)) for f in os.listdir(os.path.join(root, data)) if (m := re.match(r".*-s(\d+)$", f))})
    for seed in seeds:
        row = {}
        for arm in arms:
            folder = os.path.join(root, data, f"{arm}-s{seed}")
            if os.path.exists(os.path.join(folder, "synth_eval.json")):
                row[arm] = read(folder)
                r = row[arm]
                print(f"| {data} | {seed} | {arm} | " + " | ".join(f"{r[c]:.3f}" if c != "div" else f"{r[c]:.4f}" for c in cols) + " |")
        if len(row) == len(arms):
            summary.setdefault(data, []).append(row)
print()
for data, rows in summary.items():
    print(f"{data}, {len(rows)} seeds with both arms:")
    for c in cols:
        a = [r[arms[0]][c] for r in rows]
        b = [r[arms[1]][c] for r in rows]
        d = [y - x for x, y in zip(a, b)]
        print(f"  {c:10s} {arms[0]} {statistics.mean(a):.3f}  {arms[1]} {statistics.mean(b):.3f}  paired {arms[1]} - {arms[0]}: {statistics.mean(d):+.3f} (per seed {', '.join(f'{x:+.3f}' for x in d)})")
