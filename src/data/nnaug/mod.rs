//! nnU-Net v2's default training augmentation, on tensors, batched, one code path for 2-D and
//! 3-D: the `nnunet` preset of `--augment`.
//!
//! Probabilities and ranges are those of `nnUNetTrainer.get_training_transforms` (nnU-Net v2,
//! nnunetv2/training/nnUNetTrainer/nnUNetTrainer.py, batchgeneratorsv2 transforms):
//! - SpatialTransform: p_rotation 0.2 (2-D: +-180 deg; 3-D: +-30 deg about each axis), p_scaling
//!   0.2 with scaling (0.7, 1.4), one factor for all axes, p_elastic_deform 0 (`--elastic-p` turns
//!   it on: batchgeneratorsv2's field, Gaussian noise blurred with sigma U(0, 0.2) x the side per
//!   axis, scaled to a maximum displacement U(0, 0.2) in [-1, 1] grid units per component,
//!   applied before rotation and scaling);
//! - GaussianNoiseTransform: p 0.1, noise_variance (0, 0.1), one sigma for all channels;
//! - GaussianBlurTransform: p 0.2, blur_sigma (0.5, 1.0) drawn per axis, each channel with p 0.5;
//! - MultiplicativeBrightnessTransform: p 0.15, multiplier BGContrast((0.75, 1.25)) per channel;
//! - ContrastTransform: p 0.15, BGContrast((0.75, 1.25)) per channel, preserve_range;
//! - SimulateLowResolutionTransform: p 0.25, scale (0.5, 1) shared by the axes, each channel with
//!   p 0.5, nearest-neighbour down, cubic up (trilinear in 3-D);
//! - GammaTransform: p 0.1 on the inverted image, then p 0.3; gamma BGContrast((0.7, 1.5)),
//!   p_retain_stats 1;
//! - MirrorTransform: each allowed axis with p 0.5 (all spatial axes unless `--mirror-axes`).
//!
//! nnU-Net applies these to z-scored images, padding with 0 (the mean). Here each case's
//! channels are standardised first and restored afterwards, so the same magnitudes act on images
//! in [0, 1]; masks follow the spatial map only (bilinear, re-binarised at 0.5).
use super::augment::{affine_grid, diagonal, identity, mul, rotation, sampling_theta, uniform, Mat4};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Which augmentation the `augment` method applies to real pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum AugmentPreset {
    /// None: the same as `plain`.
    None,
    /// GenSeg's geometric set (flip, pad/crop, scale, translate, rotate, shear) and a
    /// brightness/contrast jitter.
    #[default]
    Geometric,
    /// nnU-Net v2's default spatial and intensity augmentation.
    Nnunet,
}

/// Probabilities and ranges of every op.
#[derive(Debug, Clone, PartialEq)]
pub struct NnUnetAugment {
    pub p_rotation: f64,
    pub max_rotation_deg: f64,
    pub p_scaling: f64,
    pub scaling: (f64, f64),
    pub p_elastic: f64,
    /// Blur sigma of the displacement noise, as a fraction of each axis' side.
    pub elastic_scale: (f64, f64),
    /// Largest displacement per grid component, in [-1, 1] grid units.
    pub elastic_magnitude: (f64, f64),
    /// Spatial axes (0 = the first after the channels) that may be mirrored.
    pub mirror_axes: Vec<usize>,
    pub p_mirror: f64,
    pub p_noise: f64,
    pub noise_variance: (f64, f64),
    pub p_blur: f64,
    pub blur_sigma: (f64, f64),
    pub p_blur_channel: f64,
    pub p_brightness: f64,
    pub brightness: (f64, f64),
    pub p_contrast: f64,
    pub contrast: (f64, f64),
    pub p_low_res: f64,
    pub low_res_scale: (f64, f64),
    pub p_low_res_channel: f64,
    pub p_gamma_inverted: f64,
    pub p_gamma: f64,
    pub gamma: (f64, f64),
}

