"""Why DARTS' finite-difference hypergradient misses on genseg's U-Net (issue 13, docs/RESULTS.md
section 10): the image-space mixed derivative d/dx (grad_theta L(x) . v) that both hypergradient
modes compute (src/train/hypergrad.rs), by central difference at perturbation norm `scale` and by
double backward, on the bench's U-Net (bench/reference.py, w16 d4, 64 px, batch 4, random
blob masks). Cosine and norm ratio fd/exact per scale, with BatchNorm in train mode (batch
statistics, as training runs) and in eval mode (running statistics), in float32 and float64.

Usage: .venv/bin/python scripts/fd_batchnorm.py [--batches 4] [--threads 1]
"""
import argparse, os, sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from reference import UNet, seg_loss  # noqa: E402


def blobs(n, size, gen):
    coarse = torch.randn(n, 1, size // 4, size // 4, generator=gen)
    return (F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False) > 0.3).double()


def mixed(net, x, m, v, scale, exact):
    params = list(net.parameters())
    if exact:
        x = x.detach().requires_grad_(True)
        g = torch.autograd.grad(seg_loss(net(x), m), params, create_graph=True)
        dot = sum((a * b).sum() for a, b in zip(g, v))
        return torch.autograd.grad(dot, x)[0]
    norm = torch.sqrt(sum((t * t).sum() for t in v))
    eps = scale / norm

    def image_grad(sign):
        with torch.no_grad():
            for p, d in zip(params, v):
                p.add_(sign * eps * d)
        xx = x.detach().requires_grad_(True)
        out = torch.autograd.grad(seg_loss(net(xx), m), xx)[0]
        with torch.no_grad():
            for p, d in zip(params, v):
                p.sub_(sign * eps * d)
        return out

    return (image_grad(1.0) - image_grad(-1.0)) / (2 * eps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    scales = [1.0, 0.1, 0.01, 1e-3]
    print("| BatchNorm | dtype | " + " | ".join(f"scale {s:g}: cosine, norm ratio" for s in scales) + " |")
    print("|---|---|" + "---|" * len(scales))
    for bn_mode in ("train", "eval"):
        for dtype in (torch.float32, torch.float64):
            acc = [[0.0, 0.0] for _ in scales]
            for b in range(a.batches):
                gen = torch.Generator().manual_seed(b)
                torch.manual_seed(b)
                net = UNet(3, 16, 4).to(dtype)
                # Running statistics as after some training: one pass over other batches.
                net.train()
                with torch.no_grad():
                    for _ in range(3):
                        mm = blobs(4, 64, gen).to(dtype)
                        net(mm * 0.6 + torch.rand(4, 3, 64, 64, generator=gen, dtype=torch.float64).to(dtype) * 0.4)
                net.train(bn_mode == "train")
                m = blobs(4, 64, gen).to(dtype)
                x = (m * 0.6 + torch.rand(4, 3, 64, 64, generator=gen, dtype=torch.float64).to(dtype) * 0.4)
                vm = blobs(4, 64, gen).to(dtype)
                vx = vm * 0.6 + torch.rand(4, 3, 64, 64, generator=gen, dtype=torch.float64).to(dtype) * 0.4
                v = torch.autograd.grad(seg_loss(net(vx), vm), list(net.parameters()))
                exact = mixed(net, x, m, v, 0.0, True).flatten()
                for k, s in enumerate(scales):
                    fd = mixed(net, x, m, v, s, False).flatten()
                    acc[k][0] += float(F.cosine_similarity(fd, exact, dim=0)) / a.batches
                    acc[k][1] += float(fd.norm() / exact.norm()) / a.batches
            cells = " | ".join(f"{c:.2f}, {r:.2f}" for c, r in acc)
            print(f"| {bn_mode} | {str(dtype).split('.')[1]} | {cells} |")


if __name__ == "__main__":
    main()
