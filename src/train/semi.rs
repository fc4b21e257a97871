//! `semi`: semi-supervised training after UniMatch (Yang et al., CVPR 2023; its medical recipe,
//! LiheYoung/UniMatch more-scenarios/medical). Each step takes the real batch (augmented as
//! `augment` does) and a batch of unlabelled images: the prediction on their weak view is the
//! pseudo-label where it is confident; two strong views (colour, blur, CutMix with a second
//! unlabelled batch labelled by the network in evaluation mode) and the weak view's encoder
//! features under channel dropout are trained to match it. The step costs a forward and backward
//! pass over the real batch, one over the unlabelled batch with its decoder run twice, one over
//! both strong views, and a forward pass over the mixing images; an unlabelled batch of half the
//! real one keeps it near 3x an `augment` step (`genseg bench schedule`, docs/RESULTS.md).
//! The generator methods (`separate`, `genseg`) given unlabelled images add the same unlabelled
//! loss beside their real and synthetic pairs.
use super::batches::Batches;
use crate::data::augment::AugmentConfig;
use crate::data::strong::{cutmix_boxes, mix, strong_view, weak_view};
use crate::data::unlabelled::Unlabelled;
use crate::learn::loss::{segmentation_loss, RegionLoss};
use crate::models::segnet::SegNet;
use crate::precision::{full_precision, Precision};
use serde::{Deserialize, Serialize};
use tch::nn::{ModuleT, VarStore};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SemiConfig {
    /// A pseudo-label counts where the weak view's probability (or its complement) is at least
    /// this: UniMatch's 0.95 (ACDC).
    pub confidence: f64,
    /// Unlabelled images per step; 0 = half the real batch, rounded up.
    pub unlabelled_batch: i64,
    /// Channel dropout on the encoder features of the weak view (UniMatch: 0.5).
    pub feature_dropout: f64,
}

impl Default for SemiConfig {
    fn default() -> Self {
        SemiConfig { confidence: 0.95, unlabelled_batch: 0, feature_dropout: 0.5 }
    }
}

impl SemiConfig {
    pub fn batch(&self, real_batch: i64) -> i64 {
        match self.unlabelled_batch {
            0 => (real_batch + 1) / 2,
            b => b,
        }
    }
}

/// Per-pixel pseudo-labels of probabilities `[B, L, ...]` (each label channel on its own) and
/// their confidence, max(p, 1 - p).
pub fn pseudo_labels(probs: &Tensor) -> (Tensor, Tensor) {
    let labels = probs.ge(0.5).to_kind(Kind::Float);
    let confidence = probs.maximum(&(1.0 - probs));
    (labels, confidence)
}

/// 1 - soft Dice of `logits` against `labels` over the voxels where `keep` is 1, per label
/// channel (summed over the batch) and averaged: UniMatch's loss on unlabelled images. Voxels
/// with `keep` 0 get no gradient; with none kept the loss is 0.
pub fn masked_dice_loss(logits: &Tensor, labels: &Tensor, keep: &Tensor) -> Tensor {
    let p = full_precision(logits).sigmoid();
    let kind = p.kind();
    let axes: Vec<i64> = (0..p.dim() as i64).filter(|&a| a != 1).collect();
    let sum = |t: &Tensor| t.sum_dim_intlist(axes.as_slice(), false, kind);
    let inter = sum(&(&p * labels * keep));
    let total = sum(&(&p * keep)) + sum(&(labels * keep));
    1.0 - ((inter * 2.0 + 1.0) / (total + 1.0)).mean(kind)
}

/// What one `semi` step reports beside its loss.
pub struct SemiLog {
    /// Share of the unlabelled voxels whose pseudo-label counted.
    pub confident: f64,
    /// The BatchNorm statistics before the unlabelled passes: put back once the loss's
    /// gradients are taken (its backward pass checks that they are unchanged).
    pub statistics: RunningStatistics,
}

