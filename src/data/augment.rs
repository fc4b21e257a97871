//! Random geometric augmentation of masks (for synthesis) and of image/mask pairs (classic
//! augmentation).
//!
//! Every op (flip, pad/crop, scale, translate, rotate, shear) is an affine map of normalised
//! coordinates; the ops are drawn in random order and composed into one matrix, so each mask is
//! resampled once (no blur from repeated warps) and then re-binarised.
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

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
        AugmentConfig {
            flip_p: 0.5,
            pad_crop: 0.1,
            scale: (0.8, 1.2),
            translate: 0.1,
            rotate_deg: 15.0,
            shear_deg: 8.0,
        }
    }
}

impl AugmentConfig {
    /// All ranges zero: every draw is the identity.
    pub fn identity() -> Self {
        AugmentConfig { flip_p: 0.0, pad_crop: 0.0, scale: (1.0, 1.0), translate: 0.0, rotate_deg: 0.0, shear_deg: 0.0 }
    }
}

/// One drawn set of parameters (angles in degrees, fractions of the side). Axes are
/// (x, y, z) = (width, height, depth) of the tensor; 2-D draws leave z at the identity.
#[derive(Debug, Clone, PartialEq)]
pub struct AffineDraw {
    /// Spatial axes: 2 or 3.
    pub dims: usize,
    /// Mirror along x in 2-D (horizontal flip) and along z in 3-D (the volume's first axis,
    /// left-right in RAS-ordered MRI). Only one axis flips, so labels that name an anterior and a
    /// posterior part keep their meaning.
    pub flip: bool,
    /// Per axis: (low side, high side) padding (positive) or cropping (negative).
    pub pad: [(f64, f64); 3],
    pub scale: [f64; 3],
    pub translate: [f64; 3],
    /// Rotation about z (the only one in 2-D), then y, then x.
    pub rotate_deg: [f64; 3],
    /// x sheared along y.
    pub shear_deg: f64,
    /// Order in which the six ops are applied.
    pub order: [usize; 6],
}

pub(crate) fn uniform<R: Rng>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    if hi > lo {
        rng.gen_range(lo..hi)
    } else {
        lo
    }
}

/// Draws in a fixed order; 2-D draws consume the generator exactly as they always have.
pub fn draw<R: Rng>(cfg: &AugmentConfig, dims: usize, rng: &mut R) -> AffineDraw {
    let mut order = [0, 1, 2, 3, 4, 5];
    order.shuffle(rng);
    let p = cfg.pad_crop;
    let flip = rng.gen_bool(cfg.flip_p.clamp(0.0, 1.0));
    let mut pad = [(0.0, 0.0); 3];
    for side in pad.iter_mut().take(2) {
        *side = (uniform(rng, -p, p), uniform(rng, -p, p));
    }
    let mut scale = [1.0; 3];
    for s in scale.iter_mut().take(2) {
        *s = uniform(rng, cfg.scale.0, cfg.scale.1);
    }
    let mut translate = [0.0; 3];
    for t in translate.iter_mut().take(2) {
        *t = uniform(rng, -cfg.translate, cfg.translate);
    }
    let mut rotate_deg = [uniform(rng, -cfg.rotate_deg, cfg.rotate_deg), 0.0, 0.0];
    let shear_deg = uniform(rng, -cfg.shear_deg, cfg.shear_deg);
    if dims == 3 {
        pad[2] = (uniform(rng, -p, p), uniform(rng, -p, p));
        scale[2] = uniform(rng, cfg.scale.0, cfg.scale.1);
        translate[2] = uniform(rng, -cfg.translate, cfg.translate);
        rotate_deg[1] = uniform(rng, -cfg.rotate_deg, cfg.rotate_deg);
        rotate_deg[2] = uniform(rng, -cfg.rotate_deg, cfg.rotate_deg);
    }
    AffineDraw { dims, flip, pad, scale, translate, rotate_deg, shear_deg, order }
}

