"""Paired differences between arms of one or more studies (same N, same seed), with 95 %
bootstrap confidence intervals.

Usage: python3 scripts/paired.py [--n N] BASE OTHER [OTHER ...]   (--n: only the cells of that N)
Each arm is RESULTS.csv:METHOD[:NAME] (a study's results.csv and a method in it; several studies
of different data sets joined by '+', A.csv+B.csv:METHOD, pool their cells, each set's own
(N, seed) cells paired with the same set's in the base). For every
metric (val_dice, the best validation Dice, read from each run's summary.json; test_dice;
ood_dice) it prints, per OTHER, the mean of OTHER - BASE over the (N, seed)
cells both have, pooled over N, with a 95 % percentile bootstrap interval (10,000 resamples of
the cells), and "within noise" when the interval crosses 0.
"""
import csv, json, math, os, random, sys


def arm(spec):
    parts = spec.split(":")
    paths, method = parts[0].split("+"), parts[1]
    name = parts[2] if len(parts) > 2 else f"{method}@{parts[0]}"
    rows = {}
    for i, path in enumerate(paths):
        for r in csv.DictReader(open(path)):
            if r["method"] != method:
                continue
            n, seed = int(r["n"]), int(r["seed"])
            summary = os.path.join(os.path.dirname(path), "runs", f"{method}-n{n}-s{seed}", "summary.json")
            if "best_val_dice" in r:  # newer results.csv files carry it
                r["val_dice"] = r["best_val_dice"]
            else:
                r["val_dice"] = json.load(open(summary))["best_val_dice"] if os.path.exists(summary) else "nan"
            rows[(i, n, seed)] = r
    return name, rows


def bootstrap(d, reps=10000, seed=0):
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(d) for _ in d) / len(d) for _ in range(reps))
    return means[int(0.025 * reps)], means[int(0.975 * reps) - 1]


args = sys.argv[1:]
only_n = None
if args[:1] == ["--n"]:
    only_n, args = int(args[1]), args[2:]
base_name, base = arm(args[0])
others = [arm(s) for s in args[1:]]
for metric in ("val_dice", "test_dice", "ood_dice"):
    print(f"{metric}: arm minus {base_name}, " + (f"N = {only_n}" if only_n else "pooled over N") + " and seeds")
    for name, rows in others:
        cells = sorted(c for c in set(base) & set(rows) if only_n in (None, c[1]))
        d = [float(rows[c][metric]) - float(base[c][metric]) for c in cells]
        d = [x for x in d if not math.isnan(x)]
        if not d:
            continue
        lo, hi = bootstrap(d)
        verdict = "within noise" if lo <= 0 <= hi else ("better" if lo > 0 else "worse")
        print(f"  {name:<24} {sum(d) / len(d):+.3f}  95% CI [{lo:+.3f}, {hi:+.3f}]  ({len(d)} cells)  {verdict}")
