//! Segmentation losses: BCE-with-logits plus a soft region term on sigmoid probabilities.
use serde::{Deserialize, Serialize};
#[cfg(test)]
use tch::Kind;
use tch::{Reduction, Tensor};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, clap::ValueEnum)]
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
}
