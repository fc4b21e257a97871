"""Tables of the recipe comparison (docs/RESULTS.md section 6): mean +- sd over seeds per arm and N
of the best validation Dice, test Dice and out-of-domain Dice, and how many runs stopped early.

Usage: python3 scripts/recipe_tables.py STUDIES  (the folder holding adam_geometric/, adam_nnunet/,
sgd_poly_nnunet/ written by the study commands in that section)
"""
import csv, json, os, statistics, sys
arms = [("plain, Adam, constant", "adam_geometric", "plain"),
        ("augment geometric, Adam, constant", "adam_geometric", "augment"),
        ("augment nnunet, Adam, constant", "adam_nnunet", "augment"),
        ("plain, SGD, poly", "sgd_poly_nnunet", "plain"),
        ("augment nnunet, SGD, poly", "sgd_poly_nnunet", "augment")]
root = sys.argv[1]
def load(study, method):
    rows = [r for r in csv.DictReader(open(os.path.join(root, study, "results.csv"))) if r["method"] == method]
    for r in rows:
        s = json.load(open(os.path.join(root, study, "runs", f"{method}-n{r['n']}-s{r['seed']}", "summary.json")))
        r["val_dice"] = s["best_val_dice"]
    return rows
data = {name: load(st, m) for name, st, m in arms}
ns = sorted({int(r["n"]) for rows in data.values() for r in rows})
for metric, title in [("val_dice", "Best validation Dice (4 cases)"), ("test_dice", "In-domain test Dice"), ("ood_dice", "Out-of-domain Dice (cvc_clinicdb)")]:
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
