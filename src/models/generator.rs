//! Pix2Pix U-Net generator (mask -> image) whose up-sampling layers (and, optionally, its
//! down-sampling layers) are mixed ops. One struct serves images and volumes (`dims` 2 or 3).
//!
//! Levels are numbered from the outermost (0, full resolution) inwards; each level halves every
//! side, so a square 2^n image goes down to 1x1 in n levels (8 at 256 px); a volume goes down as
//! far as its sides stay whole (32x48x32: 4 levels to 2x3x2). Architecture logits `alpha` (one
//! row of three candidates per mixed op: decoder levels first, then encoder levels) live in their
//! own VarStore so that the generator's optimiser never touches them: they are trained only by
//! the hypergradient.
use super::mixed_op::MixedConv;
use super::spatial::{batch_norm, convolve};
use super::{leaky_relu, GAN_INIT};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::nn;
use tch::Tensor;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GeneratorConfig {
    /// Mask channels (one per foreground label).
    pub in_channels: i64,
    pub out_channels: i64,
    /// Width of the outermost level (Pix2Pix's ngf); inner levels use up to 8x.
    pub ngf: i64,
    pub levels: usize,
    /// Dropout 0.5 in the inner decoder blocks (Pix2Pix's noise source).
    pub dropout: bool,
    /// One fused 8-wide conv per mixed op instead of three convs (same output).
    pub fused: bool,
    /// Spatial axes: 2 or 3.
    #[serde(default = "two")]
    pub dims: usize,
    /// Mixed ops in the encoder too (the reference's 3-D generator searches its down-convs).
    #[serde(default)]
    pub mixed_encoder: bool,
    /// Length of a per-image Gaussian code, tiled over space and concatenated to the mask
    /// (BicycleGAN's input injection): a noise source that mode seeking can make the generator
    /// use, where it learns to ignore dropout. 0 = none.
    #[serde(default)]
    pub code_channels: i64,
}

fn two() -> usize {
    2
}

impl GeneratorConfig {
    /// As many levels as every side of `shape` can be halved (at least 3); 3-D mixes the encoder.
    pub fn for_shape(shape: &[i64], in_channels: i64, out_channels: i64, ngf: i64) -> Result<GeneratorConfig> {
        let levels = shape.iter().map(|s| s.trailing_zeros() as usize).min().unwrap_or(0);
        if levels < 3 || shape.iter().any(|&s| s < 8) {
            bail!("the generator halves every side at least 3 times: shape {shape:?} must be divisible by 8 on every axis; change --size/--shape");
        }
        let dims = shape.len();
        Ok(GeneratorConfig {
            in_channels,
            out_channels,
            ngf,
            levels,
            dropout: true,
            fused: true,
            dims,
            mixed_encoder: dims == 3,
            code_channels: 0,
        })
    }

    fn channels(&self, level: usize) -> i64 {
        self.ngf * (1i64 << level.min(3))
    }

    fn has_dropout(&self, level: usize) -> bool {
        self.dropout && level >= 4 && level + 1 < self.levels
    }

    /// Rows of alpha: one per mixed op.
    pub fn alpha_rows(&self) -> usize {
        if self.mixed_encoder {
            2 * self.levels
        } else {
            self.levels
        }
    }
}

#[derive(Debug)]
enum Down {
    /// Pix2Pix's 4-wide stride-2 conv (no bias).
    Plain(Tensor),
    Mixed(MixedConv),
}

#[derive(Debug)]
pub struct Generator {
    pub config: GeneratorConfig,
    down: Vec<(Down, Option<nn::BatchNorm>)>,
    up: Vec<(MixedConv, Option<nn::BatchNorm>)>,
    /// `[alpha_rows, 3]` architecture logits.
    pub alpha: Tensor,
}

