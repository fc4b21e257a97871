"""Writes one genseg run's split as an nnU-Net v2 raw dataset (scripts/nnunet_peer.sh drives it).

Usage: python3 scripts/nnunet_peer.py RUN NNUNET_RAW NNUNET_PREPROCESSED DATASET_ID

RUN is a genseg run folder (config.json: data folder and --size; split.json: train/val/test ids).
Images are resized to the run's size with bilinear filtering and masks with nearest neighbour, as
genseg does (image crate Triangle / Nearest), into Dataset{ID}_Genseg/imagesTr (training +
validation cases), labelsTr, imagesTs and labelsTs (the test cases, for `genseg evaluate`).
splits_final.json gives nnU-Net fold 0 = genseg's training cases, validated on genseg's
validation cases, so both tools see exactly the same labelled pairs.
"""
import json, os, sys
from PIL import Image

run, raw, preprocessed, dataset_id = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cfg = json.load(open(os.path.join(run, "config.json")))["config"]["data"]
split = json.load(open(os.path.join(run, "split.json")))
size, data = cfg["size"], cfg["data"]
name = f"Dataset{dataset_id:03d}_Genseg"
root = os.path.join(raw, name)


def find(folder, case, suffixes=("",)):
    for suffix in suffixes:
        for f in os.listdir(folder):
            stem, _ = os.path.splitext(f)
            if stem == case + suffix:
                return os.path.join(folder, f)
    sys.exit(f"{folder}: no file for case '{case}'")


def write(case, images, labels):
    image = Image.open(find(os.path.join(data, "images"), case)).convert("RGB")
    image.resize((size, size), Image.BILINEAR).save(os.path.join(root, images, f"{case}_0000.png"))
    mask_path = find(os.path.join(data, "masks"), case, [""] + cfg["mask_suffixes"])
    mask = Image.open(mask_path).convert("L").resize((size, size), Image.NEAREST)
    mask.point(lambda v: 1 if v > 127 else 0).save(os.path.join(root, labels, f"{case}.png"))


for folder in ["imagesTr", "labelsTr", "imagesTs", "labelsTs"]:
    os.makedirs(os.path.join(root, folder), exist_ok=True)
for case in split["train"] + split["val"]:
    write(case, "imagesTr", "labelsTr")
for case in split["test"]:
    write(case, "imagesTs", "labelsTs")
json.dump(
    {
        "channel_names": {"0": "R", "1": "G", "2": "B"},
        "labels": {"background": 0, "foreground": 1},
        "numTraining": len(split["train"]) + len(split["val"]),
        "file_ending": ".png",
    },
    open(os.path.join(root, "dataset.json"), "w"),
    indent=1,
)
os.makedirs(os.path.join(preprocessed, name), exist_ok=True)
json.dump([{"train": split["train"], "val": split["val"]}], open(os.path.join(preprocessed, name, "splits_final.json"), "w"))
print(f"{name}: {len(split['train'])} training, {len(split['val'])} validation, {len(split['test'])} test cases at {size} px")
