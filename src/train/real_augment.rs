//! What the real pairs go through before a step: an augmentation preset, then copy-paste.
use super::config::TrainConfig;
use crate::data::augment::{augment_pairs, copy_paste};
use crate::data::nnaug::{self, AugmentPreset, NnUnetAugment};
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

/// What the real pairs go through before a step: a preset, then copy-paste.
pub struct RealAugment {
    preset: Preset,
    /// `--copy-paste`: the probability that a pair receives another pair's lesions.
    copy_paste: f64,
}

enum Preset {
    None,
    /// GenSeg's geometric set and jitter.
    Geometric,
    /// nnU-Net's default augmentation.
    Nnunet(Box<NnUnetAugment>),
}

impl RealAugment {
    /// Real pairs as they are (`separate` and `genseg` without `--augment-real`).
    pub(super) fn none() -> RealAugment {
        RealAugment { preset: Preset::None, copy_paste: 0.0 }
    }

    /// The `--augment` preset (with `--mirror-axes` and `--elastic-p`) for `dims` spatial axes,
    /// and `--copy-paste`.
    pub(super) fn of(cfg: &TrainConfig, dims: usize) -> RealAugment {
        let preset = match cfg.augment_preset {
            AugmentPreset::None => Preset::None,
            AugmentPreset::Geometric => Preset::Geometric,
            AugmentPreset::Nnunet => Preset::Nnunet(Box::new(NnUnetAugment {
                p_elastic: cfg.elastic_p,
                ..NnUnetAugment::defaults(dims, cfg.mirror_axes.as_deref())
            })),
        };
        RealAugment { preset, copy_paste: cfg.copy_paste }
    }

    pub(super) fn apply(&self, cfg: &TrainConfig, x: Tensor, m: Tensor, rng: &mut ChaCha8Rng) -> (Tensor, Tensor) {
        let (x, m) = match &self.preset {
            Preset::None => (x, m),
            Preset::Geometric => augment_pairs(&x, &m, &cfg.augment, cfg.jitter, rng),
            Preset::Nnunet(aug) => nnaug::augment(&x, &m, aug, rng),
        };
        match self.copy_paste > 0.0 {
            true => copy_paste(&x, &m, self.copy_paste, rng),
            false => (x, m),
        }
    }
}
