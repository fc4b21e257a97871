//! Random geometric augmentation of masks (for synthesis) and of image/mask pairs (classic
//! augmentation).
//!
//! Every op (flip, pad/crop, scale, translate, rotate, shear) is an affine map of normalised
//! coordinates; the ops are drawn in random order and composed into one matrix, so each mask is
//! resampled once (no blur from repeated warps) and then re-binarised.
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AugmentConfig {
    /// Probability of a horizontal flip.
    pub flip_p: f64,
    /// Each side is padded (positive) or cropped (negative) by up to this fraction, then resized back.
    pub pad_crop: f64,
    /// Per-axis scale factor range.
    pub scale: (f64, f64),
    /// Shift range as a fraction of the side, per axis.
    pub translate: f64,
    pub rotate_deg: f64,
    pub shear_deg: f64,
}

impl Default for AugmentConfig {
    /// GenSeg's mask augmentation ranges.
    fn default() -> Self {
        AugmentConfig { flip_p: 0.5, pad_crop: 0.1, scale: (0.8, 1.2), translate: 0.1, rotate_deg: 15.0, shear_deg: 8.0 }
    }
}

impl AugmentConfig {
    /// All ranges zero: every draw is the identity.
    pub fn identity() -> Self {
        AugmentConfig { flip_p: 0.0, pad_crop: 0.0, scale: (1.0, 1.0), translate: 0.0, rotate_deg: 0.0, shear_deg: 0.0 }
    }
}

/// One drawn set of parameters (angles in degrees, fractions of the side).
#[derive(Debug, Clone, PartialEq)]
pub struct AffineDraw {
    pub flip: bool,
    /// left, right, top, bottom
    pub pad: [f64; 4],
    pub scale: (f64, f64),
    pub translate: (f64, f64),
    pub rotate_deg: f64,
    pub shear_deg: f64,
    /// Order in which the six ops are applied.
    pub order: [usize; 6],
}

fn uniform<R: Rng>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    if hi > lo {
        rng.gen_range(lo..hi)
    } else {
        lo
    }
}

pub fn draw<R: Rng>(cfg: &AugmentConfig, rng: &mut R) -> AffineDraw {
    let mut order = [0, 1, 2, 3, 4, 5];
    order.shuffle(rng);
    let p = cfg.pad_crop;
    AffineDraw {
        flip: rng.gen_bool(cfg.flip_p.clamp(0.0, 1.0)),
        pad: [uniform(rng, -p, p), uniform(rng, -p, p), uniform(rng, -p, p), uniform(rng, -p, p)],
        scale: (uniform(rng, cfg.scale.0, cfg.scale.1), uniform(rng, cfg.scale.0, cfg.scale.1)),
        translate: (uniform(rng, -cfg.translate, cfg.translate), uniform(rng, -cfg.translate, cfg.translate)),
        rotate_deg: uniform(rng, -cfg.rotate_deg, cfg.rotate_deg),
        shear_deg: uniform(rng, -cfg.shear_deg, cfg.shear_deg),
        order,
    }
}

type Mat3 = [[f64; 3]; 3];

fn mul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

fn affine(a: f64, b: f64, c: f64, d: f64, tx: f64, ty: f64) -> Mat3 {
    [[a, b, tx], [c, d, ty], [0.0, 0.0, 1.0]]
}

impl AffineDraw {
    /// Forward map from input to output normalised coordinates ([-1, 1], x right, y down).
    pub fn forward(&self) -> Mat3 {
        let [l, r, t, b] = self.pad;
        let ops: [Mat3; 6] = [
            if self.flip { affine(-1.0, 0.0, 0.0, 1.0, 0.0, 0.0) } else { affine(1.0, 0.0, 0.0, 1.0, 0.0, 0.0) },
            // Canvas grows to [-1-2l, 1+2r] and is squeezed back into [-1, 1].
            affine(1.0 / (1.0 + l + r), 0.0, 0.0, 1.0 / (1.0 + t + b), (l - r) / (1.0 + l + r), (t - b) / (1.0 + t + b)),
            affine(self.scale.0, 0.0, 0.0, self.scale.1, 0.0, 0.0),
            affine(1.0, 0.0, 0.0, 1.0, 2.0 * self.translate.0, 2.0 * self.translate.1),
            {
                let (s, c) = self.rotate_deg.to_radians().sin_cos();
                affine(c, -s, s, c, 0.0, 0.0)
            },
            affine(1.0, self.shear_deg.to_radians().tan(), 0.0, 1.0, 0.0, 0.0),
        ];
        self.order.iter().fold(affine(1.0, 0.0, 0.0, 1.0, 0.0, 0.0), |acc, &i| mul(&ops[i], &acc))
    }

    /// The 2x3 matrix grid sampling needs: output coordinates -> input coordinates.
    pub fn sampling_theta(&self) -> [f64; 6] {
        let m = self.forward();
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        let (a, b, c, d) = (m[1][1] / det, -m[0][1] / det, -m[1][0] / det, m[0][0] / det);
        let tx = -(a * m[0][2] + b * m[1][2]);
        let ty = -(c * m[0][2] + d * m[1][2]);
        [a, b, tx, c, d, ty]
    }
}

fn warp(x: &Tensor, draws: &[AffineDraw]) -> Tensor {
    let theta: Vec<f64> = draws.iter().flat_map(|d| d.sampling_theta()).collect();
    let theta = Tensor::from_slice(&theta).view([draws.len() as i64, 2, 3]).to_kind(x.kind()).to_device(x.device());
    let grid = Tensor::affine_grid_generator(&theta, x.size(), false);
    // bilinear, zero padding
    x.grid_sampler(&grid, 0, 0, false)
}

