"""Table of synth-eval reports (docs/history §8): per dataset and seed, each generator
arm's TSTR and TRTR test Dice, TSTR's and TRTR's best validation Dice, memorisation ratios,
diversity and held-out L1; then per dataset the mean of each arm and the paired difference of
every later arm minus every earlier one over seeds, per dataset and pooled, with 95 % bootstrap
intervals.

Usage: python3 scripts/synth_eval_table.py ROOT ARM...
(ROOT/DATASET/ARM-sSEED/synth_eval.json, with tstr/ and trtr/ run folders beside it)
"""
import json, os, random, re, statistics, sys

root, arms = sys.argv[1], sys.argv[2:]
cols = ["tstr", "trtr", "ratio", "tstr_val", "trtr_val", "mem", "mem_train", "div", "l1"]


# Non-finite values (a TRTR of 0 gives an infinite ratio) are written as strings: float() reads them.
def read(folder):
    d = json.load(open(os.path.join(folder, "synth_eval.json")))
    val = lambda run: json.load(open(os.path.join(folder, run, "summary.json")))["best_val_dice"]
    return dict(tstr=d["tstr_dice"], trtr=d["trtr_dice"], ratio=float(d["tstr_over_trtr"]), tstr_val=val("tstr"),
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


def interval(d, resamples=10_000):
    """Mean and 95 % percentile-bootstrap interval (the rule of src/eval/stats.rs)."""
    rng = random.Random(0)
    means = sorted(statistics.mean(rng.choices(d, k=len(d))) for _ in range(resamples))
    lo, hi = means[resamples * 25 // 1000], means[resamples * 975 // 1000 - 1]
    verdict = "within noise" if len(d) < 2 or lo <= 0 <= hi else ("better" if lo > 0 else "worse")
    return f"{statistics.mean(d):+.3f} [{lo:+.3f}, {hi:+.3f}] {verdict}"


print()
for data, rows in summary.items():
    print(f"{data}, {len(rows)} seeds with every arm; mean per arm:")
    for c in cols:
        print(f"  {c:10s} " + "  ".join(f"{arm} {statistics.mean(r[arm][c] for r in rows):.3f}" for arm in arms))
    # The mean of per-seed ratios is dominated by a seed whose TRTR segmenter failed; this is not.
    mean = lambda arm, c: statistics.mean(r[arm][c] for r in rows)
    print(f"  {'ratio of the means':10s} " + "  ".join(f"{arm} {mean(arm, 'tstr') / mean(arm, 'trtr'):.3f}" for arm in arms))
print()
print("Paired differences (later arm minus earlier, over seeds; 'pooled' = every dataset's seeds):")
pooled = [r for rows in summary.values() for r in rows]
for i, a in enumerate(arms):
    for b in arms[i + 1:]:
        for c in ("tstr", "tstr_val"):
            for name, rows in list(summary.items()) + [("pooled", pooled)]:
                d = [r[b][c] - r[a][c] for r in rows]
                print(f"  {b} - {a} {c:8s} {name:10s} {interval(d)} (per seed {', '.join(f'{x:+.3f}' for x in d)})")
