"""Links of one train run's labelled pairs (CELL/labelled) and test cases (CELL/test), each with
images/ and masks/, from the data folder and the run's split.json.

Usage: python3 docs/study/fit/folders.py DATA SPLIT_JSON CELL
"""
import json, os, sys

data, split, cell = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
SUFFIXES = ["", "_mask", "_segmentation", "_lesion", "_manual1"]


def files(folder):
    out = {}
    for f in os.listdir(folder):
        stem = os.path.splitext(f)[0]
        for suffix in sorted(SUFFIXES, key=len, reverse=True):
            if suffix and stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        out.setdefault(stem, f)
    return out


images, masks = files(os.path.join(data, "images")), files(os.path.join(data, "masks"))
for part, ids in [("labelled", split["train"] + split["val"]), ("test", split["test"])]:
    for kind, found in [("images", images), ("masks", masks)]:
        dst = os.path.join(cell, part, kind)
        os.makedirs(dst, exist_ok=True)
        for case in ids:
            link = os.path.join(dst, found[case])
            if not os.path.lexists(link):
                os.symlink(os.path.join(data, kind, found[case]), link)
