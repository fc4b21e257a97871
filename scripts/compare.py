"""Paired differences between methods in a study's results.csv (same N, same seed).

Usage: python3 scripts/compare.py STUDY/results.csv [OTHER/results.csv:NAME ...]
Prints, per metric and N, mean +- sd over seeds of (genseg - X) for X in plain, augment,
separate, and the pooled difference over all N and seeds. Each OTHER:NAME adds that study's
genseg runs as method NAME (e.g. an arm run with --hypergrad exact on the same generators). Metrics: test Dice, out-of-domain Dice
(when the study had an out-of-domain set) and test Dice per label (3-D multi-label studies).
"""
import csv, math, statistics, sys
from collections import defaultdict

rows = list(csv.DictReader(open(sys.argv[1])))
extra = []
for arg in sys.argv[2:]:
    path, name = arg.rsplit(":", 1)
    for r in csv.DictReader(open(path)):
        if r["method"] == "genseg":
            extra.append(dict(r, method=name))
            rows.append(extra[-1])
val = defaultdict(dict)
for r in rows:
    val[(int(r["n"]), int(r["seed"]))][r["method"]] = r
metrics = ["test_dice", "ood_dice"] + [c for c in rows[0] if c.startswith("test_dice_label")]
for metric in metrics:
    if all(math.isnan(float(r[metric])) for r in rows):
        continue
    print(f"{metric}: genseg minus ... (mean ± sd over seeds, [seeds])")
    for other in ("plain", "augment", "separate") + tuple(dict.fromkeys(r["method"] for r in extra)):
        pooled = []
        cells = []
        for n in sorted({k[0] for k in val}):
            d = [float(v["genseg"][metric]) - float(v[other][metric]) for (nn, _), v in val.items() if nn == n and "genseg" in v and other in v]
            pooled += d
            if d:
                sd = statistics.stdev(d) if len(d) > 1 else 0.0
                cells.append(f"N={n}: {statistics.mean(d):+.3f} ± {sd:.3f} [{len(d)}]")
        if pooled:
            sd = statistics.stdev(pooled) if len(pooled) > 1 else 0.0
            print(f"  vs {other:<8} " + "; ".join(cells) + f"; all: {statistics.mean(pooled):+.3f} ± {sd:.3f} [{len(pooled)}]")