/// The `semi` method's state: the settings of its unlabelled loss, taken from the run's
/// configuration.
pub struct Semi {
    pub config: SemiConfig,
    /// The real batch's size (the unlabelled batch follows from it).
    pub batch_size: i64,
    /// The geometric augmentation whose draws make the weak views.
    pub augment: AugmentConfig,
    pub precision: Precision,
    pub region_loss: RegionLoss,
}

/// One step's unlabelled images, drawn before the labelled pass: the weak views, the two strong
/// views (CutMix boxes with the mixing images) and the mixing images' pseudo-labels.
pub struct UnlabelledViews {
    weak: Tensor,
    strong: Vec<Tensor>,
    boxes: [Tensor; 2],
    mix_probs: Tensor,
}

impl Semi {
    /// The unlabelled loss's settings of run `cfg`.
    pub fn of(cfg: &crate::train::TrainConfig) -> Semi {
        Semi {
            config: cfg.semi.clone(),
            batch_size: cfg.batch_size,
            augment: cfg.augment.clone(),
            precision: cfg.precision,
            region_loss: cfg.region_loss,
        }
    }

    /// The step's loss on the real batch `(x, m)` (already augmented as `augment` does) and on
    /// unlabelled images: (labelled + unlabelled) / 2, as in UniMatch.
    pub fn loss(
        &self,
        (net, vs): (&SegNet, &VarStore),
        (x, m): (Tensor, Tensor),
        batches: &mut Batches,
        pool: &Unlabelled,
    ) -> (Tensor, SemiLog) {
        let views = self.draw(net, batches, pool);
        // Labelled and unlabelled images pass separately: in one batch their BatchNorm statistics
        // mix, which cost about 0.1 Dice on the phantom set even with no unlabelled loss at all.
        let labelled_logits = self.precision.autocast(x.device(), || net.forward_t(&x, true));
        let labelled = segmentation_loss(&labelled_logits, &m, self.region_loss);
        let (unlabelled, log) = self.unlabelled_loss((net, vs), views);
        ((labelled + unlabelled) / 2.0, log)
    }

    /// Draws the step's unlabelled batches and views from `batches` (so a resumed run repeats
    /// them) and labels the mixing images with the network in evaluation mode. Called before the
    /// step's labelled pass, which moves the BatchNorm statistics that evaluation mode reads.
    pub fn draw(&self, net: &SegNet, batches: &mut Batches, pool: &Unlabelled) -> UnlabelledViews {
        let device = batches.device;
        let count = self.config.batch(self.batch_size);
        let (u, u_mix) = (batches.draw_images(pool, count), batches.draw_images(pool, count));
        let rng = &mut batches.rng;
        let weak = weak_view(&u, &self.augment, rng);
        let weak_mix = weak_view(&u_mix, &self.augment, rng);
        let boxes = [cutmix_boxes(&weak, rng), cutmix_boxes(&weak, rng)];
        let strong = boxes.iter().map(|b| mix(&strong_view(&weak, rng), &strong_view(&weak_mix, rng), b)).collect();
        let mix_probs = tch::no_grad(|| {
            full_precision(&self.precision.autocast(device, || net.forward_t(&weak_mix, false))).sigmoid()
        });
        UnlabelledViews { weak, strong, boxes, mix_probs }
    }

