//! Segmentation losses: BCE-with-logits plus a soft region term on sigmoid probabilities.
use serde::{Deserialize, Serialize};
use tch::{Reduction, Tensor};
#[cfg(test)]
use tch::Kind;

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

pub fn segmentation_loss(logits: &Tensor, target: &Tensor, region: RegionLoss) -> Tensor {
    let bce = logits.binary_cross_entropy_with_logits::<Tensor>(target, None, None, Reduction::Mean);
    let p = logits.sigmoid();
    let kind = logits.kind();
    let inter = (&p * target).sum(kind);
    let total = p.sum(kind) + target.sum(kind);
    match region {
        RegionLoss::Dice => bce + 1.0 - (inter * 2.0 + SMOOTH) / (total + SMOOTH),
        RegionLoss::Jaccard => bce + 1.0 - (&inter + SMOOTH) / (total - inter + SMOOTH),
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
}
