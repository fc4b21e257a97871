//! DiffAugment (Zhao et al., NeurIPS 2020, policy "color,translation,cutout") for the
//! conditional PatchGAN: the discriminator sees augmented (mask, image) pairs, real and fake
//! alike, so that it cannot memorise the few real images and the generator is not pulled towards
//! them. Every op is differentiable in the image, so the generator's gradient passes through.
//!
//! Ranges are the paper's: brightness + U(-0.5, 0.5), saturation x U(0, 2), contrast
//! x U(0.5, 1.5) (images in [-1, 1], colour ops on the image channels only); translation by up
//! to 1/8 of each side with zero fill; cutout of one box half the side per axis. The spatial ops
//! move mask and image channels together, so the pair stays aligned. Draws come from libtorch's
//! generator, which the training loops seed per step.
use tch::{Device, Kind, Tensor};

/// One draw per case, applied to `mask` `[B, L, spatial...]` and `image` `[B, C, spatial...]`.
pub fn diff_augment(mask: &Tensor, image: &Tensor) -> (Tensor, Tensor) {
    let image = contrast(&saturation(&brightness(image)));
    let pair = Tensor::cat(&[mask, &image], 1);
    let pair = cutout(&translation(&pair));
    let labels = mask.size()[1];
    (pair.narrow(1, 0, labels), pair.narrow(1, labels, image.size()[1]))
}

/// `[B, 1, 1...]` uniform draws in [0, 1) on `x`'s device, broadcastable over a case.
fn per_case(x: &Tensor) -> Tensor {
    let mut shape = vec![x.size()[0]];
    shape.extend(std::iter::repeat_n(1, x.dim() - 1));
    Tensor::rand(shape.as_slice(), (x.kind(), Device::Cpu)).to_device(x.device())
}

fn brightness(x: &Tensor) -> Tensor {
    x + (per_case(x) - 0.5)
}

fn saturation(x: &Tensor) -> Tensor {
    let mean = x.mean_dim(1, true, x.kind());
    (x - &mean) * (per_case(x) * 2.0) + mean
}

fn contrast(x: &Tensor) -> Tensor {
    let axes: Vec<i64> = (1..x.dim() as i64).collect();
    let mean = x.mean_dim(axes.as_slice(), true, x.kind());
    (x - &mean) * (per_case(x) + 0.5) + mean
}

/// Integers drawn uniformly from `lo..=hi`, one per case.
fn integers(cases: i64, lo: i64, hi: i64) -> Vec<i64> {
    let u = Vec::<f32>::try_from(Tensor::rand([cases], (Kind::Float, Device::Cpu))).unwrap();
    u.into_iter().map(|u| (lo + (u as f64 * (hi - lo + 1) as f64) as i64).min(hi)).collect()
}

/// Each case shifted by up to 1/8 of each side (rounded), zero-filled.
fn translation(x: &Tensor) -> Tensor {
    let spatial = &x.size()[2..];
    let shifts: Vec<Vec<i64>> = spatial
        .iter()
        .map(|&side| {
            let s = (side as f64 * 0.125 + 0.5) as i64;
            integers(x.size()[0], -s, s)
        })
        .collect();
    let cases: Vec<Tensor> = (0..x.size()[0])
        .map(|i| {
            let mut case = x.get(i);
            for (axis, per_axis) in shifts.iter().enumerate() {
                case = shift_zero_fill(&case, axis as i64 + 1, per_axis[i as usize]);
            }
            case
        })
        .collect();
    Tensor::stack(&cases, 0)
}

/// `x` moved by `by` along `axis`; what enters is 0.
fn shift_zero_fill(x: &Tensor, axis: i64, by: i64) -> Tensor {
    let side = x.size()[axis as usize];
    if by == 0 {
        return x.shallow_clone();
    }
    let kept = x.narrow(axis, if by > 0 { 0 } else { -by }, side - by.abs());
    let mut zero_shape = x.size();
    zero_shape[axis as usize] = by.abs();
    let zeros = Tensor::zeros(zero_shape.as_slice(), (x.kind(), x.device()));
    if by > 0 {
        Tensor::cat(&[zeros, kept], axis)
    } else {
        Tensor::cat(&[kept, zeros], axis)
    }
}

