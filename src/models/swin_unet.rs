//! Swin-UNet (Cao et al. 2021) as the reference implementation (HuCaoFighting/Swin-Unet, the
//! "expand_first" decoder) builds it, variable names included: 4x4 patch embedding with
//! LayerNorm; four stages of Swin blocks (window attention with a relative position bias, every
//! second block on windows shifted by half a window, with the attention mask of the cyclic shift;
//! MLP ratio 4, GELU) joined by patch merging; a mirrored decoder of patch expanding and Swin
//! blocks with skip connections (concatenation, then a linear layer back to the stage's width);
//! a final 4x patch expanding and a 1x1 convolution to the logits.
//!
//! Stochastic depth (drop path 0.2 in the reference's config) is left out: the hypergradient
//! compares several passes of one batch through the segmenter, which random drops would make
//! differ. The window shrinks to a stage's resolution where that is smaller (as the reference
//! does), so the parameter shapes depend on the image size, which the configuration carries.
use super::spatial::{perturbed, split_perturbed};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// Swin-T, the reference's encoder: embedding width 96, depths 2/2/2/2 (2/2/2 in the decoder),
/// 3/6/12/24 heads.
const EMBED_DIM: i64 = 96;
const DEPTHS: [usize; 4] = [2, 2, 2, 2];
const HEADS: [i64; 4] = [3, 6, 12, 24];
const PATCH: i64 = 4;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SwinUNetConfig {
    pub in_channels: i64,
    pub out_channels: i64,
    /// Image height and width.
    pub shape: [i64; 2],
    /// Attention window side (7 in the reference, for 224 px images).
    pub window: i64,
}

/// The token grid of stage `i` (0-3) for an image of `shape`.
fn grid(shape: [i64; 2], i: usize) -> [i64; 2] {
    let f = PATCH << i;
    [shape[0] / f, shape[1] / f]
}

/// The window of a stage: the configured side, or the whole grid where that is smaller (the
/// reference's rule; the shift is then 0).
fn stage_window(window: i64, grid: [i64; 2]) -> i64 {
    window.min(grid[0].min(grid[1]))
}

impl SwinUNetConfig {
    fn fits(&self, shape: [i64; 2]) -> bool {
        let f = PATCH << 3;
        shape.iter().all(|&s| s > 0 && s % f == 0)
            && (0..4).all(|i| {
                let g = grid(shape, i);
                let w = stage_window(self.window, g);
                g[0] % w == 0 && g[1] % w == 0
            })
    }

    /// Sides must reach every stage as whole windows (the patch grid halves three times).
    pub fn validate(&self, shape: &[i64]) -> Result<()> {
        if shape.len() != 2 {
            bail!("Swin-UNet is a 2-D network; use --model unet for volumes");
        }
        if self.window < 1 {
            bail!("--window {}: must be at least 1", self.window);
        }
        if !self.fits([shape[0], shape[1]]) {
            let valid: Vec<String> =
                (1..=32).map(|k| 32 * k).filter(|&s| self.fits([s, s])).map(|s| s.to_string()).collect();
            bail!(
                "input shape {shape:?}: Swin-UNet with --window {} needs sides that are multiples of 32 whose patch grid \
                 (side / 4, halved three times) splits into whole windows at every stage; square sizes up to 1024 that \
                 work: {}; change --size or --window (e.g. --window 4 for 64 px)",
                self.window,
                if valid.is_empty() { "none".to_string() } else { valid.join(", ") }
            );
        }
        Ok(())
    }
}

fn linear(p: nn::Path, cin: i64, cout: i64, bias: bool) -> nn::Linear {
    let ws_init = nn::Init::Randn { mean: 0.0, stdev: 0.02 };
    let bs_init = bias.then_some(nn::Init::Const(0.0));
    nn::linear(p, cin, cout, nn::LinearConfig { ws_init, bs_init, bias })
}

fn layer_norm(p: nn::Path, dim: i64) -> nn::LayerNorm {
    nn::layer_norm(p, vec![dim], Default::default())
}

