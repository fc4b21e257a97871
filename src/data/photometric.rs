//! The photometric chain the GenSeg reference applies to its synthetic ISIC images before the
//! segmenter sees them (../shared/reference/genseg-method.md section 6): the batch min-max
//! normalised to [0, 255], then one draw per batch of torchvision's RandomEqualize (p 0.5),
//! RandomPosterize to 4 bits (p 1), RandomAdjustSharpness with factor 0.3 (p 0.5),
//! RandomAutocontrast (p 0.5) and ColorJitter with saturation in [0.5, 1.5]; back to [0, 1].
//!
//! Equalising and posterising are step functions, so the chain passes gradients straight
//! through (the output is x + (chain(x) - x) detached): the genseg arm's hypergradient still
//! reaches the generator, as if the chain were the identity.
use rand::Rng;
use tch::{Kind, Tensor};

/// One draw of the chain: which of the optional ops run, and the saturation factor.
#[derive(Debug, Clone, PartialEq)]
pub struct PhotometricDraw {
    pub equalize: bool,
    pub sharpen: bool,
    pub autocontrast: bool,
    pub saturation: f64,
}

pub fn draw<R: Rng>(rng: &mut R) -> PhotometricDraw {
    PhotometricDraw {
        equalize: rng.gen_bool(0.5),
        sharpen: rng.gen_bool(0.5),
        autocontrast: rng.gen_bool(0.5),
        saturation: rng.gen_range(0.5..1.5),
    }
}

/// The chain on synthetic images `[B, C, H, W]` in [0, 1], one draw for the batch.
pub fn augment<R: Rng>(images: &Tensor, rng: &mut R) -> Tensor {
    apply(images, &draw(rng))
}

pub fn apply(images: &Tensor, d: &PhotometricDraw) -> Tensor {
    let x = images.detach();
    let (lo, hi) = (x.min(), x.max());
    let mut q = ((&x - &lo) / (hi - &lo + 1e-8) * 255.0 + 0.5).floor().clamp(0.0, 255.0);
    if d.equalize {
        q = per_plane(&q, equalize);
    }
    q = (&q / 16.0).floor() * 16.0;
    if d.sharpen {
        q = sharpness(&q, 0.3);
    }
    if d.autocontrast {
        q = per_plane(&q, autocontrast);
    }
    if q.size()[1] == 3 {
        q = saturate(&q, d.saturation);
    }
    let out = q / 255.0;
    images + (out - images).detach()
}

/// `f` on every (image, channel) plane `[H, W]`.
fn per_plane(x: &Tensor, f: fn(&Tensor) -> Tensor) -> Tensor {
    let (b, c) = (x.size()[0], x.size()[1]);
    let planes: Vec<Tensor> =
        (0..b).flat_map(|i| (0..c).map(move |j| (i, j))).map(|(i, j)| f(&x.get(i).get(j))).collect();
    Tensor::stack(&planes, 0).view(x.size().as_slice())
}

/// torchvision's equalize of one uint8-valued plane: a lookup table from the cumulative
/// histogram, steps of (pixels - count of the top level) / 255.
fn equalize(plane: &Tensor) -> Tensor {
    let levels = plane.to_kind(Kind::Int64).flatten(0, -1);
    let hist = levels.bincount(None::<Tensor>, 256);
    let counts = Vec::<i64>::try_from(&hist).unwrap();
    let last = counts.iter().rposition(|&c| c > 0).map(|i| counts[i]).unwrap_or(0);
    let step = (counts.iter().sum::<i64>() - last) / 255;
    if step == 0 {
        return plane.shallow_clone();
    }
    let mut lut = vec![0.0f32; 256];
    let mut cumulative = 0;
    for (level, &c) in counts.iter().enumerate().take(255) {
        cumulative += c;
        lut[level + 1] = ((cumulative + step / 2) / step).min(255) as f32;
    }
    let lut = Tensor::from_slice(&lut).to_device(plane.device());
    lut.index_select(0, &levels).view(plane.size().as_slice()).to_kind(plane.kind())
}