/// Homogeneous 3-D affine map of normalised coordinates (x, y, z, 1); x is the tensor's last
/// axis (width), z its first spatial axis in 3-D.
pub(crate) type Mat4 = [[f64; 4]; 4];

pub(crate) fn identity() -> Mat4 {
    let mut m = [[0.0; 4]; 4];
    for (i, row) in m.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    m
}

pub(crate) fn mul(a: &Mat4, b: &Mat4) -> Mat4 {
    let mut c = [[0.0; 4]; 4];
    for i in 0..4 {
        for j in 0..4 {
            c[i][j] = (0..4).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

pub(crate) fn diagonal(d: [f64; 3], t: [f64; 3]) -> Mat4 {
    let mut m = identity();
    for a in 0..3 {
        m[a][a] = d[a];
        m[a][3] = t[a];
    }
    m
}

/// Rotation by `deg` in the plane of axes (a, b).
pub(crate) fn rotation(a: usize, b: usize, deg: f64) -> Mat4 {
    let (s, c) = deg.to_radians().sin_cos();
    let mut m = identity();
    m[a][a] = c;
    m[a][b] = -s;
    m[b][a] = s;
    m[b][b] = c;
    m
}

/// Inverse of an affine map (linear part by Gauss-Jordan elimination with partial pivoting).
fn invert(m: &Mat4) -> Mat4 {
    let mut a = *m;
    let mut inv = identity();
    for col in 0..4 {
        let pivot = (col..4).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).unwrap();
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let d = a[col][col];
        for j in 0..4 {
            a[col][j] /= d;
            inv[col][j] /= d;
        }
        for i in 0..4 {
            if i != col {
                let f = a[i][col];
                for j in 0..4 {
                    a[i][j] -= f * a[col][j];
                    inv[i][j] -= f * inv[col][j];
                }
            }
        }
    }
    inv
}

impl AffineDraw {
    /// Forward map from input to output normalised coordinates ([-1, 1], x right, y down).
    pub fn forward(&self) -> Mat4 {
        let flip_axis = if self.dims == 3 { 2 } else { 0 };
        let mut mirror = [1.0; 3];
        if self.flip {
            mirror[flip_axis] = -1.0;
        }
        // Canvas grows to [-1-2lo, 1+2hi] per axis and is squeezed back into [-1, 1].
        let squeeze = self.pad.map(|(lo, hi)| 1.0 / (1.0 + lo + hi));
        let shift = self.pad.map(|(lo, hi)| (lo - hi) / (1.0 + lo + hi));
        let mut shear = identity();
        shear[0][1] = self.shear_deg.to_radians().tan();
        let r = self.rotate_deg;
        let ops: [Mat4; 6] = [
            diagonal(mirror, [0.0; 3]),
            diagonal(squeeze, shift),
            diagonal(self.scale, [0.0; 3]),
            diagonal([1.0; 3], self.translate.map(|t| 2.0 * t)),
            mul(&rotation(1, 2, r[2]), &mul(&rotation(0, 2, r[1]), &rotation(0, 1, r[0]))),
            shear,
        ];
        self.order.iter().fold(identity(), |acc, &i| mul(&ops[i], &acc))
    }

    /// The `dims x (dims + 1)` matrix grid sampling needs: output coordinates -> input
    /// coordinates, row-major.
    pub fn sampling_theta(&self) -> Vec<f64> {
        sampling_theta(&self.forward(), self.dims)
    }
}

/// The grid-sampling matrix of a forward map: its inverse's first `dims` rows and columns plus
/// the translation, row-major.
pub(crate) fn sampling_theta(forward: &Mat4, dims: usize) -> Vec<f64> {
    let inv = invert(forward);
    (0..dims).flat_map(|i| (0..dims).map(move |j| inv[i][j]).chain(std::iter::once(inv[i][3]))).collect()
}

pub(crate) fn warp(x: &Tensor, draws: &[AffineDraw]) -> Tensor {
    let thetas: Vec<f64> = draws.iter().flat_map(|d| d.sampling_theta()).collect();
    warp_with(x, &thetas)
}

/// The sampling grid of each case's grid-sampling matrix (concatenated in `thetas`) for a batch
/// of `size` `[B, C, spatial...]`.
pub(crate) fn affine_grid(thetas: &[f64], size: &[i64], kind: Kind, device: Device) -> Tensor {
    let n = (size.len() - 2) as i64;
    let theta = Tensor::from_slice(thetas).view([size[0], n, n + 1]).to_kind(kind).to_device(device);
    Tensor::affine_grid_generator(&theta, size, false)
}

/// Resamples each case of `x` with its grid-sampling matrix (concatenated in `thetas`):
/// (bi/tri)linear, zero outside.
pub(crate) fn warp_with(x: &Tensor, thetas: &[f64]) -> Tensor {
    x.grid_sampler(&affine_grid(thetas, &x.size(), x.kind(), x.device()), 0, 0, false)
}

pub(crate) fn draws<R: Rng>(x: &Tensor, cfg: &AugmentConfig, rng: &mut R) -> Vec<AffineDraw> {
    let dims = x.dim() - 2;
    (0..x.size()[0]).map(|_| draw(cfg, dims, rng)).collect()
}

/// Augments a batch of binary masks `[B, labels, spatial...]` and re-binarises them. One-hot
/// label channels stay disjoint: interpolated indicators sum to at most 1, so at most one
/// channel passes 0.5.
pub fn augment_masks<R: Rng>(masks: &Tensor, cfg: &AugmentConfig, rng: &mut R) -> Tensor {
    let draws = draws(masks, cfg, rng);
    warp(masks, &draws).gt(0.5).to_kind(masks.kind())
}

/// [`augment_masks`] (the same draws from `rng`), with the images the masks belong to moved
/// alike (no jitter): where a pasting generator takes each synthetic lesion's real pixels from.
pub fn augment_masks_with_images<R: Rng>(
    masks: &Tensor,
    images: &Tensor,
    cfg: &AugmentConfig,
    rng: &mut R,
) -> (Tensor, Tensor) {
    let draws = draws(masks, cfg, rng);
    (warp(masks, &draws).gt(0.5).to_kind(masks.kind()), warp(images, &draws))
}

/// Copy-paste augmentation for lesions (Ghiasi et al., CVPR 2021; CarveMix, Zhang et al.,
/// MICCAI 2021): with probability `p` per pair, the lesions of the batch's previous pair (the
/// last pair's for the first) are pasted into it, pixels and labels, the pasted label winning
/// where they overlap; the pair's own lesions stay labelled. One draw per pair from `rng`.
pub fn copy_paste<R: Rng>(images: &Tensor, masks: &Tensor, p: f64, rng: &mut R) -> (Tensor, Tensor) {
    let b = images.size()[0];
    let chosen: Vec<f32> = (0..b).map(|_| if rng.gen::<f64>() < p { 1.0 } else { 0.0 }).collect();
    let mut per_case = vec![b];
    per_case.extend(std::iter::repeat_n(1, images.dim() - 1));
    let chosen = Tensor::from_slice(&chosen).view(per_case.as_slice()).to_device(images.device());
    let (source_images, source_masks) = (images.roll([1], [0]), masks.roll([1], [0]));
    let pasted = source_masks.sum_dim_intlist(1, true, masks.kind()).gt(0.0).to_kind(masks.kind()) * chosen;
    let keep = 1.0 - &pasted;
    (images * &keep + source_images * &pasted, masks * &keep + source_masks * &pasted)
}

/// Classic augmentation: one geometric draw per pair applied to image and mask alike, plus
/// brightness and contrast jitter (up to +-`jitter`) on the image.
pub fn augment_pairs<R: Rng>(
    images: &Tensor,
    masks: &Tensor,
    cfg: &AugmentConfig,
    jitter: f64,
    rng: &mut R,
) -> (Tensor, Tensor) {
    let b = images.size()[0];
    let draws = draws(images, cfg, rng);
    let warped = warp(images, &draws);
    let masks = warp(masks, &draws).gt(0.5).to_kind(masks.kind());
    let mut per_case = vec![b];
    per_case.extend(std::iter::repeat_n(1, images.dim() - 1));
    let factors = |rng: &mut R| -> Tensor {
        let v: Vec<f32> = (0..b).map(|_| uniform(rng, -jitter, jitter) as f32).collect();
        Tensor::from_slice(&v).view(per_case.as_slice()).to_device(images.device())
    };
    let brightness = factors(rng);
    let contrast = factors(rng) + 1.0;
    let case_axes: Vec<i64> = (1..warped.dim() as i64).collect();
    let mean = warped.mean_dim(case_axes.as_slice(), true, Kind::Float);
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
        ((x - c).square() + (y - c).square())
            .lt((size as f64 / 4.0).powi(2))
            .to_kind(Kind::Float)
            .view([1, 1, size, size])
    }

    #[test]
    fn identity_when_all_ranges_are_zero() {
        let m = disc(32).repeat([3, 1, 1, 1]);
        let out = augment_masks(&m, &AugmentConfig::identity(), &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(out.size(), m.size());
        assert_eq!(f64::try_from((out - &m).abs().max()).unwrap(), 0.0);
    }

    /// At p = 1 every pair gets the previous pair's lesion, pixels and label, over its own and
    /// beside it; at p = 0 nothing changes.
    #[test]
    fn copy_paste_moves_lesions_with_their_labels() {
        let square = |at: i64| {
            let m = Tensor::zeros([1, 1, 16, 16], (Kind::Float, tch::Device::Cpu));
            let _ = m.narrow(2, at, 4).narrow(3, at, 4).fill_(1.0);
            m
        };
        let masks = Tensor::cat(&[square(2), square(8)], 0);
        let images = Tensor::rand([2, 3, 16, 16], (Kind::Float, tch::Device::Cpu));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (x, m) = copy_paste(&images, &masks, 0.0, &mut rng);
        assert!(x.equal(&images) && m.equal(&masks));
        let (x, m) = copy_paste(&images, &masks, 1.0, &mut rng);
        let both = (&masks + masks.roll([1], [0])).clamp_max(1.0);
        assert!(m.equal(&both), "labels: own and pasted lesion");
        // Pair 0 carries pair 1's lesion pixels, and its own elsewhere.
        let (pasted, elsewhere): (Tensor, Tensor) = (masks.get(1), 1.0 - masks.get(1));
        assert!((x.get(0) * &pasted).equal(&(images.get(1) * &pasted)));
        assert!((x.get(0) * &elsewhere).equal(&(images.get(0) * &elsewhere)));
    }

    /// The same masks as [`augment_masks`] from the same seed (a mask-only generator's pairs do
    /// not change), and each image moved with its mask: an image equal to its mask stays equal.
    #[test]
    fn images_move_with_their_masks() {
        let m = disc(48).repeat([4, 1, 1, 1]);
        let alone = augment_masks(&m, &AugmentConfig::default(), &mut ChaCha8Rng::seed_from_u64(3));
        let images = m.repeat([1, 3, 1, 1]);
        let (masks, moved) =
            augment_masks_with_images(&m, &images, &AugmentConfig::default(), &mut ChaCha8Rng::seed_from_u64(3));
        assert!(masks.equal(&alone));
        let disagree = moved.gt(0.5).to_kind(Kind::Float).ne_tensor(&masks.repeat([1, 3, 1, 1])).sum(Kind::Float);
        assert_eq!(f64::try_from(disagree).unwrap(), 0.0);
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
        let draws: Vec<AffineDraw> = (0..20000).map(|_| draw(&cfg, 2, &mut rng)).collect();
        let n = draws.len() as f64;
        let mean = |f: &dyn Fn(&AffineDraw) -> f64| draws.iter().map(f).sum::<f64>() / n;
        let var = |f: &dyn Fn(&AffineDraw) -> f64, m: f64| draws.iter().map(|d| (f(d) - m).powi(2)).sum::<f64>() / n;
        assert!((mean(&|d| d.flip as u8 as f64) - 0.5).abs() < 0.02);
        // U(a, b): mean (a+b)/2, variance (b-a)^2/12
        type Uniform<'a> = (&'a dyn Fn(&AffineDraw) -> f64, f64, f64);
        let checks: [Uniform; 5] = [
            (&|d| d.scale[0], 0.8, 1.2),
            (&|d| d.translate[1], -0.1, 0.1),
            (&|d| d.rotate_deg[0], -15.0, 15.0),
            (&|d| d.shear_deg, -8.0, 8.0),
            (&|d| d.pad[1].0, -0.1, 0.1),
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
        for dims in [2, 3] {
            let d = draw(&AugmentConfig::default(), dims, &mut ChaCha8Rng::seed_from_u64(4));
            let m = d.forward();
            let t = d.sampling_theta();
            let p = [0.3, -0.2, 0.1];
            let q: Vec<f64> = (0..dims).map(|i| (0..dims).map(|j| m[i][j] * p[j]).sum::<f64>() + m[i][3]).collect();
            for i in 0..dims {
                let back = (0..dims).map(|j| t[i * (dims + 1) + j] * q[j]).sum::<f64>() + t[i * (dims + 1) + dims];
                assert!((back - p[i]).abs() < 1e-12, "{dims}-D axis {i}: {back} vs {}", p[i]);
            }
        }
    }

    /// 2-D draws leave the third axis alone; 3-D draws move it and keep label channels disjoint.
    #[test]
    fn three_d_masks_stay_binary_and_disjoint() {
        let d = draw(&AugmentConfig::default(), 2, &mut ChaCha8Rng::seed_from_u64(5));
        assert_eq!((d.scale[2], d.translate[2], d.pad[2], d.rotate_deg[1]), (1.0, 0.0, (0.0, 0.0), 0.0));
        let size = 16;
        let r = Tensor::arange(size, (Kind::Float, tch::Device::Cpu));
        let z = r.view([size, 1, 1]);
        let y = r.view([1, size, 1]);
        let x = r.view([1, 1, size]);
        let ball = ((x - 8.0).square() + (y - 8.0).square() + (z - 8.0).square()).lt(25.0).to_kind(Kind::Float);
        let front = ball.shallow_clone() * r.view([size, 1, 1]).lt(8.0).to_kind(Kind::Float);
        let back = &ball - &front;
        let masks = Tensor::stack(&[front, back], 0).unsqueeze(0).repeat([4, 1, 1, 1, 1]);
        let out = augment_masks(&masks, &AugmentConfig::default(), &mut ChaCha8Rng::seed_from_u64(6));
        assert_eq!(out.size(), vec![4, 2, 16, 16, 16]);
        assert!(bool::try_from(out.eq(0.0).logical_or(&out.eq(1.0)).all()).unwrap());
        assert_eq!(f64::try_from(out.sum_dim_intlist(1, false, Kind::Float).max()).unwrap(), 1.0);
        assert!(f64::try_from((&out - &masks).abs().sum(Kind::Float)).unwrap() > 0.0);
        let identity = augment_masks(&masks, &AugmentConfig::identity(), &mut ChaCha8Rng::seed_from_u64(7));
        assert_eq!(f64::try_from((identity - masks).abs().max()).unwrap(), 0.0);
    }
}
