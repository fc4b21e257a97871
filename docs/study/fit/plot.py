"""Test Dice per (set, seed) of the fit study: train's defaults, the first fit, refit (the fit that
spends its budget), one model on all pairs with fit's recipe (fit-all) and nnU-Net v2 (1 and 5 epochs) where it ran; one line per seed joins its arms, so the paired
differences of results.md can be seen cell by cell.
Usage: python plot.py docs/study/fit/results.csv docs/study/fit/paired.png
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

rows = list(csv.DictReader(open(sys.argv[1])))
arms = [a for a in ["train", "fit-all", "fit", "refit", "nnunet", "nnunet5"] if any(r["method"] == a for r in rows)]
sets = sorted({r["set"] for r in rows})
by = {(r["method"], r["set"], int(r["seed"])): float(r["test_dice"]) for r in rows}
fig, axes = plt.subplots(1, len(sets), figsize=(3.4 * len(sets), 3.6), sharey=True, squeeze=False)
for ax, name in zip(axes[0], sets):
    for seed, colour in zip((1, 2, 3), ("tab:blue", "tab:orange", "tab:green")):
        xs = [i for i, a in enumerate(arms) if (a, name, seed) in by]
        ax.plot(xs, [by[(arms[i], name, seed)] for i in xs], "o-", color=colour, label=f"seed {seed}")
    ax.set_xticks(range(len(arms)), arms)
    ax.set_title(f"{name} (N = {'/'.join(sorted({r['n'] for r in rows if r['set'] == name}))})")
    ax.grid(alpha=0.3)
axes[0][0].set_ylabel("test Dice")
axes[0][0].legend(fontsize=8)
fig.suptitle("genseg fit at 10 min on one CPU core vs train's defaults and nnU-Net v2 (docs/study/fit)", fontsize=10)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=120)