/// [B, H, W, C] -> [B * windows, w * w, C].
fn partition(x: &Tensor, w: i64) -> Tensor {
    let [b, h, wd, c] = x.size()[..] else { unreachable!("a [B, H, W, C] tensor") };
    x.view([b, h / w, w, wd / w, w, c]).permute([0, 1, 3, 2, 4, 5]).contiguous().view([-1, w * w, c])
}

/// The inverse of [`partition`] for a [B, H, W, C] result.
fn reverse(windows: &Tensor, w: i64, h: i64, wd: i64) -> Tensor {
    let c = windows.size()[2];
    windows.view([-1, h / w, wd / w, w, w, c]).permute([0, 1, 3, 2, 4, 5]).contiguous().view([-1, h, wd, c])
}

#[derive(Debug)]
struct WindowAttention {
    qkv: nn::Linear,
    proj: nn::Linear,
    relative_position_bias_table: Tensor,
    /// [w*w * w*w] indices into the table.
    index: Tensor,
    heads: i64,
    window: i64,
}

impl WindowAttention {
    fn new(p: nn::Path, dim: i64, heads: i64, window: i64) -> WindowAttention {
        let span = 2 * window - 1;
        let table =
            p.var("relative_position_bias_table", &[span * span, heads], nn::Init::Randn { mean: 0.0, stdev: 0.02 });
        let cells: Vec<(i64, i64)> = (0..window).flat_map(|i| (0..window).map(move |j| (i, j))).collect();
        let index: Vec<i64> = cells
            .iter()
            .flat_map(|&(ia, ja)| {
                cells.iter().map(move |&(ib, jb)| (ia - ib + window - 1) * span + (ja - jb + window - 1))
            })
            .collect();
        WindowAttention {
            qkv: linear(&p / "qkv", dim, 3 * dim, true),
            proj: linear(&p / "proj", dim, dim, true),
            relative_position_bias_table: table,
            index: Tensor::from_slice(&index).to_device(p.device()),
            heads,
            window,
        }
    }

    /// `x`: [windows * B, N, C]; `mask`: [windows, N, N] of 0 / -100.
    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Tensor {
        let [bw, n, c] = x.size()[..] else { unreachable!("a [B, N, C] tensor") };
        let hd = c / self.heads;
        let qkv = x.apply(&self.qkv).view([bw, n, 3, self.heads, hd]).permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0) * (hd as f64).powf(-0.5), qkv.get(1), qkv.get(2));
        let area = self.window * self.window;
        let bias =
            self.relative_position_bias_table.index_select(0, &self.index).view([area, area, -1]).permute([2, 0, 1]);
        let mut attn = q.matmul(&k.transpose(-2, -1)) + bias.unsqueeze(0);
        if let Some(mask) = mask {
            let windows = mask.size()[0];
            attn = (attn.view([bw / windows, windows, self.heads, n, n]) + mask.unsqueeze(1).unsqueeze(0))
                .view([-1, self.heads, n, n]);
        }
        attn.softmax(-1, attn.kind()).matmul(&v).transpose(1, 2).reshape([bw, n, c]).apply(&self.proj)
    }
}

#[derive(Debug)]
struct SwinBlock {
    norm1: nn::LayerNorm,
    attn: WindowAttention,
    norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    grid: [i64; 2],
    window: i64,
    shift: i64,
    /// The attention mask of the cyclic shift (shifted blocks only).
    mask: Option<Tensor>,
}

impl SwinBlock {
    fn new(p: nn::Path, dim: i64, heads: i64, grid: [i64; 2], window: i64, shifted: bool) -> SwinBlock {
        let w = stage_window(window, grid);
        let shift = if shifted && w == window && grid[0].min(grid[1]) > window { window / 2 } else { 0 };
        let mask = (shift > 0).then(|| shift_mask(grid, w, shift).to_device(p.device()));
        SwinBlock {
            norm1: layer_norm(&p / "norm1", dim),
            attn: WindowAttention::new(&p / "attn", dim, heads, w),
            norm2: layer_norm(&p / "norm2", dim),
            fc1: linear(&p / "mlp" / "fc1", dim, 4 * dim, true),
            fc2: linear(&p / "mlp" / "fc2", 4 * dim, dim, true),
            grid,
            window: w,
            shift,
            mask,
        }
    }

