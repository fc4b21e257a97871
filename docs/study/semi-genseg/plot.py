"""Per-cell paired differences of the semi-genseg study: genseg (with unlabelled images) minus
semi (the semi study's cells) and minus augment, test Dice, one dot per (N, seed), the mean as a
bar. The intervals are genseg's `compare` tables (vs-semi.md) and the study's results.md.
Usage: python plot.py DOCS_STUDY_DIR SET[:COLUMN]...   e.g. kvasir:test_dice kvasir:ood_dice busi:test_dice
"""
import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

docs = Path(sys.argv[1])


def rows(path):
    with open(path) as f:
        return {(r["method"], int(r["n"]), int(r["seed"])): r for r in csv.DictReader(f)}


panels = [a.split(":") for a in sys.argv[2:]]
fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), sharey=True, squeeze=False)
for ax, (name, column) in zip(axes[0], panels):
    new = rows(docs / "semi-genseg" / name / "results.csv")
    old = rows(docs / "semi" / name / "results.csv")
    x = 0
    ticks, labels = [], []
    for n in (8, 16):
        for base_name, base in (("semi", old), ("augment", new)):
            diffs = [
                float(new[("genseg", n, s)][column]) - float(base[(base_name, n, s)][column])
                for s in range(1, 6)
                if ("genseg", n, s) in new and (base_name, n, s) in base
            ]
            if not diffs:
                continue
            ax.scatter([x] * len(diffs), diffs, s=18, color="C0" if base_name == "semi" else "C1")
            mean = sum(diffs) / len(diffs)
            ax.hlines(mean, x - 0.3, x + 0.3, color="black")
            ticks.append(x)
            labels.append(f"- {base_name}\nN={n}")
            x += 1
        x += 0.5
    ax.axhline(0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(ticks, labels, fontsize=8)
    ax.set_title(f"{name}: {column.replace('_', ' ')}", fontsize=10)
axes[0][0].set_ylabel("genseg with unlabelled images minus arm")
fig.tight_layout()
out = docs / "semi-genseg" / "paired.png"
fig.savefig(out, dpi=120)
print(out)