impl Generator {
    /// Weights go to `p`, the architecture logits to `arch` (init 1e-3 N(0, 1) as the reference).
    pub fn new(p: &nn::Path, arch: &nn::Path, config: &GeneratorConfig) -> Generator {
        let (l, dims) = (config.levels, config.dims);
        let down = (0..l)
            .map(|i| {
                let cin = if i == 0 { config.in_channels + config.code_channels } else { config.channels(i - 1) };
                let cout = config.channels(i);
                let op = if config.mixed_encoder {
                    Down::Mixed(MixedConv::down(p / format!("down{i}"), dims, cin, cout, false, config.fused))
                } else {
                    let mut shape = vec![cout, cin];
                    shape.extend(std::iter::repeat_n(4, dims));
                    Down::Plain(p.var(&format!("down{i}"), &shape, GAN_INIT))
                };
                let bn = (i > 0 && i + 1 < l).then(|| batch_norm(p / format!("down{i}_bn"), dims, cout, true));
                (op, bn)
            })
            .collect();
        let up = (0..l)
            .map(|i| {
                let cin = if i + 1 == l { config.channels(i) } else { 2 * config.channels(i) };
                let cout = if i == 0 { config.out_channels } else { config.channels(i - 1) };
                let op = MixedConv::up(p / format!("up{i}"), dims, cin, cout, i == 0, config.fused);
                let bn = (i > 0).then(|| batch_norm(p / format!("up{i}_bn"), dims, cout, true));
                (op, bn)
            })
            .collect();
        let alpha = arch.var("alpha", &[config.alpha_rows() as i64, 3], nn::Init::Randn { mean: 0.0, stdev: 1e-3 });
        Generator { config: config.clone(), down, up, alpha }
    }

    /// Mask `[B, labels, spatial...]` in {0, 1} -> image `[B, C, spatial...]` in [-1, 1], with a
    /// fresh code per image when the generator takes one.
    pub fn forward_t(&self, mask: &Tensor, train: bool) -> Tensor {
        let code = self.draw_code(mask);
        self.forward_coded(mask, code.as_ref(), train)
    }

    /// A standard normal code `[B, code_channels]` for each image of `mask`, or `None` when the
    /// generator takes none.
    pub fn draw_code(&self, mask: &Tensor) -> Option<Tensor> {
        let c = self.config.code_channels;
        (c > 0).then(|| Tensor::randn([mask.size()[0], c], (mask.kind(), mask.device())))
    }