    /// UniMatch's loss on unlabelled images, 1/4 each strong view + 1/2 the feature-perturbed
    /// weak view, each a Dice loss against the weak view's confident pseudo-labels. The running
    /// statistics the network is evaluated with stay the labelled pass's, as in `augment`: these
    /// passes (perturbed features, jittered and blurred views) put theirs back
    /// ([`SemiLog::statistics`]).
    pub fn unlabelled_loss(&self, (net, vs): (&SegNet, &VarStore), views: UnlabelledViews) -> (Tensor, SemiLog) {
        let cfg = &self.config;
        let device = views.weak.device();
        let autocast = |f: &dyn Fn() -> Tensor| self.precision.autocast(device, f);
        let statistics = RunningStatistics::of(vs);
        let (weak_logits, perturbed) =
            self.precision.autocast(device, || net.forward_feature_perturbed(&views.weak, cfg.feature_dropout));
        let weak_probs = full_precision(&weak_logits).detach().sigmoid();
        let (labels, confidence) = pseudo_labels(&weak_probs);
        let (mix_labels, mix_confidence) = pseudo_labels(&views.mix_probs);
        let threshold = cfg.confidence;
        let keep = |c: &Tensor| c.ge(threshold).to_kind(Kind::Float);
        let strong_logits = autocast(&|| net.forward_t(&Tensor::cat(&views.strong, 0), true)).chunk(2, 0);
        let strong_loss = |i: usize| {
            let target = mix(&labels, &mix_labels, &views.boxes[i]);
            let kept = keep(&mix(&confidence, &mix_confidence, &views.boxes[i]));
            masked_dice_loss(&strong_logits[i], &target, &kept)
        };
        let loss =
            (strong_loss(0) + strong_loss(1)) * 0.25 + masked_dice_loss(&perturbed, &labels, &keep(&confidence)) * 0.5;
        let confident = keep(&confidence).mean(Kind::Float).double_value(&[]);
        (loss, SemiLog { confident, statistics })
    }
}

/// Copies of a network's BatchNorm running means and variances, to put back after a forward pass
/// in training mode whose batch statistics should not reach them.
pub struct RunningStatistics(Vec<(Tensor, Tensor)>);

impl RunningStatistics {
    fn of(vs: &VarStore) -> RunningStatistics {
        let running = |name: &str| name.ends_with("running_mean") || name.ends_with("running_var");
        RunningStatistics(
            vs.variables().into_iter().filter(|(name, _)| running(name)).map(|(_, t)| (t.copy(), t)).collect(),
        )
    }

    pub fn restore(self) {
        tch::no_grad(|| {
            for (saved, mut var) in self.0 {
                var.copy_(&saved);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// With a fixed teacher, only voxels whose pseudo-label is at least `confidence` sure carry a
    /// gradient to the student; the others could be anything.
    #[test]
    fn only_confident_pseudo_labels_count() {
        let teacher = Tensor::from_slice(&[0.99f32, 0.97, 0.6, 0.4, 0.03, 0.5]).view([1, 1, 2, 3]);
        let (labels, confidence) = pseudo_labels(&teacher);
        assert_eq!(Vec::<f32>::try_from(labels.flatten(0, -1)).unwrap(), [1., 1., 1., 0., 0., 1.]);
        let keep = confidence.ge(0.95).to_kind(Kind::Float);
        let student = Tensor::zeros([1, 1, 2, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        masked_dice_loss(&student, &labels, &keep).backward();
        let grad = Vec::<f32>::try_from(student.grad().flatten(0, -1)).unwrap();
        for (i, g) in grad.iter().enumerate() {
            let confident = [0, 1, 4].contains(&i);
            assert_eq!(*g != 0.0, confident, "voxel {i}: gradient {g}");
        }
        // Pulled towards the pseudo-label: up where it is 1, down where it is 0.
        assert!(grad[0] < 0.0 && grad[4] > 0.0);
        let none = Tensor::zeros([1, 1, 2, 3], (Kind::Float, Device::Cpu));
        assert_eq!(masked_dice_loss(&student, &labels, &none).double_value(&[]), 0.0);
    }

    #[test]
    fn half_the_real_batch_unless_given() {
        let cfg = SemiConfig::default();
        assert_eq!([cfg.batch(4), cfg.batch(5), cfg.batch(1)], [2, 3, 1]);
        assert_eq!(SemiConfig { unlabelled_batch: 7, ..cfg }.batch(4), 7);
    }
}
