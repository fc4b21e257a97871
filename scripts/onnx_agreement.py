"""Pixel agreement of an exported ONNX model's masks with `genseg predict`'s on a folder of
images (decoded here by PIL, EXIF orientation applied) and predict's masks of them.

Usage: python scripts/onnx_agreement.py MODEL.onnx IMAGES PRED"""
import os, sys
import numpy as np
import onnxruntime
from PIL import Image, ImageOps
model, images, pred = sys.argv[1:4]
session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
same = total = differ_images = 0
for name in sorted(os.listdir(images)):
    img = ImageOps.exif_transpose(Image.open(os.path.join(images, name))).convert("RGB")
    pixels = np.asarray(img).transpose(2, 0, 1)[None].copy()
    mask = session.run(["mask"], {"pixels": pixels})[0][0, 0] > 0
    ours = np.asarray(Image.open(os.path.join(pred, os.path.splitext(name)[0] + ".png"))) > 127
    same += (mask == ours).sum(); total += mask.size; differ_images += (mask != ours).any()
print(f"{len(os.listdir(images))} images, {total} pixels: agreement {100 * same / total:.5f} %, "
      f"{total - same} pixels differ, in {differ_images} images")
