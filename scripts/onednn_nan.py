"""Reproduces the libtorch 2.11 CPU bug genseg works around (src/models/mixed_op.rs): oneDNN's
3-D convolution with an 8-wide, stride-2 kernel returns NaN gradients at random for some shapes;
the same computation with oneDNN switched off never does, nor does it in float64 (which oneDNN
does not take, so libtorch's generic kernels run it): genseg's 3-D mixed ops on the CPU.

Usage: python3 scripts/onednn_nan.py   (NaN counts out of the trials: oneDNN on, off, and float64)
"""
import torch


TRIALS = 50


def nan_trials(onednn: bool, cout: int, dtype=torch.float32) -> int:
    bad = 0
    with torch.backends.mkldnn.flags(enabled=onednn):
        for _ in range(TRIALS):
            x = torch.randn(2, 16, 8, 12, 8, dtype=dtype, requires_grad=True)
            w = (torch.randn(cout, 16, 8, 8, 8, dtype=dtype) * 0.02).requires_grad_()
            y = torch.nn.functional.conv3d(x.relu(), w, stride=2, padding=3)
            y.square().sum().backward()
            bad += bool(torch.isnan(w.grad).any() or torch.isnan(x.grad).any())
    return bad


if __name__ == "__main__":
    torch.manual_seed(0)
    print(f"torch {torch.__version__}: conv3d k8 s2 p3, input 2x16x8x12x8; the count varies run to run")
    for cout in (8, 16, 32):
        on, off, wide = nan_trials(True, cout), nan_trials(False, cout), nan_trials(True, cout, torch.float64)
        print(f"-> {cout} channels: NaN gradients in {on}/{TRIALS} trials with oneDNN, {off}/{TRIALS} without, "
              f"{wide}/{TRIALS} in float64 (oneDNN on)")
