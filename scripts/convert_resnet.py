"""A torchvision ResNet's weights as genseg's `--init` file for DeepLabV3+'s encoder.

Usage: python scripts/convert_resnet.py STATE_DICT.pth OUT.safetensors

STATE_DICT.pth: `torch.save(model.state_dict(), ...)` of torchvision's resnet18 or resnet50 (for
instance downloaded with `torchvision.models.resnet50(weights="IMAGENET1K_V2")` on a machine with
internet access). genseg's encoder uses torchvision's variable names, so the conversion keeps every
tensor under the prefix `encoder.`, leaving out the classifier (`fc.*`) and BatchNorm's
`num_batches_tracked` counters. Train with the same `--backbone` and RGB input (`--channels 3`):
`genseg train DATA --model deeplabv3plus --backbone resnet50 --init OUT.safetensors ...`.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import write_safetensors  # noqa: E402

if len(sys.argv) != 3:
    sys.exit(__doc__)
source, out = sys.argv[1], sys.argv[2]
state = torch.load(source, map_location="cpu", weights_only=True)
if not isinstance(state, dict) or "conv1.weight" not in state:
    sys.exit(f"{source}: not a torchvision ResNet state_dict (no conv1.weight); save model.state_dict()")
kept = {
    f"encoder.{k}": v.float()
    for k, v in state.items()
    if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
}
write_safetensors(out, kept)
print(f"{out}: {len(kept)} tensors, {sum(v.numel() for v in kept.values())} values")