    /// `x`: tokens [B, H*W, C].
    fn forward(&self, x: &Tensor) -> Tensor {
        let [b, l, c] = x.size()[..] else { unreachable!("a [B, L, C] tensor") };
        let [h, wd] = self.grid;
        debug_assert_eq!(l, h * wd);
        let mut t = x.apply(&self.norm1).view([b, h, wd, c]);
        if self.shift > 0 {
            t = t.roll([-self.shift, -self.shift], [1, 2]);
        }
        let attended = self.attn.forward(&partition(&t, self.window), self.mask.as_ref());
        let mut t = reverse(&attended, self.window, h, wd);
        if self.shift > 0 {
            t = t.roll([self.shift, self.shift], [1, 2]);
        }
        let x = x + t.view([b, l, c]);
        let mlp = x.apply(&self.norm2).apply(&self.fc1).gelu("none").apply(&self.fc2);
        x + mlp
    }
}

/// 0 within a window's own region of the shifted grid, -100 between regions (the reference's
/// mask), [windows, w*w, w*w].
fn shift_mask(grid: [i64; 2], w: i64, shift: i64) -> Tensor {
    let region = |i: i64, side: i64| {
        if i < side - w {
            0
        } else if i < side - shift {
            1
        } else {
            2
        }
    };
    let [h, wd] = grid;
    let ids: Vec<f32> = (0..h).flat_map(|i| (0..wd).map(move |j| (3 * region(i, h) + region(j, wd)) as f32)).collect();
    let windows = partition(&Tensor::from_slice(&ids).view([1, h, wd, 1]), w).squeeze_dim(-1);
    let differs = windows.unsqueeze(1).ne_tensor(&windows.unsqueeze(2));
    differs.to_kind(Kind::Float) * -100.0
}

/// Patch merging: each 2x2 group of tokens concatenated (4C), normalised, projected to 2C.
#[derive(Debug)]
struct Merge {
    norm: nn::LayerNorm,
    reduction: nn::Linear,
    grid: [i64; 2],
}

impl Merge {
    fn forward(&self, x: &Tensor) -> Tensor {
        let [b, _, c] = x.size()[..] else { unreachable!("a [B, L, C] tensor") };
        let [h, w] = self.grid;
        let t = x.view([b, h, w, c]);
        let pick = |i: i64, j: i64| t.slice(1, i, h, 2).slice(2, j, w, 2);
        Tensor::cat(&[pick(0, 0), pick(1, 0), pick(0, 1), pick(1, 1)], -1)
            .view([b, -1, 4 * c])
            .apply(&self.norm)
            .apply(&self.reduction)
    }
}

/// Patch expanding: a linear layer widens each token, which is then split into a
/// `scale x scale` group of tokens (x2: half the width; the final x4: the same width), normalised.
#[derive(Debug)]
struct Expand {
    expand: nn::Linear,
    norm: nn::LayerNorm,
    grid: [i64; 2],
    scale: i64,
}

impl Expand {
    /// x2 (width dim -> dim / 2) or the final x4 (dim -> dim).
    fn new(p: nn::Path, dim: i64, grid: [i64; 2], scale: i64) -> Expand {
        let (hidden, out) = if scale == 2 { (2 * dim, dim / 2) } else { (16 * dim, dim) };
        Expand { expand: linear(&p / "expand", dim, hidden, false), norm: layer_norm(&p / "norm", out), grid, scale }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let t = x.apply(&self.expand);
        let [b, _, c] = t.size()[..] else { unreachable!("a [B, L, C] tensor") };
        let ([h, w], s) = (self.grid, self.scale);
        let out = c / (s * s);
        t.view([b, h, w, s, s, out]).permute([0, 1, 3, 2, 4, 5]).reshape([b, -1, out]).apply(&self.norm)
    }
}

