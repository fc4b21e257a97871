"""PyTorch reference of the training steps timed by `genseg bench` (our own code, same networks).

unet: milesial-style U-Net (double 3x3 conv + BN + ReLU, max-pool, 2x2 transposed conv up),
      BCE-with-logits + batch soft Dice, Adam.
gan:  Pix2Pix U-Net generator with mixed up-convs (4/6/8 kernels, fused into one 8x8 kernel or
      three transposed convs) + 70x70 PatchGAN; one D step then one G step, Adam(0.5, 0.999).
deeplab: DeepLabV3+ (genseg's models/deeplab.rs): torchvision's ResNet-18/50 with layer4 dilated
      (output stride 16), ASPP 6/12/18 + image pooling, 48-channel low-level decoder, no dropout;
      BCE + Dice, Adam.
predict: the U-Net in eval mode under inference_mode, sigmoid probabilities, `--batch` images
      at a time (genseg's `bench predict`).
Prints one JSON line: {"what", "ms_per_step"} (predict also "images_per_s").
"""
import argparse, json, time
import torch
import torch.nn as nn
import torch.nn.functional as F


def double_conv(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class UNet(nn.Module):
    """genseg's 2-D U-Net (transposed up-sampling); scripts/export.py loads trained weights into it."""

    def __init__(self, cin, width, depth, cout=1):
        super().__init__()
        ch = [width << i for i in range(depth)]
        self.inc = double_conv(cin, ch[0])
        self.downs = nn.ModuleList([double_conv(ch[i - 1], ch[i]) for i in range(1, depth)])
        self.ups = nn.ModuleList([nn.ConvTranspose2d(ch[i], ch[i] // 2, 2, stride=2) for i in range(depth - 1, 0, -1)])
        self.convs = nn.ModuleList([double_conv(ch[i], ch[i - 1]) for i in range(depth - 1, 0, -1)])
        self.head = nn.Conv2d(ch[0], cout, 1)

    def forward(self, x):
        skips = [self.inc(x)]
        for d in self.downs:
            skips.append(d(F.max_pool2d(skips[-1], 2)))
        h = skips.pop()
        for up, conv in zip(self.ups, self.convs):
            h = conv(torch.cat([skips.pop(), up(h)], 1))
        return self.head(h)


def resnet_os16(backbone):
    """torchvision's ResNet with layer4's stride replaced by dilation 2, as genseg's encoder:
    torchvision's own option for ResNet-50; for ResNet-18's basic blocks (which torchvision
    refuses to dilate) the first block keeps dilation 1 and the second dilates both convs."""
    import torchvision
    if backbone == "resnet50":
        return torchvision.models.resnet50(replace_stride_with_dilation=[False, False, True])
    m = torchvision.models.resnet18()
    first, second = m.layer4[0], m.layer4[1]
    first.conv1.stride = (1, 1)
    first.downsample[0].stride = (1, 1)
    for conv in (second.conv1, second.conv2):
        conv.dilation, conv.padding = (2, 2), (2, 2)
    return m


def conv_bn(cin, cout, k, dilation=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=dilation * (k - 1) // 2, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class DeepLabV3Plus(nn.Module):
    def __init__(self, backbone, cin=3, cout=1):
        super().__init__()
        r = resnet_os16(backbone)
        if cin != 3:
            r.conv1 = nn.Conv2d(cin, 64, 7, 2, 3, bias=False)
        self.stem = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool)
        self.layer1, self.deep = r.layer1, nn.Sequential(r.layer2, r.layer3, r.layer4)
        high, low = (512, 64) if backbone == "resnet18" else (2048, 256)
        self.aspp = nn.ModuleList([conv_bn(high, 256, 1)] + [conv_bn(high, 256, 3, d) for d in (6, 12, 18)])
        self.pool = conv_bn(high, 256, 1)
        self.project = conv_bn(5 * 256, 256, 1)
        self.reduce = conv_bn(low, 48, 1)
        self.refine = nn.Sequential(conv_bn(304, 256, 3), conv_bn(256, 256, 3))
        self.classifier = nn.Conv2d(256, cout, 1)

    def forward(self, x):
        low = self.layer1(self.stem(x))
        high = self.deep(low)
        pooled = self.pool(F.adaptive_avg_pool2d(high, 1))
        branches = [b(high) for b in self.aspp] + [F.interpolate(pooled, size=high.shape[2:], mode="bilinear")]
        context = self.project(torch.cat(branches, 1))
        low = self.reduce(low)
        h = torch.cat([F.interpolate(context, size=low.shape[2:], mode="bilinear"), low], 1)
        return F.interpolate(self.classifier(self.refine(h)), size=x.shape[2:], mode="bilinear")


def seg_loss(logits, y):
    p = torch.sigmoid(logits)
    inter = (p * y).sum()
    return F.binary_cross_entropy_with_logits(logits, y) + 1 - (2 * inter + 1) / (p.sum() + y.sum() + 1)


class MixedUp(nn.Module):
    def __init__(self, cin, cout, bias, fused):
        super().__init__()
        self.k = nn.ParameterList([nn.Parameter(torch.randn(cin, cout, k, k) * 0.02) for k in (4, 6, 8)])
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.fused = fused

    def forward(self, x, w):
        if self.fused:
            kernel = sum(w[i] * F.pad(k, [p] * 4) for i, (k, p) in enumerate(zip(self.k, (2, 1, 0))))
            return F.conv_transpose2d(x, kernel, self.bias, stride=2, padding=3)
        out = sum(w[i] * F.conv_transpose2d(x, k, None, stride=2, padding=p) for i, (k, p) in enumerate(zip(self.k, (1, 2, 3))))
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


class Generator(nn.Module):
    def __init__(self, ngf, size, out_nc, fused):
        super().__init__()
        L = size.bit_length() - 1
        ch = lambda i: ngf * (1 << min(i, 3))
        self.L = L
        self.down = nn.ModuleList([nn.Conv2d(1 if i == 0 else ch(i - 1), ch(i), 4, 2, 1, bias=False) for i in range(L)])
        self.dbn = nn.ModuleList([nn.BatchNorm2d(ch(i)) if 0 < i < L - 1 else nn.Identity() for i in range(L)])
        self.up = nn.ModuleList([MixedUp(ch(i) if i == L - 1 else 2 * ch(i), out_nc if i == 0 else ch(i - 1), i == 0, fused) for i in range(L)])
        self.ubn = nn.ModuleList([nn.BatchNorm2d(ch(i - 1)) if i > 0 else nn.Identity() for i in range(L)])
        self.alpha = nn.Parameter(torch.randn(L, 3) * 1e-3)

    def forward(self, m):
        w = torch.softmax(self.alpha, 1)
        enc = []
        for i in range(self.L):
            x = m if i == 0 else F.leaky_relu(enc[-1], 0.2)
            enc.append(self.dbn[i](self.down[i](x)))
        h = enc.pop()
        for i in reversed(range(self.L)):
            y = self.up[i](F.relu(h), w[i])
            if i == 0:
                return torch.tanh(y)
            y = self.ubn[i](y)
            if 4 <= i <= self.L - 2:
                y = F.dropout(y, 0.5, True)
            h = torch.cat([enc.pop(), y], 1)


def patchgan(cin, ndf):
    return nn.Sequential(nn.Conv2d(cin, ndf, 4, 2, 1), nn.LeakyReLU(0.2),
                         nn.Conv2d(ndf, 2 * ndf, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * ndf), nn.LeakyReLU(0.2),
                         nn.Conv2d(2 * ndf, 4 * ndf, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * ndf), nn.LeakyReLU(0.2),
                         nn.Conv2d(4 * ndf, 8 * ndf, 4, 1, 1, bias=False), nn.BatchNorm2d(8 * ndf), nn.LeakyReLU(0.2),
                         nn.Conv2d(8 * ndf, 1, 4, 1, 1))


def timed(step, steps):
    for _ in range(2):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) * 1000 / steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["unet", "deeplab", "gan", "predict"])
    ap.add_argument("--backbone", default="resnet18", choices=["resnet18", "resnet50"])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--separate-ops", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    b, s = a.batch, a.size
    dev = torch.device(a.device)
    torch.set_default_device(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if a.what == "predict":
        net = UNet(3, a.width, a.depth).eval()
        x = torch.rand(b, 3, s, s)

        def step():
            with torch.inference_mode():
                torch.sigmoid(net(x))
            sync()
        ms = timed(step, a.steps)
        print(json.dumps({"what": f"predict unet w{a.width} d{a.depth} {s}px b{b}", "ms_per_step": ms,
                          "images_per_s": b * 1000 / ms, "torch": torch.__version__, "threads": torch.get_num_threads()}))
        return
    if a.what in ("unet", "deeplab"):
        net = UNet(3, a.width, a.depth) if a.what == "unet" else DeepLabV3Plus(a.backbone)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        x = torch.rand(b, 3, s, s)
        y = (torch.rand(b, 1, s, s) > 0.7).float()

        def step():
            opt.zero_grad(set_to_none=True)
            seg_loss(net(x), y).backward()
            opt.step()
            sync()
        what = f"unet w{a.width} d{a.depth} {s}px b{b}" if a.what == "unet" else f"deeplabv3plus {a.backbone} {s}px b{b}"
    else:
        g = Generator(a.width, s, 3, not a.separate_ops)
        d = patchgan(4, a.width)
        og = torch.optim.Adam([p for n, p in g.named_parameters() if n != "alpha"], 2e-4, betas=(0.5, 0.999))
        od = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
        x = torch.rand(b, 3, s, s) * 2 - 1
        m = (torch.rand(b, 1, s, s) > 0.7).float()
        bce = nn.BCEWithLogitsLoss()

        def step():
            fake = g(m)
            pf, pr = d(torch.cat([m, fake.detach()], 1)), d(torch.cat([m, x], 1))
            ld = 0.5 * (bce(pf, torch.zeros_like(pf)) + bce(pr, torch.ones_like(pr)))
            od.zero_grad(set_to_none=True)
            ld.backward()
            od.step()
            pf = d(torch.cat([m, fake], 1))
            lg = bce(pf, torch.ones_like(pf)) + 100 * (fake - x).abs().mean()
            og.zero_grad(set_to_none=True)
            # Only G's weights are stepped; D's gradients from this pass are discarded, as genseg does.
            grads = torch.autograd.grad(lg, [p for n, p in g.named_parameters() if n != "alpha"])
            for p, gr in zip([p for n, p in g.named_parameters() if n != "alpha"], grads):
                p.grad = gr
            og.step()
            sync()
        what = f"gan ngf{a.width} {s}px b{b} {'three-conv' if a.separate_ops else 'fused'}"
    params = sum(p.numel() for p in (net.parameters() if a.what in ("unet", "deeplab") else g.parameters()))
    print(json.dumps({"what": what, "ms_per_step": timed(step, a.steps), "params": params, "torch": torch.__version__,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