    /// [`Generator::forward_t`] with a given code (`None` exactly when the generator takes none).
    pub fn forward_coded(&self, mask: &Tensor, code: Option<&Tensor>, train: bool) -> Tensor {
        let input = match code {
            Some(z) => {
                let tiled: Vec<i64> = [&z.size()[..], &mask.size()[2..]].concat();
                let mut shape = z.size();
                shape.extend(std::iter::repeat_n(1, self.config.dims));
                Tensor::cat(&[mask.shallow_clone(), z.view(shape.as_slice()).expand(tiled, false)], 1)
            }
            None => mask.shallow_clone(),
        };
        let weights = self.alpha.softmax(1, self.alpha.kind());
        let l = self.config.levels as i64;
        let mut encoded: Vec<Tensor> = Vec::with_capacity(self.down.len());
        for (i, (op, bn)) in self.down.iter().enumerate() {
            let x = if i == 0 { input.shallow_clone() } else { leaky_relu(&encoded[i - 1]) };
            let mut h = match op {
                Down::Plain(w) => convolve(&x, w, None, self.config.dims, 2, 1, false),
                Down::Mixed(m) => m.forward(&x, &weights.get(l + i as i64)),
            };
            if let Some(bn) = bn {
                h = h.apply_t(bn, train);
            }
            encoded.push(h);
        }
        let mut h = encoded.pop().unwrap();
        for i in (0..self.up.len()).rev() {
            let (op, bn) = &self.up[i];
            let y = op.forward(&h.relu(), &weights.get(i as i64));
            let Some(bn) = bn else { return y.tanh() };
            let mut y = y.apply_t(bn, train);
            if self.config.has_dropout(i) {
                y = y.dropout(0.5, train);
            }
            h = Tensor::cat(&[encoded.pop().unwrap(), y], 1);
        }
        unreachable!("level 0 has no BatchNorm and returns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// The fused op is a compute-time rewrite: the three candidate kernels stay separate
    /// parameters. The reference (272,357,513 with RGB output) gives each of the outermost
    /// layer's three candidates its own bias; the mixture of three biases is just one vector, so
    /// we keep a single bias there: 2 x 3 = 6 parameters fewer. alpha (8x3 logits) lives in its
    /// own store and is not counted, as in the reference.
    #[test]
    fn parameter_count_matches_the_reference_at_256_px() {
        let vs = nn::VarStore::new(Device::Cpu);
        let arch = nn::VarStore::new(Device::Cpu);
        let cfg = GeneratorConfig::for_shape(&[256, 256], 1, 3, 64).unwrap();
        let _g = Generator::new(&vs.root(), &arch.root(), &cfg);
        let n = crate::models::count(&vs.trainable_variables());
        println!("generator parameters (ngf 64, 256 px, RGB): {n}");
        assert_eq!(n, 272_357_513 - 6);
        assert_eq!(crate::models::count(&arch.trainable_variables()), 24);
    }

    #[test]
    fn shapes_and_range() {
        let vs = nn::VarStore::new(Device::Cpu);
        let arch = nn::VarStore::new(Device::Cpu);
        let cfg = GeneratorConfig::for_shape(&[64, 64], 1, 3, 8).unwrap();
        assert_eq!(cfg.levels, 6);
        let g = Generator::new(&vs.root(), &arch.root(), &cfg);
        let m = Tensor::rand([2, 1, 64, 64], (Kind::Float, Device::Cpu)).gt(0.5).to_kind(Kind::Float);
        let y = g.forward_t(&m, true);
        assert_eq!(y.size(), vec![2, 3, 64, 64]);
        assert!(f64::try_from(y.abs().max()).unwrap() <= 1.0);
        assert_eq!(g.alpha.size(), vec![6, 3]);
    }

    /// The 3-D generator mixes encoder and decoder: 2 x levels alpha rows, every one of which
    /// moves the output; a non-cubic volume comes back at its own shape.
    #[test]
    fn three_d_generator_mixes_encoder_and_decoder() {
        let vs = nn::VarStore::new(Device::Cpu);
        let arch = nn::VarStore::new(Device::Cpu);
        let cfg = GeneratorConfig::for_shape(&[16, 24, 16], 2, 1, 4).unwrap();
        assert_eq!((cfg.levels, cfg.dims, cfg.mixed_encoder), (3, 3, true));
        let g = Generator::new(&vs.root(), &arch.root(), &cfg);
        assert_eq!(g.alpha.size(), vec![6, 3]);
        let m = Tensor::rand([2, 2, 16, 24, 16], (Kind::Float, Device::Cpu)).gt(0.5).to_kind(Kind::Float);
        tch::manual_seed(3);
        let y = g.forward_t(&m, true);
        assert_eq!(y.size(), vec![2, 1, 16, 24, 16]);
        let grad = Tensor::run_backward(&[y.square().sum(Kind::Float)], &[&g.alpha], false, false).pop().unwrap();
        let rows = Vec::<f64>::try_from(grad.abs().sum_dim_intlist(1, false, Kind::Double)).unwrap();
        assert!(rows.iter().all(|&r| r > 0.0), "every mixed op reaches the output: {rows:?}");
        assert!(GeneratorConfig::for_shape(&[20, 24, 16], 1, 1, 4).is_err());
    }

    /// A code is tiled over space beside the mask: a fixed code gives a fixed image, another code
    /// another image, and `forward_t` draws a new one each call.
    #[test]
    fn the_code_moves_the_image_and_a_fixed_code_fixes_it() {
        tch::manual_seed(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let arch = nn::VarStore::new(Device::Cpu);
        let mut cfg = GeneratorConfig::for_shape(&[32, 32], 1, 3, 4).unwrap();
        cfg.code_channels = 5;
        let g = Generator::new(&vs.root(), &arch.root(), &cfg);
        assert_eq!(vs.variables()["down0"].size(), vec![4, 6, 4, 4]);
        let m = Tensor::rand([2, 1, 32, 32], (Kind::Float, Device::Cpu)).gt(0.5).to_kind(Kind::Float);
        let z = Tensor::randn([2, 5], (Kind::Float, Device::Cpu));
        let differ = |a: &Tensor, b: &Tensor| f64::try_from((a - b).abs().max()).unwrap();
        let y = g.forward_coded(&m, Some(&z), true);
        assert_eq!(differ(&y, &g.forward_coded(&m, Some(&z), true)), 0.0);
        assert!(differ(&y, &g.forward_coded(&m, Some(&(&z + 1.0)), true)) > 1e-3);
        assert!(differ(&g.forward_t(&m, true), &g.forward_t(&m, true)) > 1e-3);
    }
}
