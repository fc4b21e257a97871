//! The views of unlabelled images that semi-supervised training compares (after UniMatch, Yang
//! et al., CVPR 2023, more-scenarios/medical): a weak view (the run's geometric augmentation) whose
//! prediction is the pseudo-label, and strong views of it (colour jitter, greyscale, blur, then
//! CutMix with another image) that must match it. Strong views keep the weak view's geometry,
//! so a pseudo-label stays aligned with every view of its image. 2-D and 3-D alike.
use super::augment::{draws, uniform, warp, AugmentConfig};
use rand::Rng;
use tch::{Kind, Tensor};

/// The weak view: one geometric draw of the run's augmentation per image.
pub fn weak_view<R: Rng>(images: &Tensor, cfg: &AugmentConfig, rng: &mut R) -> Tensor {
    warp(images, &draws(images, cfg, rng))
}

/// UniMatch's photometric chain on each case: colour jitter (brightness, contrast, saturation
/// by up to 0.5) with p 0.8, greyscale with p 0.2 (colour images), Gaussian blur with p 0.5
/// (sigma 0.1-2 px at 256 px, scaled to the side). Hue jitter is left out: it has no meaning for
/// grey images and volumes, and little for the reddish tones of endoscopy and skin.
pub fn strong_view<R: Rng>(images: &Tensor, rng: &mut R) -> Tensor {
    let cases: Vec<Tensor> = (0..images.size()[0]).map(|i| strong_case(&images.narrow(0, i, 1), rng)).collect();
    Tensor::cat(&cases, 0)
}

fn strong_case<R: Rng>(x: &Tensor, rng: &mut R) -> Tensor {
    let colour = x.size()[1] == 3;
    let mut x = x.shallow_clone();
    if rng.gen::<f64>() < 0.8 {
        let (b, c, s) = (uniform(rng, 0.5, 1.5), uniform(rng, 0.5, 1.5), uniform(rng, 0.5, 1.5));
        x = (&x * b).clamp(0.0, 1.0);
        let mean = grey(&x).mean(Kind::Float);
        x = ((&x - &mean) * c + &mean).clamp(0.0, 1.0);
        if colour {
            let g = grey(&x);
            x = ((&x - &g) * s + &g).clamp(0.0, 1.0);
        }
    }
    if colour && rng.gen::<f64>() < 0.2 {
        x = grey(&x).expand_as(&x).contiguous();
    }
    if rng.gen::<f64>() < 0.5 {
        let side = *x.size().last().expect("a spatial axis") as f64;
        x = gaussian_blur(&x, uniform(rng, 0.1, 2.0) * side / 256.0);
    }
    x
}

/// Luma of colour images (ITU-R 601 weights), the image itself for one channel; `[B, 1, ...]`.
fn grey(x: &Tensor) -> Tensor {
    if x.size()[1] != 3 {
        return x.shallow_clone();
    }
    let w = Tensor::from_slice(&[0.299f32, 0.587, 0.114]).to_device(x.device()).to_kind(x.kind());
    let mut shape = vec![1, 3];
    shape.extend(std::iter::repeat_n(1, x.dim() - 2));
    (x * w.view(shape.as_slice())).sum_dim_intlist(1, true, x.kind())
}

/// Separable Gaussian blur along every spatial axis, reflecting at the borders; sigma in pixels
/// (below 0.1 the image is returned as is).
pub fn gaussian_blur(x: &Tensor, sigma: f64) -> Tensor {
    if sigma < 0.1 {
        return x.shallow_clone();
    }
    let radius = (3.0 * sigma).ceil() as i64;
    let taps: Vec<f32> = (-radius..=radius).map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp() as f32).collect();
    let total: f32 = taps.iter().sum();
    let kernel = Tensor::from_slice(&taps.iter().map(|t| t / total).collect::<Vec<_>>()).to_kind(x.kind());
    let (channels, dims) = (x.size()[1], x.dim() - 2);
    let mut out = x.shallow_clone();
    for axis in 0..dims {
        let mut shape = vec![1, 1];
        shape.extend((0..dims).map(|a| if a == axis { 2 * radius + 1 } else { 1 }));
        let mut copies = vec![channels];
        copies.extend(std::iter::repeat_n(1, dims + 1));
        let weight = kernel.view(shape.as_slice()).repeat(copies.as_slice()).to_device(x.device());
        // Reflection needs the padded axis longer than the radius; smaller images are replicated.
        let side = out.size()[2 + axis];
        let mut pad = vec![0i64; 2 * dims];
        let at = 2 * (dims - 1 - axis);
        (pad[at], pad[at + 1]) = (radius, radius);
        let mode = if side > radius { "reflect" } else { "replicate" };
        let padded = out.pad(pad.as_slice(), mode, None);
        out = match dims {
            2 => padded.conv2d(&weight, None::<Tensor>, [1, 1], [0, 0], [1, 1], channels),
            _ => padded.conv3d(&weight, None::<Tensor>, [1, 1, 1], [0, 0, 0], [1, 1, 1], channels),
        };
    }
    out
}

