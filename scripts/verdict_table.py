"""The verdict in one table (docs/history §10): for each of the four test sets, the
pooled paired differences (over N and seeds) that the two studies' results.md give, copied, not
recomputed, with their verdicts.

Usage: python3 scripts/verdict_table.py POLYP_STUDY FOOT_STUDY
(POLYP_STUDY: kvasir_seg -> cvc_clinicdb; FOOT_STUDY: fuseg -> medetec_foot_ulcer)
"""
import sys


def paired(study):
    """{(metric, base): {method: (pooled, verdict)}} from a study's results.md."""
    out, key = {}, None
    for line in open(f"{study}/results.md"):
        if line.startswith("### ") and "minus" in line:
            metric, base = line[4:].strip().split(": each method minus ")
            key = (metric, base)
            out[key] = {}
        elif line.startswith("### "):
            key = None
        elif key and line.startswith("| ") and not line.startswith("| method"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            out[key][cells[0]] = (cells[-2], cells[-1])
    return out


polyp, foot = paired(sys.argv[1]), paired(sys.argv[2])
sets = [("kvasir_seg (in-domain test)", polyp, "In-domain test Dice"),
        ("cvc_clinicdb (out-of-domain)", polyp, "Out-of-domain Dice"),
        ("fuseg (in-domain test)", foot, "In-domain test Dice"),
        ("medetec_foot_ulcer (out-of-domain)", foot, "Out-of-domain Dice")]
comparisons = [("genseg", "augment"), ("separate", "augment"), ("genseg", "separate"), ("plain", "augment")]
print("| test set | " + " | ".join(f"{m} minus {b}" for m, b in comparisons) + " |")
print("|---|" + "---|" * len(comparisons))
for name, study, metric in sets:
    cells = []
    for m, b in comparisons:
        pooled, verdict = study.get((metric, b), {}).get(m, ("-", ""))
        cells.append(f"{pooled} {verdict}".strip())
    print(f"| {name} | " + " | ".join(cells) + " |")
print()
print("| validation (best validation Dice) | " + " | ".join(f"{m} minus {b}" for m, b in comparisons) + " |")
print("|---|" + "---|" * len(comparisons))
for name, study in [("kvasir_seg", polyp), ("fuseg", foot)]:
    cells = []
    for m, b in comparisons:
        pooled, verdict = study.get(("Best validation Dice", b), {}).get(m, ("-", ""))
        cells.append(f"{pooled} {verdict}".strip())
    print(f"| {name} | " + " | ".join(cells) + " |")