impl NnUnetAugment {
    /// nnU-Net's defaults for `dims` spatial axes; `mirror_axes` None = every axis.
    pub fn defaults(dims: usize, mirror_axes: Option<&[usize]>) -> NnUnetAugment {
        NnUnetAugment {
            p_rotation: 0.2,
            max_rotation_deg: if dims == 2 { 180.0 } else { 30.0 },
            p_scaling: 0.2,
            scaling: (0.7, 1.4),
            p_elastic: 0.0,
            elastic_scale: (0.0, 0.2),
            elastic_magnitude: (0.0, 0.2),
            mirror_axes: mirror_axes.map(<[usize]>::to_vec).unwrap_or_else(|| (0..dims).collect()),
            p_mirror: 0.5,
            p_noise: 0.1,
            noise_variance: (0.0, 0.1),
            p_blur: 0.2,
            blur_sigma: (0.5, 1.0),
            p_blur_channel: 0.5,
            p_brightness: 0.15,
            brightness: (0.75, 1.25),
            p_contrast: 0.15,
            contrast: (0.75, 1.25),
            p_low_res: 0.25,
            low_res_scale: (0.5, 1.0),
            p_low_res_channel: 0.5,
            p_gamma_inverted: 0.1,
            p_gamma: 0.3,
            gamma: (0.7, 1.5),
        }
    }

    /// Every probability 0: the identity.
    pub fn off(dims: usize) -> NnUnetAugment {
        NnUnetAugment {
            p_rotation: 0.0,
            p_scaling: 0.0,
            p_elastic: 0.0,
            p_mirror: 0.0,
            p_noise: 0.0,
            p_blur: 0.0,
            p_brightness: 0.0,
            p_contrast: 0.0,
            p_low_res: 0.0,
            p_gamma_inverted: 0.0,
            p_gamma: 0.0,
            ..NnUnetAugment::defaults(dims, None)
        }
    }
}

/// One case's drawn parameters; `None` = op not applied. Per-channel entries are `None` for
/// channels the op skips.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseDraw {
    /// Degrees in the planes (x-y, x-z, y-z) of normalised coordinates (2-D: the first only).
    pub rotate_deg: Option<[f64; 3]>,
    pub scale: Option<f64>,
    pub elastic: Option<Elastic>,
    /// Per spatial axis of the tensor.
    pub mirror: Vec<bool>,
    pub noise_sigma: Option<f64>,
    /// Per channel, a sigma per spatial axis (pixels).
    pub blur: Option<Vec<Option<Vec<f64>>>>,
    pub brightness: Option<Vec<f64>>,
    pub contrast: Option<Vec<f64>>,
    /// The shared scale and the channels it applies to.
    pub low_res: Option<(f64, Vec<bool>)>,
    pub gamma_inverted: Option<Vec<f64>>,
    pub gamma: Option<Vec<f64>>,
}

/// An elastic deformation's parameters; the noise itself comes from libtorch's generator.
#[derive(Debug, Clone, PartialEq)]
pub struct Elastic {
    /// Blur sigma per spatial axis of the tensor, as a fraction of its side.
    pub scale: Vec<f64>,
    /// Largest displacement per grid component (x first), in [-1, 1] grid units.
    pub magnitude: Vec<f64>,
}

/// batchgeneratorsv2's BGContrast: half the draws below 1, half above, so shrinking and
/// stretching are equally likely whatever the range's asymmetry.
fn bg_contrast<R: Rng>(rng: &mut R, (lo, hi): (f64, f64)) -> f64 {
    if rng.gen_bool(0.5) && lo < 1.0 {
        uniform(rng, lo, 1.0)
    } else {
        uniform(rng, lo.max(1.0), hi)
    }
}

fn maybe<R: Rng, T>(rng: &mut R, p: f64, f: impl FnOnce(&mut R) -> T) -> Option<T> {
    rng.gen_bool(p.clamp(0.0, 1.0)).then(|| f(rng))
}

