"""What the study table scripts share: paired differences with a 95 % bootstrap interval (10 000
resamples of the pairs, seed 0), their verdict, and CSV output.

Import it from a script under docs/study/ with
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
"""
import csv
import random


def interval(values):
    """Mean of `values` and the 2.5 and 97.5 percentiles of bootstrap means."""
    rng = random.Random(0)
    means = sorted(sum(rng.choice(values) for _ in values) / len(values) for _ in range(10000))
    return sum(values) / len(values), means[250], means[9749]


def verdict(lo, hi, n, unit="pairs"):
    """"better" or "worse" when the interval excludes 0, "within noise" when it crosses it; no
    verdict from fewer than 3 pairs."""
    if n < 3:
        return f"too few {unit}"
    return "better" if lo > 0 else "worse" if hi < 0 else "within noise"


def write_csv(path, rows, fields):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in fields})
