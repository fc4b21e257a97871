//! Segmentation losses: BCE-with-logits plus a soft region term on sigmoid probabilities.
use crate::models::segnet::SegNet;
use crate::models::spatial::resize_nearest_like;
use crate::precision::full_precision;
use serde::{Deserialize, Serialize};
#[cfg(test)]
use tch::Kind;
use tch::{Reduction, Tensor};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum RegionLoss {
    /// 1 - soft Dice over the whole batch (robust to empty masks).
    Dice,
    /// 1 - soft Jaccard over the whole batch.
    Jaccard,
    /// BCE only.
    None,
}

/// Smoothing (in pixels) that keeps empty masks finite.
const SMOOTH: f64 = 1.0;

/// BCE over every voxel plus the region term, taken per label channel (sums over the batch and
/// all spatial axes) and averaged over channels, so a small label weighs as much as a large one.
pub fn segmentation_loss(logits: &Tensor, target: &Tensor, region: RegionLoss) -> Tensor {
    // A bf16 forward pass's logits are lifted first: the sums below need float32's mantissa.
    let logits = &full_precision(logits);
    let bce = logits.binary_cross_entropy_with_logits::<Tensor>(target, None, None, Reduction::Mean);
    let p = logits.sigmoid();
    let kind = logits.kind();
    let axes: Vec<i64> = (0..logits.dim() as i64).filter(|&a| a != 1).collect();
    let per_channel = |t: &Tensor| t.sum_dim_intlist(axes.as_slice(), false, kind);
    let inter = per_channel(&(&p * target));
    let total = per_channel(&p) + per_channel(target);
    match region {
        RegionLoss::Dice => bce + 1.0 - ((inter * 2.0 + SMOOTH) / (total + SMOOTH)).mean(kind),
        RegionLoss::Jaccard => bce + 1.0 - ((&inter + SMOOTH) / (total - inter + SMOOTH)).mean(kind),
        RegionLoss::None => bce,
    }
}

/// nnU-Net's deep-supervision weights for `outputs` outputs, full resolution first: 1/2^i,
/// normalised to sum 1 (nnU-Net's zero-weight coarsest output has no head in our U-Net).
pub fn deep_supervision_weights(outputs: usize) -> Vec<f64> {
    let raw: Vec<f64> = (0..outputs).map(|i| 0.5f64.powi(i as i32)).collect();
    let total: f64 = raw.iter().sum();
    raw.into_iter().map(|w| w / total).collect()
}

/// The segmenter's training loss on `images` against `masks`: `segmentation_loss` of the
/// full-resolution logits, or, with deep supervision, the weighted sum over every decoder output
/// against the masks resized to it by nearest neighbour.
pub fn seg_loss(net: &SegNet, images: &Tensor, masks: &Tensor, region: RegionLoss) -> Tensor {
    deep_supervised(net, images, masks, |logits, target| segmentation_loss(logits, target, region))
}

/// [`seg_loss`] of each case on its own, `[B]` (the region term per case instead of over the
/// batch): what per-sample weights multiply.
pub fn seg_loss_per_case(net: &SegNet, images: &Tensor, masks: &Tensor, region: RegionLoss) -> Tensor {
    deep_supervised(net, images, masks, |logits, target| segmentation_loss_per_case(logits, target, region))
}

fn deep_supervised(net: &SegNet, images: &Tensor, masks: &Tensor, loss: impl Fn(&Tensor, &Tensor) -> Tensor) -> Tensor {
    let outputs = net.forward_deep(images, true);
    let weights = deep_supervision_weights(outputs.len());
    outputs
        .iter()
        .zip(weights)
        .map(|(logits, w)| {
            let target =
                if logits.size() == masks.size() { masks.shallow_clone() } else { resize_nearest_like(masks, logits) };
            loss(logits, &target) * w
        })
        .reduce(|a, b| a + b)
        .expect("a network has at least one output")
}

