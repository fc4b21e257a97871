"""A genseg run's U-Net as a TorchScript or ONNX file (`genseg export` calls this, then checks it).

Usage: python scripts/export.py RUN OUT torchscript
       python scripts/export.py RUN OUT onnx IMAGES.npy PROBS.npy

Rebuilds the network with the PyTorch definition of bench/reference.py (one place for both),
loads RUN/model.safetensors into it (read here without the safetensors package) and exports it
in eval mode with the preprocessing it expects: TorchScript (traced) with extra file
`genseg.json`; ONNX (opset 17, batch axis dynamic) with metadata property `genseg`, then runs
the file in onnxruntime on IMAGES.npy and writes the probabilities to PROBS.npy for genseg to
compare with its own. 2-D U-Nets with transposed up-sampling only (the default);
deep-supervision heads are training aids and are left out.
"""
import json, os, sys, warnings

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from reference import UNet  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402

run, out, fmt = sys.argv[1], sys.argv[2], sys.argv[3]
spec = json.load(open(os.path.join(run, "model.json")))
unet = spec["unet"]
if unet.get("dims", 2) != 2 or spec.get("volume_shape"):
    sys.exit(f"{run}: a 3-D model; export handles 2-D U-Nets")
if unet["upsampling"] != "transposed":
    sys.exit(f"{run}: --upsampling {unet['upsampling']}; export handles transposed up-sampling")


LAYER = {"c1": "0", "b1": "1", "c2": "3", "b2": "4"}


def torch_name(ours, depth):
    """genseg's variable name -> the reference module's state_dict key (None: not part of inference)."""
    block, *rest = ours.split(".")
    if block == "inc":
        return ".".join(["inc", LAYER[rest[0]], *rest[1:]])
    if block.startswith("down"):
        return ".".join([f"downs.{int(block[4:]) - 1}", LAYER[rest[0]], *rest[1:]])
    if block.startswith("up"):
        j = depth - 1 - int(block[2:])
        if rest[0] == "up":
            return ".".join([f"ups.{j}", *rest[1:]])
        return ".".join([f"convs.{j}", LAYER[rest[1]], *rest[2:]])
    if block == "head":
        return ".".join(["head", *rest])
    if block.startswith("aux"):
        return None
    sys.exit(f"{run}: variable {ours} has no counterpart in the reference U-Net")


net = UNet(unet["in_channels"], unet["width"], unet["depth"], unet["out_channels"])
state = {}
for name, t in read_safetensors(os.path.join(run, "model.safetensors")).items():
    key = torch_name(name, unet["depth"])
    if key is not None:
        state[key] = t
missing, unexpected = net.load_state_dict(state, strict=False)
missing = [k for k in missing if not k.endswith("num_batches_tracked")]
if missing or unexpected:
    sys.exit(f"{run}: weights do not match the reference U-Net (missing {missing}, unexpected {unexpected})")
net.eval()
size = spec["size"]
example = torch.rand(1, unet["in_channels"], size, size)
meta = {
    "input": f"float32 [N, {unet['in_channels']}, {size}, {size}]: "
    + ("RGB" if unet["in_channels"] == 3 else "grey")
    + f" images resized to {size}x{size} (bilinear), intensities scaled to [0, 1]",
    "output": f"logits [N, {unet['out_channels']}, {size}, {size}]; sigmoid > 0.5 is foreground, one channel per label",
    "labels": spec.get("labels", [1]),
    "resize_back": "upsample the probabilities to the original size (bilinear), then threshold",
    "torch": torch.__version__,
}
if fmt == "torchscript":
    torch.jit.save(torch.jit.trace(net, example), out, _extra_files={"genseg.json": json.dumps(meta)})
elif fmt == "onnx":
    import numpy as np
    import onnx
    import onnxruntime

    with warnings.catch_warnings():
        # The TorchScript-based exporter: the torch.export one needs onnxscript, not installed.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (example,), out, dynamo=False, opset_version=17, input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    model = onnx.load(out)
    model.metadata_props.add(key="genseg", value=json.dumps(meta))
    onnx.save(model, out)
    images = np.load(sys.argv[4]).astype(np.float32)
    logits = onnxruntime.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"image": images})[0]
    np.save(sys.argv[5], 1.0 / (1.0 + np.exp(-logits.astype(np.float64))))
else:
    sys.exit(f"unknown format {fmt}: torchscript or onnx")
print(json.dumps(meta))