/// torchvision's autocontrast of one plane: its range stretched to [0, 255].
fn autocontrast(plane: &Tensor) -> Tensor {
    let (lo, hi) = (f64::try_from(plane.min()).unwrap(), f64::try_from(plane.max()).unwrap());
    if hi <= lo {
        return plane.shallow_clone();
    }
    ((plane - lo) * (255.0 / (hi - lo))).clamp(0.0, 255.0)
}

/// torchvision's adjust_sharpness: a blend with the image smoothed by the 3x3 kernel
/// [[1,1,1],[1,5,1],[1,1,1]] / 13 (border pixels keep their value); `factor` < 1 blurs.
fn sharpness(x: &Tensor, factor: f64) -> Tensor {
    let c = x.size()[1];
    let k: Vec<f32> = [1., 1., 1., 1., 5., 1., 1., 1., 1.].iter().map(|v| v / 13.0).collect();
    let kernel = Tensor::from_slice(&k).view([1, 1, 3, 3]).repeat([c, 1, 1, 1]).to_kind(x.kind()).to_device(x.device());
    let smooth = x.conv2d(&kernel, None::<Tensor>, [1, 1], [0, 0], [1, 1], c).round();
    let (h, w) = (x.size()[2], x.size()[3]);
    let degenerate = x.copy();
    degenerate.narrow(2, 1, h - 2).narrow(3, 1, w - 2).copy_(&smooth);
    (x * factor + degenerate * (1.0 - factor)).clamp(0.0, 255.0).round()
}

/// ColorJitter's saturation: a blend with the image's grey version (ITU-R 601-2 luma).
fn saturate(x: &Tensor, factor: f64) -> Tensor {
    let weights =
        Tensor::from_slice(&[0.2989f32, 0.587, 0.114]).view([1, 3, 1, 1]).to_kind(x.kind()).to_device(x.device());
    let grey = (x * weights).sum_dim_intlist(1, true, x.kind()).floor();
    (x * factor + grey * (1.0 - factor)).clamp(0.0, 255.0).round()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use tch::Device;

    #[test]
    fn chain_keeps_range_posterises_and_passes_gradients_straight_through() {
        tch::manual_seed(4);
        let x = Tensor::rand([2, 3, 16, 16], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        for _ in 0..8 {
            let d = draw(&mut rng);
            let y = apply(&x, &d);
            assert_eq!(y.size(), x.size());
            let (lo, hi) = (f64::try_from(y.min()).unwrap(), f64::try_from(y.max()).unwrap());
            assert!(lo >= 0.0 && hi <= 1.0, "{d:?}: {lo}..{hi}");
            let g = Tensor::run_backward(&[(&y * 2.0).sum(Kind::Float)], &[&x], false, false);
            assert!(f64::try_from((&g[0] - 2.0).abs().max()).unwrap() < 1e-6, "straight-through gradient");
        }
        // Without sharpening, autocontrast and saturation, at most 16 grey levels remain.
        let plain = PhotometricDraw { equalize: false, sharpen: false, autocontrast: false, saturation: 1.0 };
        let y = apply(&x, &plain);
        let levels =
            (y.detach() * 255.0).round().to_kind(Kind::Int64).flatten(0, -1).unique_dim(0, true, false, false).0;
        assert!(levels.size()[0] <= 16, "{} levels", levels.size()[0]);
    }

    /// Equalising a plane whose values crowd into a few levels spreads them over the range,
    /// keeping their order.
    #[test]
    fn equalize_spreads_a_narrow_histogram() {
        let plane = (Tensor::arange(4096, (Kind::Float, Device::Cpu)).remainder(4) + 100.0).view([64, 64]);
        let e = equalize(&plane);
        let values = Vec::<f32>::try_from(e.flatten(0, -1)).unwrap();
        let mut distinct: Vec<f32> = values.clone();
        distinct.sort_by(f32::total_cmp);
        distinct.dedup();
        assert_eq!(distinct.len(), 4);
        assert!(distinct[3] - distinct[0] > 150.0, "{distinct:?}");
        assert!(values[0] < values[1] && values[1] < values[2] && values[2] < values[3]);
    }
}