/// [`segmentation_loss`] of each case `[B]`: BCE over the case's voxels plus the region term
/// over its own voxels, averaged over label channels.
pub fn segmentation_loss_per_case(logits: &Tensor, target: &Tensor, region: RegionLoss) -> Tensor {
    let logits = &full_precision(logits);
    let kind = logits.kind();
    let case_axes: Vec<i64> = (1..logits.dim() as i64).collect();
    let spatial: Vec<i64> = (2..logits.dim() as i64).collect();
    let bce = logits.binary_cross_entropy_with_logits::<Tensor>(target, None, None, Reduction::None).mean_dim(
        case_axes.as_slice(),
        false,
        kind,
    );
    let p = logits.sigmoid();
    let per = |t: &Tensor| t.sum_dim_intlist(spatial.as_slice(), false, kind);
    let inter = per(&(&p * target));
    let total = per(&p) + per(target);
    match region {
        RegionLoss::Dice => bce + 1.0 - ((inter * 2.0 + SMOOTH) / (total + SMOOTH)).mean_dim(1, false, kind),
        RegionLoss::Jaccard => bce + 1.0 - ((&inter + SMOOTH) / (total - inter + SMOOTH)).mean_dim(1, false, kind),
        RegionLoss::None => bce,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        // logits 0 -> p = 0.5 everywhere; target has 2 of 4 pixels.
        let logits = Tensor::zeros([1, 1, 2, 2], (Kind::Float, tch::Device::Cpu));
        let target = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.0]).view([1, 1, 2, 2]);
        let bce = std::f64::consts::LN_2;
        let dice = 1.0 - (2.0 * 1.0 + 1.0) / (2.0 + 2.0 + 1.0);
        let jac = 1.0 - (1.0 + 1.0) / (4.0 - 1.0 + 1.0);
        let v = |r| f64::try_from(segmentation_loss(&logits, &target, r)).unwrap();
        assert!((v(RegionLoss::None) - bce).abs() < 1e-6);
        assert!((v(RegionLoss::Dice) - bce - dice).abs() < 1e-6);
        assert!((v(RegionLoss::Jaccard) - bce - jac).abs() < 1e-6);
    }

    /// Two label channels of a volume: the region term is the mean of the per-channel terms.
    #[test]
    fn region_term_averages_label_channels() {
        let logits = Tensor::zeros([1, 2, 1, 2, 2], (Kind::Float, tch::Device::Cpu));
        let target = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]).view([1, 2, 1, 2, 2]);
        // channel 1: p sum 2, target 2, inter 1; channel 2: p sum 2, target 1, inter 0.5
        let dice = 1.0 - ((2.0 * 1.0 + 1.0) / (4.0 + 1.0) + (2.0 * 0.5 + 1.0) / (3.0 + 1.0)) / 2.0;
        let v = f64::try_from(segmentation_loss(&logits, &target, RegionLoss::Dice)).unwrap();
        assert!((v - std::f64::consts::LN_2 - dice).abs() < 1e-6);
    }

    /// The per-case loss of each case is the batch loss of that case alone.
    #[test]
    fn per_case_loss_of_each_case_is_its_batch_loss_alone() {
        tch::manual_seed(1);
        let logits = Tensor::randn([2, 2, 5, 6], (Kind::Float, tch::Device::Cpu));
        let target = Tensor::rand([2, 2, 5, 6], (Kind::Float, tch::Device::Cpu)).gt(0.5).to_kind(Kind::Float);
        for region in [RegionLoss::Dice, RegionLoss::Jaccard, RegionLoss::None] {
            let per = segmentation_loss_per_case(&logits, &target, region).to_kind(Kind::Double);
            for (i, v) in Vec::<f64>::try_from(per).unwrap().into_iter().enumerate() {
                let (l, t) = (logits.narrow(0, i as i64, 1), target.narrow(0, i as i64, 1));
                let alone = f64::try_from(segmentation_loss(&l, &t, region)).unwrap();
                assert!((v - alone).abs() < 1e-5, "{region:?} case {i}: {v} vs {alone}");
            }
        }
    }

    #[test]
    fn deep_supervision_weights_halve_per_stage_and_sum_to_one() {
        assert_eq!(deep_supervision_weights(1), [1.0]);
        let w = deep_supervision_weights(3);
        assert!(
            (w[0] - 4.0 / 7.0).abs() < 1e-12 && (w[1] - 2.0 / 7.0).abs() < 1e-12 && (w[2] - 1.0 / 7.0).abs() < 1e-12
        );
    }

    /// With deep supervision the loss is the weighted sum of each output's loss against the
    /// nearest-resized mask; without it, the plain loss of the full-resolution logits.
    #[test]
    fn seg_loss_weights_every_output() {
        use crate::models::unet::{UNetConfig, Upsampling};
        use tch::nn::ModuleT;
        for deep in [false, true] {
            let vs = tch::nn::VarStore::new(tch::Device::Cpu);
            let cfg = UNetConfig {
                in_channels: 1,
                out_channels: 1,
                width: 4,
                depth: 5,
                upsampling: Upsampling::Transposed,
                dims: 2,
                deep_supervision: deep,
            };
            let net = crate::models::segnet::SegNet::new(&vs.root(), &crate::models::segnet::NetConfig::Unet(cfg));
            let x = Tensor::rand([2, 1, 32, 32], (Kind::Float, tch::Device::Cpu));
            let m = Tensor::rand([2, 1, 32, 32], (Kind::Float, tch::Device::Cpu)).gt(0.5).to_kind(Kind::Float);
            let got = f64::try_from(seg_loss(&net, &x, &m, RegionLoss::Dice)).unwrap();
            let outs = net.forward_deep(&x, true);
            assert_eq!(
                outs.iter().map(|o| o.size()[2]).collect::<Vec<_>>(),
                if deep { vec![32, 16, 8] } else { vec![32] }
            );
            let full = f64::try_from(segmentation_loss(&net.forward_t(&x, true), &m, RegionLoss::Dice)).unwrap();
            let want = if deep {
                let w = deep_supervision_weights(3);
                let coarse = |i: usize| {
                    let s = 32 >> i;
                    let t = m.upsample_nearest2d([s, s], None, None);
                    f64::try_from(segmentation_loss(&outs[i], &t, RegionLoss::Dice)).unwrap()
                };
                w[0] * full + w[1] * coarse(1) + w[2] * coarse(2)
            } else {
                full
            };
            assert!((got - want).abs() < 1e-5, "deep {deep}: {got} vs {want}");
        }
    }
}
