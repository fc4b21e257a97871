"""A genseg run's U-Net as a TorchScript or ONNX file (`genseg export` calls this, then checks it).

Usage: python scripts/export.py RUN OUT torchscript
       python scripts/export.py RUN OUT onnx PIXELS.npy...

RUN is a run folder, or a fit folder whose ensemble.json lists its fold runs: their U-Nets go
into one ONNX graph that averages their probabilities, as `genseg predict` does with a fit.

Rebuilds the network with the PyTorch definition of bench/reference.py (one place for both),
loads RUN/model.safetensors into it (read here without the safetensors package) and exports it
in eval mode. TorchScript (traced): the network alone, on images resized as extra file
`genseg.json` says. ONNX (opset 17): `genseg predict` end to end, so that a user who feeds pixels
gets its masks: uint8 pixels of any size in, the resizing to the network's side inside the graph
(the image crate's triangle filter that genseg resizes with, then rounding to whole pixel values
as genseg's 8-bit images), the network, and the probabilities resized back (bilinear) and
thresholded; metadata property `genseg` says the same. Then each PIXELS.npy is run in
onnxruntime and its probabilities written to PIXELS.npy's name with .probs.npy, for genseg to
compare with its own prediction. 2-D U-Nets with transposed up-sampling only (the default);
deep-supervision heads are training aids and are left out.
"""
import json, os, sys, warnings

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from reference import UNet  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402

run, out, fmt = sys.argv[1], sys.argv[2], sys.argv[3]
ensemble = json.load(open(os.path.join(run, "ensemble.json"))) if os.path.exists(os.path.join(run, "ensemble.json")) else None
members = [os.path.join(run, m) for m in ensemble["members"]] if ensemble else [run]
weights = (ensemble or {}).get("weights") or "model.safetensors"
spec = json.load(open(os.path.join(members[0], "model.json")))
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


def load_net(member):
    net = UNet(unet["in_channels"], unet["width"], unet["depth"], unet["out_channels"])
    state = {}
    for name, t in read_safetensors(os.path.join(member, weights)).items():
        key = torch_name(name, unet["depth"])
        if key is not None:
            state[key] = t
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        sys.exit(f"{member}: weights do not match the reference U-Net (missing {missing}, unexpected {unexpected})")
    return net.eval()


nets = [load_net(m) for m in members]
net = nets[0]
size = spec["size"]
example = torch.rand(1, unet["in_channels"], size, size)


def triangle_weights(n_in, n_out):
    """[n_out, n_in] weights of the image crate's Triangle resampling (imageops::sample), in its
    float32 order of operations: output pixel i is centred on input (i + 0.5) * ratio, the
    triangle widened by the ratio when shrinking, normalised over the input's pixels."""
    ratio = n_in.to(torch.float32) / n_out.to(torch.float32)
    sratio = torch.clamp(ratio, min=1.0)
    centre = (torch.arange(n_out, dtype=torch.float32) + 0.5) * ratio - 0.5
    d = (torch.arange(n_in, dtype=torch.float32)[None, :] - centre[:, None]) / sratio
    w = torch.relu(1.0 - d.abs())
    return w / w.sum(dim=1, keepdim=True)


class EndToEnd(torch.nn.Module):
    """genseg predict in one graph: uint8 pixels [N, C, H, W] of any size -> probabilities and
    masks [N, labels, H, W]."""

    def __init__(self, nets, size):
        super().__init__()
        self.nets, self.size = torch.nn.ModuleList(nets), size

    def forward(self, pixels):
        x = pixels.to(torch.float32)
        shape = torch._shape_as_tensor(pixels)  # traced as the input's own sizes, not constants
        h, w = shape[2], shape[3]
        s = torch.tensor(self.size)
        # Rows first, then columns, then whole pixel values: genseg's resize of an 8-bit image.
        x = torch.matmul(triangle_weights(h, s), x)
        x = torch.matmul(x, triangle_weights(w, s).transpose(0, 1))
        x = torch.floor(torch.clamp(x, 0.0, 255.0) + 0.5) / 255.0
        # The members' mean probability (one member: its own).
        probs = sum(torch.sigmoid(n(x)) for n in self.nets) / len(self.nets)
        probs = torch.nn.functional.interpolate(probs, size=(pixels.shape[2], pixels.shape[3]), mode="bilinear",
                                                align_corners=False)
        return probs, (probs > 0.5).to(torch.uint8)


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

    channels = "RGB" if unet["in_channels"] == 3 else "grey"
    meta = {
        "input": f"pixels: uint8 [N, {unet['in_channels']}, H, W], {channels}, any H and W (one size per call), as "
        "viewers show the image (EXIF orientation applied; a 16-bit image first scaled to 8 bits by its brightest "
        "value: round(v * 255 / max))",
        "output": f"probabilities: float32 [N, {unet['out_channels']}, H, W]; mask: uint8 [N, {unet['out_channels']}, "
        "H, W], 1 where the probability is above 0.5, one channel per label",
        "members": len(nets),
        "inside": f"the image resized to {size}x{size} with the triangle filter genseg uses (antialiased bilinear), "
        "rounded to whole pixel values, scaled to [0, 1]; the network (the mean of the members' probabilities for an ensemble); the probabilities resized back (bilinear)",
        "labels": spec.get("labels", [1]),
        "torch": torch.__version__,
    }
    example = torch.randint(0, 256, (1, unet["in_channels"], size + 7, size + 3), dtype=torch.uint8)
    with warnings.catch_warnings():
        # The TorchScript-based exporter: the torch.export one needs onnxscript, not installed.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        axes = {0: "batch", 2: "height", 3: "width"}
        torch.onnx.export(EndToEnd(nets, size), (example,), out, dynamo=False, opset_version=17,
                          input_names=["pixels"], output_names=["probabilities", "mask"],
                          dynamic_axes={"pixels": axes, "probabilities": axes, "mask": axes})
    model = onnx.load(out)
    model.metadata_props.add(key="genseg", value=json.dumps(meta))
    onnx.save(model, out)
    session = onnxruntime.InferenceSession(out, providers=["CPUExecutionProvider"])
    for pixels in sys.argv[4:]:
        probs = session.run(["probabilities"], {"pixels": np.load(pixels)})[0]
        np.save(pixels[: -len(".npy")] + ".probs.npy", probs.astype(np.float32))
else:
    sys.exit(f"unknown format {fmt}: torchscript or onnx")
print(json.dumps(meta))
