"""results.csv and the paired table of the fit study (docs/study/fit/run.sh).

Usage: python3 docs/study/fit/table.py STUDY_DIR > results.md
       python3 docs/study/fit/table.py docs/study/fit/results.csv   (the paired table alone, from the CSV)
Writes STUDY_DIR/results.csv (method, set, n, seed, test_dice, test_iou, test_cases, ood_dice,
ood_iou, ood_cases, seconds) from every finished cell and prints, per set, the mean test Dice of
each arm and the paired differences by seed with 95 % bootstrap intervals: fit and refit (the fit
that spends its budget, docs/study/fit/refit.sh) against train, refit against the first fit, nnU-Net
(one epoch) against both, nnU-Net at five epochs (docs/study/fit/nnunet.sh) against refit, fit (the N = 40 study's) and one epoch,
fit on an H200 (fit-gpu, scripts/device-check.sh fit; kvasir_seg only) against refit and nnunet5,
and one model on all pairs with fit's recipe (fit-all, docs/study/fit/all.sh) against fit.
"""
import csv, json, os, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from paired import interval, verdict  # noqa: E402

study = sys.argv[1]
from_csv = study.endswith(".csv")
rows = []
if from_csv:
    for r in csv.DictReader(open(study)):
        for k in ["test_dice", "test_iou", "ood_dice", "ood_iou"]:
            r[k] = float(r[k]) if r[k] != "" else ""
        rows.append(dict(r, seed=int(r["seed"])))
for cell in [] if from_csv else sorted(os.listdir(study)):
    c = os.path.join(study, cell)
    if not os.path.isfile(os.path.join(c, "done")):
        continue
    name, seed = cell.rsplit("-s", 1)
    split = json.load(open(os.path.join(c, "train", "split.json")))
    n = len(split["train"]) + len(split["val"])
    seconds = dict(zip(*[iter(open(os.path.join(c, "seconds")).read().split())] * 2))
    for arm in ["train", "fit", "fit-best", "fit-all", "refit", "nnunet", "nnunet5"]:
        ev = os.path.join(c, f"eval-{arm}", "summary.json")
        if not os.path.isfile(ev):
            continue
        s = json.load(open(ev))["summary"]
        row = {"method": arm, "set": name, "n": n, "seed": int(seed), "test_dice": s["dice"]["mean"],
               "test_iou": s["iou"]["mean"], "test_cases": s["cases"], "ood_dice": "", "ood_iou": "", "ood_cases": "",
               "seconds": seconds.get(arm, "")}
        if arm == "train":  # its training time (a resumed launch of the study skipped it)
            row["seconds"] = round(json.load(open(os.path.join(c, "train", "summary.json")))["seconds"])
        ood = os.path.join(c, f"ood-eval-{arm}", "summary.json")
        if os.path.isfile(ood):
            o = json.load(open(ood))["summary"]
            row.update(ood_dice=o["dice"]["mean"], ood_iou=o["iou"]["mean"], ood_cases=o["cases"])
        rows.append(row)
if not from_csv:
    with open(os.path.join(study, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()) if rows else ["method"])
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.5f}" if isinstance(v, float) else v) for k, v in r.items()})


PAIRS = [("fit", "train"), ("refit", "train"), ("refit", "fit"), ("fit-best", "fit"), ("fit-all", "fit"), ("nnunet", "fit"), ("nnunet", "refit"),
         ("nnunet5", "refit"), ("nnunet5", "fit"), ("nnunet5", "nnunet"), ("fit-gpu", "refit"), ("fit-gpu", "nnunet5")]
print("| set | metric | arm - base | base | arm | difference (seeds) | verdict |\n|---|---|---|---|---|---|---|")
for name in sorted({r["set"] for r in rows}):
    for metric in ["test_dice", "ood_dice"]:
        by = {(r["method"], r["seed"]): r[metric] for r in rows if r["set"] == name and r[metric] != ""}
        for arm, base in PAIRS:
            seeds = sorted(s for (m, s) in by if m == arm and (base, s) in by)
            if not seeds:
                continue
            d = [by[(arm, s)] - by[(base, s)] for s in seeds]
            m, lo, hi = interval(d)
            mean = lambda a: sum(by[(a, s)] for s in seeds) / len(seeds)
            print(f"| {name} | {metric} | {arm} - {base} | {mean(base):.3f} | {mean(arm):.3f} | {m:+.3f} [{lo:+.3f}, {hi:+.3f}] ({len(d)}) | {verdict(lo, hi, len(d), 'seeds')} |")

if from_csv:
    sys.exit(0)
print("\nPer cell: the plan's iterations and measured step, each candidate's cross-validated Dice (last models), the "
      "choice, its best-validation checkpoints on the same cases (optimistic), fit's seconds, test Dice of train and fit.\n")
print("| set | seed | iterations | step | cross-validated Dice | chosen | best checkpoints | fit s | train | fit |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if r["method"] != "fit":
        continue
    c = os.path.join(study, f"{r['set']}-s{r['seed']}")
    rec = json.load(open(os.path.join(c, "fit", "plan.json")))
    plan, cv = rec["plan"], rec["cv"]
    cands = {x["candidate"]: x for x in cv["rows"]}
    train = next(x for x in rows if x["method"] == "train" and x["set"] == r["set"] and x["seed"] == r["seed"])
    print(f"| {r['set']} | {r['seed']} | {plan['iters']} | {plan['ms_per_step']:.0f} ms | "
          + " / ".join(f"{k} {v['mean']:.3f}" for k, v in cands.items())
          + f" | {cv['chosen']} | {cands[cv['chosen']]['best_checkpoint_mean']:.3f} | {r['seconds']} | "
          f"{train['test_dice']:.3f} | {r['test_dice']:.3f} |")

refits = [r for r in rows if r["method"] == "refit"]
if refits:
    print("\nrefit per cell: each fold's iterations (the same for every candidate), the cross-validated Dice, the "
          "choice, seconds of the 600 s budget spent (the first fit's beside it), test Dice of the first fit and refit.\n")
    print("| set | seed | fold iterations | cross-validated Dice | chosen | refit s | fit s | fit | refit |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in refits:
        c = os.path.join(study, f"{r['set']}-s{r['seed']}")
        cv = json.load(open(os.path.join(c, "refit", "plan.json")))["cv"]
        cands = {x["candidate"]: x for x in cv["rows"]}
        fit = next(x for x in rows if x["method"] == "fit" and x["set"] == r["set"] and x["seed"] == r["seed"])
        print(f"| {r['set']} | {r['seed']} | {', '.join(str(i) for i in cv['rows'][0]['stopped_iters'])} | "
              + " / ".join(f"{k} {v['mean']:.3f}" for k, v in cands.items())
              + f" | {cv['chosen']} | {r['seconds']} | {fit['seconds']} | {fit['test_dice']:.3f} | {r['test_dice']:.3f} |")