/// Augments a batch of binary masks `[B, 1, H, W]` and re-binarises them.
pub fn augment_masks<R: Rng>(masks: &Tensor, cfg: &AugmentConfig, rng: &mut R) -> Tensor {
    let draws: Vec<AffineDraw> = (0..masks.size()[0]).map(|_| draw(cfg, rng)).collect();
    warp(masks, &draws).gt(0.5).to_kind(masks.kind())
}

/// Classic augmentation: one geometric draw per pair applied to image and mask alike, plus
/// brightness and contrast jitter (up to +-`jitter`) on the image.
pub fn augment_pairs<R: Rng>(images: &Tensor, masks: &Tensor, cfg: &AugmentConfig, jitter: f64, rng: &mut R) -> (Tensor, Tensor) {
    let b = images.size()[0];
    let draws: Vec<AffineDraw> = (0..b).map(|_| draw(cfg, rng)).collect();
    let warped = warp(images, &draws);
    let masks = warp(masks, &draws).gt(0.5).to_kind(masks.kind());
    let factors = |rng: &mut R| -> Tensor {
        let v: Vec<f32> = (0..b).map(|_| uniform(rng, -jitter, jitter) as f32).collect();
        Tensor::from_slice(&v).view([b, 1, 1, 1]).to_device(images.device())
    };
    let brightness = factors(rng);
    let contrast = factors(rng) + 1.0;
    let mean = warped.mean_dim(&[1i64, 2, 3][..], true, Kind::Float);
    let images = ((warped - &mean) * contrast + mean + brightness).clamp(0.0, 1.0);
    (images, masks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn disc(size: i64) -> Tensor {
        let r = Tensor::arange(size, (Kind::Float, tch::Device::Cpu));
        let y = r.view([size, 1]);
        let x = r.view([1, size]);
        let c = size as f64 / 2.0;
        ((x - c).square() + (y - c).square()).lt((size as f64 / 4.0).powi(2)).to_kind(Kind::Float).view([1, 1, size, size])
    }

    #[test]
    fn identity_when_all_ranges_are_zero() {
        let m = disc(32).repeat([3, 1, 1, 1]);
        let out = augment_masks(&m, &AugmentConfig::identity(), &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(out.size(), m.size());
        assert_eq!(f64::try_from((out - &m).abs().max()).unwrap(), 0.0);
    }

    #[test]
    fn output_is_binary_and_same_size() {
        let m = disc(48).repeat([8, 1, 1, 1]);
        let out = augment_masks(&m, &AugmentConfig::default(), &mut ChaCha8Rng::seed_from_u64(2));
        assert_eq!(out.size(), vec![8, 1, 48, 48]);
        let binary = out.eq(0.0).logical_or(&out.eq(1.0)).all();
        assert!(bool::try_from(binary).unwrap());
        // The blob survives (area within the scale range's bounds) and at least one mask moved.
        let area = f64::try_from(m.sum(Kind::Float)).unwrap();
        let out_area = f64::try_from(out.sum(Kind::Float)).unwrap();
        assert!(out_area > 0.4 * area && out_area < 1.8 * area, "{out_area} vs {area}");
        assert!(f64::try_from((out - m).abs().sum(Kind::Float)).unwrap() > 0.0);
    }

    #[test]
    fn drawn_parameters_match_configured_ranges() {
        let cfg = AugmentConfig::default();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let draws: Vec<AffineDraw> = (0..20000).map(|_| draw(&cfg, &mut rng)).collect();
        let n = draws.len() as f64;
        let mean = |f: &dyn Fn(&AffineDraw) -> f64| draws.iter().map(f).sum::<f64>() / n;
        let var = |f: &dyn Fn(&AffineDraw) -> f64, m: f64| draws.iter().map(|d| (f(d) - m).powi(2)).sum::<f64>() / n;
        assert!((mean(&|d| d.flip as u8 as f64) - 0.5).abs() < 0.02);
        // U(a, b): mean (a+b)/2, variance (b-a)^2/12
        let checks: [(&dyn Fn(&AffineDraw) -> f64, f64, f64); 5] = [
            (&|d| d.scale.0, 0.8, 1.2),
            (&|d| d.translate.1, -0.1, 0.1),
            (&|d| d.rotate_deg, -15.0, 15.0),
            (&|d| d.shear_deg, -8.0, 8.0),
            (&|d| d.pad[2], -0.1, 0.1),
        ];
        for (f, a, b) in checks {
            let m = mean(f);
            assert!((m - (a + b) / 2.0).abs() < 0.02 * (b - a), "mean {m} for [{a}, {b}]");
            let v = var(f, m);
            assert!((v / ((b - a).powi(2) / 12.0) - 1.0).abs() < 0.05, "variance {v} for [{a}, {b}]");
            assert!(draws.iter().all(|d| f(d) >= a && f(d) <= b));
        }
        // Every op comes first about equally often.
        for op in 0..6 {
            let share = draws.iter().filter(|d| d.order[0] == op).count() as f64 / n;
            assert!((share - 1.0 / 6.0).abs() < 0.02);
        }
    }

    #[test]
    fn sampling_theta_inverts_the_forward_map() {
        let d = draw(&AugmentConfig::default(), &mut ChaCha8Rng::seed_from_u64(4));
        let m = d.forward();
        let t = d.sampling_theta();
        let (x, y) = (0.3, -0.2);
        let (ox, oy) = (m[0][0] * x + m[0][1] * y + m[0][2], m[1][0] * x + m[1][1] * y + m[1][2]);
        let (bx, by) = (t[0] * ox + t[1] * oy + t[2], t[3] * ox + t[4] * oy + t[5]);
        assert!((bx - x).abs() < 1e-12 && (by - y).abs() < 1e-12);
    }
}
