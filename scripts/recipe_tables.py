"""Tables of a recipe comparison (docs/history §6 and §7): mean +- sd over seeds per arm
and N of the best validation Dice, test Dice and out-of-domain Dice, and how many runs stopped
before their budget.

Usage: python3 scripts/recipe_tables.py LABEL=STUDY/results.csv:METHOD ...
(each arm: a label, a study's results.csv and the method's rows in it; the best validation Dice is
read from STUDY/runs/METHOD-nN-sSEED/summary.json)
"""
import csv, json, os, statistics, sys

def load(spec):
    label, rest = spec.split("=", 1)
    path, method = rest.rsplit(":", 1)
    rows = [r for r in csv.DictReader(open(path)) if r["method"] == method]
    for r in rows:
        run = os.path.join(os.path.dirname(path), "runs", f"{method}-n{r['n']}-s{r['seed']}", "summary.json")
        r["val_dice"] = json.load(open(run))["best_val_dice"]
    return label, rows

data = dict(load(a) for a in sys.argv[1:])
ns = sorted({int(r["n"]) for rows in data.values() for r in rows})
for metric, title in [("val_dice", "Best validation Dice"), ("test_dice", "In-domain test Dice"), ("ood_dice", "Out-of-domain Dice")]:
    print(f"\n### {title}\n")
    print("| arm | " + " | ".join(f"N = {n}" for n in ns) + " |")
    print("|---|" + "---|" * len(ns))
    for name, rows in data.items():
        cells = []
        for n in ns:
            v = [float(r[metric]) for r in rows if int(r["n"]) == n]
            cells.append(f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f} [{len(v)}]" if len(v) > 1 else ("-" if not v else f"{v[0]:.3f} [1]"))
        print(f"| {name} | " + " | ".join(cells) + " |")
stops = [(int(r["stopped_iter"]), int(r["iters"]), int(r["best_iter"])) for rows in data.values() for r in rows]
print(f"\n{sum(s < i for s, i, _ in stops)} of {len(stops)} runs stopped before their budget; stopped_iter {min(s for s,_,_ in stops)}-{max(s for s,_,_ in stops)}, best_iter {min(b for _,_,b in stops)}-{max(b for _,_,b in stops)}")