/// Draws one case's parameters, in a fixed order.
pub fn draw<R: Rng>(cfg: &NnUnetAugment, dims: usize, channels: usize, rng: &mut R) -> CaseDraw {
    let r = cfg.max_rotation_deg;
    let rotate_deg = maybe(rng, cfg.p_rotation, |rng| {
        let mut a = [uniform(rng, -r, r), 0.0, 0.0];
        if dims == 3 {
            a[1] = uniform(rng, -r, r);
            a[2] = uniform(rng, -r, r);
        }
        a
    });
    let scale = maybe(rng, cfg.p_scaling, |rng| uniform(rng, cfg.scaling.0, cfg.scaling.1));
    // Off by default, and then not drawn at all, so the preset's random stream is the one it had
    // before the option existed.
    let elastic = if cfg.p_elastic > 0.0 {
        maybe(rng, cfg.p_elastic, |rng| Elastic {
            scale: (0..dims).map(|_| uniform(rng, cfg.elastic_scale.0, cfg.elastic_scale.1)).collect(),
            magnitude: (0..dims).map(|_| uniform(rng, cfg.elastic_magnitude.0, cfg.elastic_magnitude.1)).collect(),
        })
    } else {
        None
    };
    let mirror = (0..dims).map(|a| cfg.mirror_axes.contains(&a) && rng.gen_bool(cfg.p_mirror)).collect();
    let noise_sigma = maybe(rng, cfg.p_noise, |rng| uniform(rng, cfg.noise_variance.0, cfg.noise_variance.1).sqrt());
    let blur = maybe(rng, cfg.p_blur, |rng| {
        (0..channels)
            .map(|_| {
                maybe(rng, cfg.p_blur_channel, |rng| {
                    (0..dims).map(|_| uniform(rng, cfg.blur_sigma.0, cfg.blur_sigma.1)).collect()
                })
            })
            .collect()
    });
    let per_channel = |rng: &mut R, range| (0..channels).map(|_| bg_contrast(rng, range)).collect::<Vec<_>>();
    let brightness = maybe(rng, cfg.p_brightness, |rng| per_channel(rng, cfg.brightness));
    let contrast = maybe(rng, cfg.p_contrast, |rng| per_channel(rng, cfg.contrast));
    let low_res = maybe(rng, cfg.p_low_res, |rng| {
        let scale = uniform(rng, cfg.low_res_scale.0, cfg.low_res_scale.1);
        (scale, (0..channels).map(|_| rng.gen_bool(cfg.p_low_res_channel)).collect())
    });
    let gamma_inverted = maybe(rng, cfg.p_gamma_inverted, |rng| per_channel(rng, cfg.gamma));
    let gamma = maybe(rng, cfg.p_gamma, |rng| per_channel(rng, cfg.gamma));
    CaseDraw {
        rotate_deg,
        scale,
        elastic,
        mirror,
        noise_sigma,
        blur,
        brightness,
        contrast,
        low_res,
        gamma_inverted,
        gamma,
    }
}

impl CaseDraw {
    /// Forward map of normalised coordinates: mirror . rotate . scale. A scale factor s samples
    /// s times the field of view (nnU-Net's convention: s > 1 shrinks the content).
    pub fn forward(&self, dims: usize) -> Mat4 {
        let mut m = identity();
        if let Some(s) = self.scale {
            m = mul(&diagonal([1.0 / s; 3], [0.0; 3]), &m);
        }
        if let Some(r) = self.rotate_deg {
            m = mul(&mul(&rotation(1, 2, r[2]), &mul(&rotation(0, 2, r[1]), &rotation(0, 1, r[0]))), &m);
        }
        let mut mirror = [1.0; 3];
        for (axis, &flip) in self.mirror.iter().enumerate() {
            if flip {
                // Tensor axis `axis` is normalised coordinate dims - 1 - axis (x = width).
                mirror[dims - 1 - axis] = -1.0;
            }
        }
        mul(&diagonal(mirror, [0.0; 3]), &m)
    }

    fn moves(&self) -> bool {
        self.rotate_deg.is_some() || self.scale.is_some() || self.elastic.is_some() || self.mirror.iter().any(|&f| f)
    }
}

/// A displacement field `[spatial..., dims]` (grid components x first): unit Gaussian noise
/// blurred per axis, each component scaled to its largest displacement.
fn elastic_offsets(e: &Elastic, spatial: &[i64], options: (Kind, tch::Device)) -> Tensor {
    let sigmas: Vec<f64> = e.scale.iter().zip(spatial).map(|(f, &side)| (f * side as f64).max(1e-3)).collect();
    let components: Vec<Tensor> = e
        .magnitude
        .iter()
        .map(|&m| {
            let field = gaussian_blur(&Tensor::randn(spatial, options), &sigmas);
            &field / (field.abs().max() + 1e-12) * m
        })
        .collect();
    Tensor::stack(&components, -1)
}

