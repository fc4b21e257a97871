"""Reproduces the libtorch 2.11 CPU bug genseg works around (src/runtime.rs, disable_onednn):
oneDNN's 3-D convolution with an 8-wide, stride-2 kernel returns NaN gradients at random for some
shapes; the same computation with oneDNN switched off never does.

Usage: python3 scripts/onednn_nan.py   (prints NaN counts out of the trials, with and without oneDNN)
"""
import torch


TRIALS = 50


def nan_trials(onednn: bool, cout: int) -> int:
    bad = 0
    with torch.backends.mkldnn.flags(enabled=onednn):
        for _ in range(TRIALS):
            x = torch.randn(2, 16, 8, 12, 8, requires_grad=True)
            w = (torch.randn(cout, 16, 8, 8, 8) * 0.02).requires_grad_()
            y = torch.nn.functional.conv3d(x.relu(), w, stride=2, padding=3)
            y.square().sum().backward()
            bad += bool(torch.isnan(w.grad).any() or torch.isnan(x.grad).any())
    return bad


if __name__ == "__main__":
    torch.manual_seed(0)
    print(f"torch {torch.__version__}: conv3d k8 s2 p3, input 2x16x8x12x8; the count varies run to run")
    for cout in (8, 16, 32):
        on, off = nan_trials(True, cout), nan_trials(False, cout)
        print(f"-> {cout} channels: NaN gradients in {on}/{TRIALS} trials with oneDNN, {off}/{TRIALS} without")