/// CutMix boxes `[B, 1, spatial...]` (1 inside): with p 0.5 per case a box of 2-40 % of the
/// image (volume) with side ratios in [0.3, 1/0.3], placed uniformly; else no box.
pub fn cutmix_boxes<R: Rng>(like: &Tensor, rng: &mut R) -> Tensor {
    let size = like.size();
    let spatial = &size[2..];
    let mut boxes = Vec::with_capacity(size[0] as usize);
    for _ in 0..size[0] {
        let b = Tensor::zeros(spatial, (Kind::Float, like.device()));
        if rng.gen::<f64>() < 0.5 {
            let share = uniform(rng, 0.02, 0.4);
            let ratios: Vec<f64> = spatial.iter().map(|_| uniform(rng, 0.3, 1.0 / 0.3).ln()).collect();
            // Sides proportional to exp(ratio - mean ratio), their product the drawn share.
            let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
            let root = share.powf(1.0 / spatial.len() as f64);
            let mut region = b.shallow_clone();
            for (axis, (&side, r)) in spatial.iter().zip(&ratios).enumerate() {
                let len = ((root * (r - mean).exp() * side as f64).round() as i64).clamp(1, side);
                let start = rng.gen_range(0..=side - len);
                region = region.narrow(axis as i64, start, len);
            }
            let _ = region.fill_(1.0);
        }
        boxes.push(b.unsqueeze(0));
    }
    Tensor::stack(&boxes, 0).to_kind(like.kind())
}

/// `a` outside each case's box, `b` inside (images, pseudo-labels and confidences alike).
pub fn mix(a: &Tensor, b: &Tensor, boxes: &Tensor) -> Tensor {
    a * (1.0 - boxes) + b * boxes
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use tch::Device;

    #[test]
    fn blur_keeps_a_constant_image_and_the_mean() {
        for shape in [vec![2i64, 3, 16, 16], vec![1, 1, 8, 12, 10]] {
            let flat = Tensor::full(shape.as_slice(), 0.3, (Kind::Float, Device::Cpu));
            assert!(f64::try_from((gaussian_blur(&flat, 1.5) - 0.3).abs().max()).unwrap() < 1e-6);
            let x = Tensor::rand(shape.as_slice(), (Kind::Float, Device::Cpu));
            let y = gaussian_blur(&x, 1.0);
            assert_eq!(y.size(), x.size());
            let (mx, my) = (f64::try_from(x.mean(Kind::Float)).unwrap(), f64::try_from(y.mean(Kind::Float)).unwrap());
            assert!((mx - my).abs() < 0.02, "{mx} {my}");
            assert!(f64::try_from(y.std(true)).unwrap() < f64::try_from(x.std(true)).unwrap());
        }
    }

    #[test]
    fn boxes_are_binary_boxes_of_the_drawn_share() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let like = Tensor::zeros([64, 1, 32, 32], (Kind::Float, Device::Cpu));
        let boxes = cutmix_boxes(&like, &mut rng);
        assert_eq!(boxes.size(), [64, 1, 32, 32]);
        let share = Vec::<f32>::try_from(boxes.mean_dim([1i64, 2, 3].as_slice(), false, Kind::Float)).unwrap();
        let with = share.iter().filter(|&&s| s > 0.0).count();
        assert!((16..48).contains(&with), "about half the cases get a box: {with}");
        assert!(share.iter().all(|&s| s == 0.0 || (0.005..0.5).contains(&s)), "{share:?}");
        let volumes = cutmix_boxes(&Tensor::zeros([4, 1, 8, 12, 10], (Kind::Float, Device::Cpu)), &mut rng);
        assert_eq!(volumes.size(), [4, 1, 8, 12, 10]);
    }

    #[test]
    fn strong_views_stay_images_of_the_same_shape() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x = Tensor::rand([6, 3, 16, 16], (Kind::Float, Device::Cpu));
        let s = strong_view(&x, &mut rng);
        assert_eq!(s.size(), x.size());
        let (lo, hi) = (f64::try_from(s.min()).unwrap(), f64::try_from(s.max()).unwrap());
        assert!((0.0..=1.0).contains(&lo) && hi <= 1.0 + 1e-6);
        assert!(!s.allclose(&x, 1e-4, 1e-4, false), "some case changed");
    }
}