/// Augments image/mask batches (`[B, C, spatial...]`, images in [0, 1], binary masks) with
/// nnU-Net's defaults. Noise uses libtorch's generator, which the training loop seeds per step.
pub fn augment<R: Rng>(images: &Tensor, masks: &Tensor, cfg: &NnUnetAugment, rng: &mut R) -> (Tensor, Tensor) {
    let (dims, channels) = (images.dim() - 2, images.size()[1] as usize);
    let draws: Vec<CaseDraw> = (0..images.size()[0]).map(|_| draw(cfg, dims, channels, rng)).collect();
    apply(images, masks, &draws)
}

/// The augmentation of given draws (one per case).
pub fn apply(images: &Tensor, masks: &Tensor, draws: &[CaseDraw]) -> (Tensor, Tensor) {
    let axes: Vec<i64> = (2..images.dim() as i64).collect();
    let mean = images.mean_dim(axes.as_slice(), true, Kind::Float);
    let std = (images - &mean).square().mean_dim(axes.as_slice(), true, Kind::Float).sqrt() + 1e-6;
    let mut z = (images - &mean) / &std;
    let mut masks = masks.shallow_clone();
    if draws.iter().any(CaseDraw::moves) {
        let grid = sampling_grid(draws, &z);
        z = z.grid_sampler(&grid, 0, 0, false);
        masks = masks.grid_sampler(&grid.to_kind(masks.kind()), 0, 0, false).gt(0.5).to_kind(masks.kind());
    }
    let cases: Vec<Tensor> = draws.iter().enumerate().map(|(i, d)| intensity(&z.get(i as i64), d)).collect();
    let images = (Tensor::stack(&cases, 0) * std + mean).clamp(0.0, 1.0);
    (images, masks)
}

/// Where each output voxel samples the input (`grid_sample` coordinates): the elastic
/// displacement is added to the identity grid first, then the affine map acts on both, as in
/// batchgeneratorsv2 (A (g + o) + t = affine_grid + A o).
fn sampling_grid(draws: &[CaseDraw], x: &Tensor) -> Tensor {
    let dims = x.dim() - 2;
    let thetas: Vec<Vec<f64>> = draws.iter().map(|d| sampling_theta(&d.forward(dims), dims)).collect();
    let grid = affine_grid(&thetas.concat(), &x.size(), x.kind(), x.device());
    if draws.iter().all(|d| d.elastic.is_none()) {
        return grid;
    }
    let spatial = &x.size()[2..];
    let cases: Vec<Tensor> = draws
        .iter()
        .zip(&thetas)
        .enumerate()
        .map(|(i, (d, theta))| match &d.elastic {
            None => grid.get(i as i64),
            Some(e) => {
                // The linear part of theta, dims x (dims + 1) row-major, as a matrix acting on rows.
                let linear: Vec<f64> =
                    (0..dims).flat_map(|r| (0..dims).map(move |c| theta[r * (dims + 1) + c])).collect();
                let a = Tensor::from_slice(&linear)
                    .view([dims as i64, dims as i64])
                    .to_kind(x.kind())
                    .to_device(x.device());
                grid.get(i as i64) + elastic_offsets(e, spatial, (x.kind(), x.device())).matmul(&a.tr())
            }
        })
        .collect();
    Tensor::stack(&cases, 0)
}

