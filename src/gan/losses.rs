//! The GAN's losses beside the adversarial one: feature matching, mode seeking, the lesion-weighted
//! L1 and the segmenting discriminator's cross-entropies.
use super::*;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct GanLosses {
    pub d: f64,
    pub g_adv: f64,
    pub l1: f64,
}

/// pix2pixHD's feature matching: the mean over the discriminator's hidden layers of the L1
/// distance between its activations for the fake and (fixed) real pair.
pub fn feature_matching(d: &PatchGan, masks: &Tensor, fake: &Tensor, real: &Tensor) -> Tensor {
    let real_features: Vec<Tensor> = tch::no_grad(|| d.features(masks, real, true));
    let fake_features = d.features(masks, fake, true);
    let hidden = fake_features.len() - 1;
    fake_features
        .iter()
        .zip(&real_features)
        .take(hidden)
        .map(|(f, r)| (f - r).abs().mean(Kind::Float))
        .reduce(|a, b| a + b)
        .expect("the discriminator has hidden layers")
        / hidden as f64
}

/// Mode seeking's penalty for a batch whose second half repeats the first half's masks with
/// other codes: 1 / (mean |fake1 - fake2| / mean |z1 - z2| + 1e-5), large when different codes
/// give the same image.
pub fn mode_seeking(fake: &Tensor, code: &Tensor) -> Tensor {
    let half = fake.size()[0] / 2;
    let images = (fake.narrow(0, 0, half) - fake.narrow(0, half, half)).abs().mean(Kind::Float);
    let codes = (code.narrow(0, 0, half) - code.narrow(0, half, half)).abs().mean(Kind::Float);
    (images / codes + 1e-5).reciprocal()
}

/// The mean of `error` (`[B, C, spatial...]`) over the pixels where `region` (`[B, 1, ...]`) is 1
/// (0 for an empty region).
pub(super) fn mean_over(error: &Tensor, region: &Tensor) -> Tensor {
    let channels = error.size()[1] as f64;
    (error * region).sum(Kind::Float) / (region.sum(Kind::Float) * channels).clamp_min(1.0)
}

/// `[B, 1, spatial...]`, true where any label of `masks` is.
pub(super) fn foreground(masks: &Tensor) -> Tensor {
    masks.sum_dim_intlist(1, true, masks.kind()).gt(0.0)
}

/// An inpainting generator's L1: the mean of the lesion pixels' error and of the other hole
/// pixels' error, so that a small lesion still weighs half. Over the hole as a whole, drawing
/// skin everywhere costs little and the generator learned to erase lesions (docs/RESULTS.md
/// section 15).
pub(super) fn lesion_balanced_l1(error: &Tensor, masks: &Tensor, hole: &Tensor) -> Tensor {
    let lesion = foreground(masks).to_kind(hole.kind());
    let surroundings = hole - &lesion;
    (mean_over(error, &lesion) + mean_over(error, &surroundings)) * 0.5
}

/// The colour shift a lesion pasted from another image carries (its lighting, its camera): per
/// case and channel a gain in [0.75, 1.25] and an offset in [-0.1, 0.1], clamped to [0, 1]. A
/// pasting generator learns to undo it.
pub(super) fn shift_colours(images: &Tensor, rng: &mut impl Rng) -> Tensor {
    let (b, c) = (images.size()[0], images.size()[1]);
    let mut shape = vec![b, c];
    shape.extend(std::iter::repeat_n(1, images.dim() - 2));
    let mut draw = |lo: f32, hi: f32| {
        let v: Vec<f32> = (0..b * c).map(|_| rng.gen_range(lo..hi)).collect();
        Tensor::from_slice(&v).view(shape.as_slice()).to_device(images.device())
    };
    let (gain, offset) = (draw(0.75, 1.25), draw(-0.1, 0.1));
    (images * gain + offset).clamp(0.0, 1.0)
}

pub(super) fn bce_to(logits: &Tensor, target: f64) -> Tensor {
    let logits = full_precision(logits);
    logits.binary_cross_entropy_with_logits::<Tensor>(&logits.full_like(target), None, None, Reduction::Mean)
}

/// The segmenting discriminator's class of each pixel of a real pair: 1 background, 2 + k where
/// label k is (the first one, where labels overlap). `[B, spatial...]`, int64; class 0 is "fake".
pub fn pixel_classes(masks: &Tensor) -> Tensor {
    let labelled = foreground(masks).squeeze_dim(1);
    let label = masks.argmax(1, false) + 2;
    label.where_self(&labelled, &label.ones_like())
}

/// OASIS's class-balanced cross-entropy towards `classes`: each class present in the batch
/// weighs the same in total, so a small lesion counts as much as the background around it.
pub fn balanced_cross_entropy(logits: &Tensor, classes: &Tensor) -> Tensor {
    let logits = full_precision(logits);
    let count = classes.flatten(0, -1).bincount::<Tensor>(None, logits.size()[1]).to_kind(Kind::Float);
    let present = count.gt(0.0).sum(Kind::Float);
    let class_weight = (count.clamp_min(1.0) * &present).reciprocal() * classes.numel() as f64;
    let pixel_weight = class_weight.index_select(0, &classes.flatten(0, -1)).view_as(classes);
    let loss = logits.cross_entropy_loss::<Tensor>(classes, None, Reduction::None, -100, 0.0);
    (loss * pixel_weight).mean(Kind::Float)
}

/// Cross-entropy of every pixel towards the segmenting discriminator's "fake" class.
pub(super) fn fake_cross_entropy(logits: &Tensor) -> Tensor {
    let logits = full_precision(logits);
    let mut shape = logits.size();
    shape.remove(1);
    let fake = Tensor::zeros(shape.as_slice(), (Kind::Int64, logits.device()));
    logits.cross_entropy_loss::<Tensor>(&fake, None, Reduction::Mean, -100, 0.0)
}
