"""PyTorch reference of the training steps timed by `genseg bench` (our own code, same networks).

unet: milesial-style U-Net (double 3x3 conv + BN + ReLU, max-pool, 2x2 transposed conv up),
      BCE-with-logits + batch soft Dice, Adam.
gan:  Pix2Pix U-Net generator with mixed up-convs (4/6/8 kernels, fused into one 8x8 kernel or
      three transposed convs) + 70x70 PatchGAN; one D step then one G step, Adam(0.5, 0.999).
deeplab: DeepLabV3+ (genseg's models/deeplab.rs): torchvision's ResNet-18/50 with layer4 dilated
      (output stride 16), ASPP 6/12/18 + image pooling, 48-channel low-level decoder, no dropout;
      BCE + Dice, Adam.
swin-unet: Swin-UNet (genseg's models/swin_unet.rs, Swin-T: embedding 96, depths 2/2/2/2, heads
      3/6/12/24, `--window`), no drop path; BCE + Dice, Adam.
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


class SwinBlock(nn.Module):
    def __init__(self, dim, heads, grid, window, shifted):
        super().__init__()
        self.grid, self.heads = grid, heads
        self.w = min(window, *grid)
        self.shift = window // 2 if shifted and self.w == window and min(grid) > window else 0
        span = 2 * self.w - 1
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.table = nn.Parameter(torch.randn(span * span, heads) * 0.02)
        cells = [(i, j) for i in range(self.w) for j in range(self.w)]
        self.register_buffer("index", torch.tensor([(a - c + self.w - 1) * span + (b - d + self.w - 1)
                                                    for a, b in cells for c, d in cells]))
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        mask = None
        if self.shift:
            region = lambda i, side: 0 if i < side - self.w else (1 if i < side - self.shift else 2)
            ids = torch.tensor([[3 * region(i, grid[0]) + region(j, grid[1]) for j in range(grid[1])]
                                for i in range(grid[0])], dtype=torch.float32)
            win = self.partition(ids.view(1, *grid, 1)).squeeze(-1)
            mask = (win.unsqueeze(1) != win.unsqueeze(2)).float() * -100.0
        self.register_buffer("mask", mask)

    def partition(self, x):
        b, h, w, c = x.shape
        s = self.w
        return x.view(b, h // s, s, w // s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, s * s, c)

    def forward(self, x):
        b, l, c = x.shape
        h, w = self.grid
        t = self.norm1(x).view(b, h, w, c)
        if self.shift:
            t = t.roll((-self.shift, -self.shift), (1, 2))
        win = self.partition(t)
        n, hd = win.shape[1], c // self.heads
        q, k, v = self.qkv(win).view(-1, n, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        attn = (q * hd ** -0.5) @ k.transpose(-2, -1) + self.table[self.index].view(n, n, -1).permute(2, 0, 1)
        if self.mask is not None:
            nw = self.mask.shape[0]
            attn = (attn.view(-1, nw, self.heads, n, n) + self.mask[None, :, None]).view(-1, self.heads, n, n)
        out = self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(-1, n, c))
        s = self.w
        t = out.view(b, h // s, w // s, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        if self.shift:
            t = t.roll((self.shift, self.shift), (1, 2))
        x = x + t.reshape(b, l, c)
        return x + self.mlp(self.norm2(x))


class Expand(nn.Module):
    def __init__(self, dim, grid, scale):
        super().__init__()
        self.grid, self.scale = grid, scale
        self.expand = nn.Linear(dim, 2 * dim if scale == 2 else 16 * dim, bias=False)
        self.norm = nn.LayerNorm(dim // 2 if scale == 2 else dim)

    def forward(self, x):
        t = self.expand(x)
        b, _, c = t.shape
        (h, w), s = self.grid, self.scale
        return self.norm(t.view(b, h, w, s, s, c // (s * s)).permute(0, 1, 3, 2, 4, 5).reshape(b, -1, c // (s * s)))


class SwinUNet(nn.Module):
    def __init__(self, cin, size, window, cout=1):
        super().__init__()
        dim = lambda i: 96 << i
        grid = lambda i: (size // (4 << i), size // (4 << i))
        heads = [3, 6, 12, 24]
        blocks = lambda i: nn.ModuleList([SwinBlock(dim(i), heads[i], grid(i), window, j % 2 == 1) for j in range(2)])
        self.size = size
        self.embed, self.embed_norm = nn.Conv2d(cin, 96, 4, stride=4), nn.LayerNorm(96)
        self.stages = nn.ModuleList([blocks(i) for i in range(4)])
        self.merges = nn.ModuleList([nn.Sequential(nn.LayerNorm(4 * dim(i)), nn.Linear(4 * dim(i), 2 * dim(i), bias=False))
                                     for i in range(3)])
        self.norm, self.bottleneck_up = nn.LayerNorm(dim(3)), Expand(dim(3), grid(3), 2)
        self.fuse = nn.ModuleList([nn.Linear(2 * dim(i), dim(i)) for i in (2, 1, 0)])
        self.up_stages = nn.ModuleList([blocks(i) for i in (2, 1, 0)])
        self.expands = nn.ModuleList([Expand(dim(i), grid(i), 2) for i in (2, 1)])
        self.norm_up, self.final_up = nn.LayerNorm(96), Expand(96, grid(0), 4)
        self.output = nn.Conv2d(96, cout, 1, bias=False)
        self.grids = [grid(i) for i in range(4)]

    def forward(self, x):
        b = x.shape[0]
        t = self.embed_norm(self.embed(x).flatten(2).transpose(1, 2))
        skips = []
        for i, stage in enumerate(self.stages):
            skips.append(t)
            for blk in stage:
                t = blk(t)
            if i < 3:
                h, w = self.grids[i]
                v = t.view(b, h, w, -1)
                t = self.merges[i](torch.cat([v[:, 0::2, 0::2], v[:, 1::2, 0::2], v[:, 0::2, 1::2], v[:, 1::2, 1::2]], -1)
                                   .view(b, -1, 4 * v.shape[-1]))
        t = self.bottleneck_up(self.norm(t))
        for k, (fuse, stage) in enumerate(zip(self.fuse, self.up_stages)):
            t = fuse(torch.cat([t, skips[2 - k]], -1))
            for blk in stage:
                t = blk(t)
            if k < 2:
                t = self.expands[k](t)
        t = self.final_up(self.norm_up(t))
        return self.output(t.view(b, self.size, self.size, 96).permute(0, 3, 1, 2))


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
    ap.add_argument("what", choices=["unet", "deeplab", "swin-unet", "gan", "predict"])
    ap.add_argument("--window", type=int, default=7)
    ap.add_argument("--backbone", default="resnet18", choices=["resnet18", "resnet50"])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--separate-ops", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--channels-last", action="store_true",
                    help="feed the network channels-last input, as genseg does on the CPU for U-Net and DeepLab")
    ap.add_argument("--amp", action="store_true",
                    help="bf16 autocast around forward passes and losses (float32 weights), as genseg --precision bf16")
    a = ap.parse_args()
    layout = torch.channels_last if a.channels_last else torch.contiguous_format
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    b, s = a.batch, a.size
    dev = torch.device(a.device)
    torch.set_default_device(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    amp = lambda: torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.amp)
    tag = " bf16" if a.amp else ""
    if a.what == "predict":
        net = UNet(3, a.width, a.depth).eval()
        x = torch.rand(b, 3, s, s).contiguous(memory_format=layout)

        def step():
            with torch.inference_mode():
                with amp():
                    logits = net(x)
                torch.sigmoid(logits.float())
            sync()
        ms = timed(step, a.steps)
        print(json.dumps({"what": f"predict unet w{a.width} d{a.depth} {s}px b{b}{tag}", "ms_per_step": ms,
                          "images_per_s": b * 1000 / ms, "torch": torch.__version__, "threads": torch.get_num_threads()}))
        return
    if a.what in ("unet", "deeplab", "swin-unet"):
        net = {"unet": lambda: UNet(3, a.width, a.depth), "deeplab": lambda: DeepLabV3Plus(a.backbone),
               "swin-unet": lambda: SwinUNet(3, s, a.window)}[a.what]()
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        x = torch.rand(b, 3, s, s).contiguous(memory_format=layout)
        y = (torch.rand(b, 1, s, s) > 0.7).float()

        def step():
            opt.zero_grad(set_to_none=True)
            with amp():
                loss = seg_loss(net(x).float(), y)
            loss.backward()
            opt.step()
            sync()
        what = {"unet": f"unet w{a.width} d{a.depth} {s}px b{b}{tag}", "deeplab": f"deeplabv3plus {a.backbone} {s}px b{b}",
                "swin-unet": f"swin-unet window {a.window} {s}px b{b}"}[a.what]
    else:
        g = Generator(a.width, s, 3, not a.separate_ops)
        d = patchgan(4, a.width)
        og = torch.optim.Adam([p for n, p in g.named_parameters() if n != "alpha"], 2e-4, betas=(0.5, 0.999))
        od = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
        x = torch.rand(b, 3, s, s) * 2 - 1
        m = (torch.rand(b, 1, s, s) > 0.7).float()
        bce = nn.BCEWithLogitsLoss()

        def step():
            with amp():
                fake = g(m).float()
                pf, pr = d(torch.cat([m, fake.detach()], 1)).float(), d(torch.cat([m, x], 1)).float()
                ld = 0.5 * (bce(pf, torch.zeros_like(pf)) + bce(pr, torch.ones_like(pr)))
            od.zero_grad(set_to_none=True)
            ld.backward()
            od.step()
            with amp():
                pf = d(torch.cat([m, fake], 1)).float()
            lg = bce(pf, torch.ones_like(pf)) + 100 * (fake - x).abs().mean()
            og.zero_grad(set_to_none=True)
            # Only G's weights are stepped; D's gradients from this pass are discarded, as genseg does.
            grads = torch.autograd.grad(lg, [p for n, p in g.named_parameters() if n != "alpha"])
            for p, gr in zip([p for n, p in g.named_parameters() if n != "alpha"], grads):
                p.grad = gr
            og.step()
            sync()
        what = f"gan ngf{a.width} {s}px b{b} {'three-conv' if a.separate_ops else 'fused'}{tag}"
    params = sum(p.numel() for p in (net.parameters() if a.what != "gan" else g.parameters()))
    print(json.dumps({"what": what, "ms_per_step": timed(step, a.steps), "params": params, "torch": torch.__version__,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