/// The intensity ops of one case `[C, spatial...]` (standardised), in nnU-Net's order.
fn intensity(x: &Tensor, d: &CaseDraw) -> Tensor {
    let mut x = x.shallow_clone();
    if let Some(sigma) = d.noise_sigma {
        x = &x + x.randn_like() * sigma;
    }
    if let Some(sigmas) = &d.blur {
        x = per_channel(&x, |c, xc| match &sigmas[c] {
            Some(s) => gaussian_blur(&xc, s),
            None => xc,
        });
    }
    if let Some(m) = &d.brightness {
        x = per_channel(&x, |c, xc| xc * m[c]);
    }
    if let Some(f) = &d.contrast {
        x = per_channel(&x, |c, xc| {
            let (mean, lo, hi) = (xc.mean(Kind::Float), xc.min(), xc.max());
            ((&xc - &mean) * f[c] + &mean).clamp_tensor(Some(&lo), Some(&hi))
        });
    }
    if let Some((scale, which)) = &d.low_res {
        x = per_channel(&x, |c, xc| if which[c] { low_resolution(&xc, *scale) } else { xc });
    }
    if let Some(g) = &d.gamma_inverted {
        x = per_channel(&x, |c, xc| -gamma(&(-xc), g[c]));
    }
    if let Some(g) = &d.gamma {
        x = per_channel(&x, |c, xc| gamma(&xc, g[c]));
    }
    x
}

fn per_channel(x: &Tensor, mut f: impl FnMut(usize, Tensor) -> Tensor) -> Tensor {
    let channels: Vec<Tensor> = (0..x.size()[0]).map(|c| f(c as usize, x.get(c))).collect();
    Tensor::stack(&channels, 0)
}

/// Separable Gaussian blur of one channel `[spatial...]`, sigma in pixels per axis, kernels
/// truncated at 4 sigma (scipy's default) with reflected borders.
fn gaussian_blur(x: &Tensor, sigmas: &[f64]) -> Tensor {
    let dims = x.dim();
    let mut y = x.unsqueeze(0).unsqueeze(0);
    for (axis, &sigma) in sigmas.iter().enumerate() {
        let radius = ((4.0 * sigma).ceil() as i64).min(x.size()[axis] - 1).max(1);
        let taps: Vec<f32> =
            (-radius..=radius).map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp() as f32).collect();
        let sum: f32 = taps.iter().sum();
        let mut shape = vec![1i64; dims + 2];
        shape[axis + 2] = taps.len() as i64;
        let kernel = (Tensor::from_slice(&taps) / sum as f64).view(shape.as_slice()).to_device(x.device());
        // F.pad lists (low, high) pairs from the last axis backwards.
        let mut pad = vec![0i64; 2 * dims];
        pad[2 * (dims - 1 - axis)] = radius;
        pad[2 * (dims - 1 - axis) + 1] = radius;
        let padded = y.pad(pad.as_slice(), "reflect", None);
        y = if dims == 2 {
            padded.conv2d(&kernel, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1)
        } else {
            padded.conv3d(&kernel, None::<Tensor>, [1, 1, 1], [0, 0, 0], [1, 1, 1], 1)
        };
    }
    y.squeeze_dim(0).squeeze_dim(0)
}

/// Down-sampled by `scale` (nearest neighbour), then back to the original size (cubic in 2-D,
/// trilinear in 3-D).
fn low_resolution(x: &Tensor, scale: f64) -> Tensor {
    let size = x.size();
    let small: Vec<i64> = size.iter().map(|&s| ((s as f64 * scale).round() as i64).max(1)).collect();
    let y = x.unsqueeze(0).unsqueeze(0);
    let y = if size.len() == 2 {
        y.upsample_nearest2d(small.as_slice(), None, None).upsample_bicubic2d(size.as_slice(), false, None, None)
    } else {
        y.upsample_nearest3d(small.as_slice(), None, None, None).upsample_trilinear3d(
            size.as_slice(),
            false,
            None,
            None,
            None,
        )
    };
    y.squeeze_dim(0).squeeze_dim(0)
}

/// x -> ((x - min) / range)^g * range + min, then the original mean and standard deviation.
fn gamma(x: &Tensor, g: f64) -> Tensor {
    let (mean, std) = (x.mean(Kind::Float), x.std(true));
    let (lo, range) = (x.min(), x.max() - x.min() + 1e-7);
    let y = ((x - &lo) / &range).pow_tensor_scalar(g) * &range + &lo;
    let (ym, ys) = (y.mean(Kind::Float), y.std(true) + 1e-7);
    (y - ym) / ys * std + mean
}

#[cfg(test)]
mod tests;