/// One box per case, half of each side, centred anywhere in the image (clipped at the border),
/// set to 0 in every channel.
fn cutout(x: &Tensor) -> Tensor {
    let spatial = x.size()[2..].to_vec();
    let cases = x.size()[0];
    let centres: Vec<Vec<i64>> = spatial.iter().map(|&side| integers(cases, 0, side - 1)).collect();
    let keep: Vec<Tensor> = (0..cases)
        .map(|i| {
            let mut keep = Tensor::ones(spatial.as_slice(), (x.kind(), Device::Cpu));
            let mut boxed = keep.shallow_clone();
            for (axis, &side) in spatial.iter().enumerate() {
                let half = (side as f64 * 0.5 + 0.5) as i64 / 2;
                let lo = (centres[axis][i as usize] - half).max(0);
                let hi = (centres[axis][i as usize] + half).min(side);
                boxed = boxed.narrow(axis as i64, lo, hi - lo);
            }
            let _ = boxed.fill_(0.0);
            keep = keep.unsqueeze(0);
            keep
        })
        .collect();
    x * Tensor::stack(&keep, 0).to_device(x.device())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mask and image channels move by the same translation and lose the same cutout box.
    /// The image encodes the mask (1 + mask); colour ops keep the order within a case and never
    /// reach 0, so after augmentation every pixel on in the mask has a non-zero image value
    /// above every pixel off in the mask that was not zero-filled.
    #[test]
    fn mask_and_image_move_together_and_gradients_reach_the_image() {
        tch::manual_seed(11);
        for shape in [vec![6i64, 1, 32, 24], vec![3, 1, 8, 12, 16]] {
            let mask = Tensor::rand(shape.as_slice(), (Kind::Float, Device::Cpu)).gt(0.5).to_kind(Kind::Float);
            let image = (&mask + 1.0).set_requires_grad(true);
            let (m, x) = diff_augment(&mask, &image);
            assert_eq!((m.size(), x.size()), (mask.size(), image.size()));
            let x = x.detach();
            let mut filled = 0;
            for i in 0..shape[0] {
                let (on, xi) = (m.get(i).gt(0.5), x.get(i));
                let nonzero = xi.abs().gt(1e-6);
                filled += i64::try_from(nonzero.logical_not().sum(Kind::Int64)).unwrap();
                let hi = xi.masked_select(&on);
                assert!(
                    f64::try_from(hi.abs().min()).unwrap() > 1e-6,
                    "case {i}: a zero-filled pixel is on in the mask"
                );
                let lo = xi.masked_select(&on.logical_not().logical_and(&nonzero));
                assert!(f64::try_from(hi.min()).unwrap() > f64::try_from(lo.max()).unwrap(), "case {i}: misaligned");
            }
            assert!(filled > 0, "cutout always zeroes a box");
            let (_, x) = diff_augment(&mask, &image);
            let g = Tensor::run_backward(&[x.sum(Kind::Float)], &[&image], false, false);
            assert!(f64::try_from(g[0].abs().sum(Kind::Float)).unwrap() > 0.0);
        }
    }

    #[test]
    fn translation_shifts_with_zero_fill() {
        let x = Tensor::arange(5, (Kind::Float, Device::Cpu)) + 1.0;
        assert_eq!(
            Vec::<f32>::try_from(shift_zero_fill(&x.view([1, 5]), 1, 2).view([5])).unwrap(),
            [0., 0., 1., 2., 3.]
        );
        assert_eq!(
            Vec::<f32>::try_from(shift_zero_fill(&x.view([1, 5]), 1, -1).view([5])).unwrap(),
            [2., 3., 4., 5., 0.]
        );
    }
}