#[derive(Debug)]
pub struct SwinUNet {
    pub config: SwinUNetConfig,
    patch_embed: nn::Conv2D,
    patch_norm: nn::LayerNorm,
    stages: Vec<(Vec<SwinBlock>, Option<Merge>)>,
    norm: nn::LayerNorm,
    /// The bottleneck's expansion, then per decoder stage: skip fusion, blocks, expansion.
    bottleneck_up: Expand,
    ups: Vec<(nn::Linear, Vec<SwinBlock>, Option<Expand>)>,
    norm_up: nn::LayerNorm,
    final_up: Expand,
    output: nn::Conv2D,
}

impl SwinUNet {
    pub fn new(p: &nn::Path, config: &SwinUNetConfig) -> SwinUNet {
        let dim = |i: usize| EMBED_DIM << i;
        let g = |i: usize| grid(config.shape, i);
        let blocks = |q: nn::Path, i: usize| -> Vec<SwinBlock> {
            (0..DEPTHS[i])
                .map(|j| {
                    SwinBlock::new(&q / "blocks" / j.to_string(), dim(i), HEADS[i], g(i), config.window, j % 2 == 1)
                })
                .collect()
        };
        let stages = (0..4)
            .map(|i| {
                let q = p / "layers" / i.to_string();
                let merge = (i < 3).then(|| Merge {
                    norm: layer_norm(&q / "downsample" / "norm", 4 * dim(i)),
                    reduction: linear(&q / "downsample" / "reduction", 4 * dim(i), 2 * dim(i), false),
                    grid: g(i),
                });
                (blocks(q, i), merge)
            })
            .collect();
        let ups = (1..4)
            .map(|k| {
                let i = 3 - k;
                let q = p / "layers_up" / k.to_string();
                let fuse = linear(p / "concat_back_dim" / k.to_string(), 2 * dim(i), dim(i), true);
                let up = (i > 0).then(|| Expand::new(&q / "upsample", dim(i), g(i), 2));
                (fuse, blocks(q, i), up)
            })
            .collect();
        let patch = nn::ConvConfig { stride: PATCH, ..Default::default() };
        SwinUNet {
            config: config.clone(),
            patch_embed: nn::conv2d(p / "patch_embed" / "proj", config.in_channels, EMBED_DIM, PATCH, patch),
            patch_norm: layer_norm(p / "patch_embed" / "norm", EMBED_DIM),
            stages,
            norm: layer_norm(p / "norm", dim(3)),
            bottleneck_up: Expand::new(p / "layers_up" / "0", dim(3), g(3), 2),
            ups,
            norm_up: layer_norm(p / "norm_up", EMBED_DIM),
            final_up: Expand::new(p / "up", EMBED_DIM, g(0), 4),
            output: nn::conv2d(
                p / "output",
                EMBED_DIM,
                config.out_channels,
                1,
                nn::ConvConfig { bias: false, ..Default::default() },
            ),
        }
    }
}

impl Module for SwinUNet {
    /// Logits `[B, out, H, W]`.
    fn forward(&self, x: &Tensor) -> Tensor {
        let (skips, t) = self.encode(x);
        self.decode(skips, t)
    }
}

impl SwinUNet {
    /// Token maps of the encoder: the skips (finest first) and the bottleneck.
    fn encode(&self, x: &Tensor) -> (Vec<Tensor>, Tensor) {
        let mut t = x.apply(&self.patch_embed).flatten(2, -1).transpose(1, 2).apply(&self.patch_norm);
        let mut skips = Vec::with_capacity(3);
        for (blocks, merge) in &self.stages {
            skips.push(t.shallow_clone());
            t = blocks.iter().fold(t, |t, blk| blk.forward(&t));
            if let Some(m) = merge {
                t = m.forward(&t);
            }
        }
        (skips, t)
    }

    /// Logits of `x` and of its encoder features with dropout `p` on every skip and the
    /// bottleneck, decoded as one batch (UniMatch's feature perturbation).
    pub fn forward_feature_perturbed(&self, x: &Tensor, p: f64) -> (Tensor, Tensor) {
        let (skips, t) = self.encode(x);
        let both = |f: &Tensor| perturbed(f, p);
        let logits = self.decode(skips.iter().map(both).collect(), both(&t));
        split_perturbed(&logits)
    }

    fn decode(&self, skips: Vec<Tensor>, t: Tensor) -> Tensor {
        let b = t.size()[0];
        let mut t = self.bottleneck_up.forward(&t.apply(&self.norm));
        for ((fuse, blocks, up), skip) in self.ups.iter().zip(skips[..3].iter().rev()) {
            t = Tensor::cat(&[&t, skip], -1).apply(fuse);
            t = blocks.iter().fold(t, |t, blk| blk.forward(&t));
            if let Some(up) = up {
                t = up.forward(&t);
            }
        }
        let t = self.final_up.forward(&t.apply(&self.norm_up));
        let [h, w] = self.config.shape;
        t.view([b, h, w, EMBED_DIM]).permute([0, 3, 1, 2]).apply(&self.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::count;
    use tch::Device;

    fn config(shape: [i64; 2], window: i64) -> SwinUNetConfig {
        SwinUNetConfig { in_channels: 3, out_channels: 1, shape, window }
    }

    /// Counted with the reference implementation (HuCaoFighting/Swin-Unet at f48f623,
    /// `SwinTransformerSys(img_size=S, window_size=W, num_classes=1)`, drop path 0):
    /// `sum(p.numel() for p in m.parameters())` = 27,168,132 at 224 px window 7 and
    /// 27,150,372 at 64 px window 4 (smaller relative-position tables).
    #[test]
    fn parameter_counts_match_the_reference() {
        for (shape, window, expected) in [([224, 224], 7, 27_168_132), ([64, 64], 4, 27_150_372)] {
            let vs = nn::VarStore::new(Device::Cpu);
            let _ = SwinUNet::new(&vs.root(), &config(shape, window));
            assert_eq!(count(&vs.trainable_variables()), expected, "{shape:?} window {window}");
        }
    }

    #[test]
    fn logits_have_the_input_size_and_bad_sizes_name_the_valid_ones() {
        let cfg = SwinUNetConfig { in_channels: 1, out_channels: 2, shape: [64, 96], window: 4 };
        assert!(
            cfg.validate(&[64, 96]).is_err(),
            "96 / 32 = 3 tokens at the bottleneck do not split into windows of 2"
        );
        let cfg = SwinUNetConfig { shape: [64, 128], ..cfg };
        cfg.validate(&[64, 128]).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let net = SwinUNet::new(&vs.root(), &cfg);
        assert_eq!(net.forward(&Tensor::rand([2, 1, 64, 128], (Kind::Float, Device::Cpu))).size(), [2, 2, 64, 128]);
        let err = config([64, 64], 7).validate(&[64, 64]).unwrap_err().to_string();
        assert!(err.contains("224") && err.contains("--window"), "{err}");
        assert!(config([64, 64], 4).validate(&[32, 32, 32]).unwrap_err().to_string().contains("--model unet"));
    }

    /// Shifted windows: tokens only attend within their own region of the rolled grid.
    #[test]
    fn shift_mask_separates_the_rolled_regions() {
        let m = shift_mask([8, 8], 4, 2);
        assert_eq!(m.size(), [4, 16, 16]);
        // The first window holds one region only; the last holds four.
        assert_eq!(f64::try_from(m.get(0).abs().sum(Kind::Double)).unwrap(), 0.0);
        let last = m.get(3);
        let blocked = f64::try_from(last.ne(0.0).sum(Kind::Double)).unwrap();
        // 4 regions of 4 tokens each: every token is blocked from the 12 of other regions.
        assert_eq!(blocked, 16.0 * 12.0);
    }
}
