//! The Pix2Pix GAN (mask -> image), GenSeg's generator: its configuration and folder format
//! ([`GanSpec`]), its networks and one training step ([`step`]), its losses ([`losses`]) and
//! pretraining with sample grids and resume ([`pretrain`]).
use self::diffaug::diff_augment;
use crate::data::augment::{augment_pairs, AugmentConfig};
use crate::data::split::{load_splits, DataConfig};
use crate::data::SegDataset;
use crate::learn::checkpoint;
use crate::learn::optim::{gradients, OptimConfig, Optimizer};
use crate::models::discriminator::{Discriminator, DiscriminatorKind, PatchGan};
use crate::models::generator::{Generator, GeneratorConfig};
use crate::precision::{full_precision, Precision};
use crate::runtime::{all_finite, lock_folder};
use crate::runtime::{
    append_jsonl, ensure_writable_dir, load_tensors, load_vars, save_tensors, save_vars, versions, write_json,
};
use anyhow::{bail, Context, Result};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Kind, Reduction, Tensor};

pub mod diffaug;
pub mod losses;
pub mod pretrain;
pub mod pseudo;
pub mod step;
#[cfg(test)]
mod tests;

pub use losses::GanLosses;
pub use pretrain::{
    check_data_fits, check_prior_fits, pretrain, pretrain_on_split, read_prior, sample_grid, PretrainConfig,
};
pub use step::{Backgrounds, Gan};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GanConfig {
    pub ngf: i64,
    pub ndf: i64,
    pub lr: f64,
    pub beta1: f64,
    pub lambda_l1: f64,
    /// Mixed ops as one fused conv (`Some(true)`), as three convs (`Some(false)`), or by device
    /// (`None`): three convs on the CPU, fused on CUDA, the faster form on each (docs/RESULTS.md
    /// section 1). Both give the same output; weight files do not depend on the form.
    #[serde(default)]
    pub fused: Option<bool>,
    /// DiffAugment on every discriminator input, real and fake ([`diff_augment`]).
    #[serde(default)]
    pub diff_augment: bool,
    /// Train on pairs jointly augmented with GenSeg's geometric set, so that the generator learns
    /// to render deformed masks instead of memorising the few it has.
    #[serde(default)]
    pub joint_augment: bool,
    /// Weight of pix2pixHD's discriminator feature-matching loss (0 = off).
    #[serde(default)]
    pub feature_matching: f64,
    /// Length of the generator's per-image Gaussian code (0 = none; dropout is then the only
    /// noise).
    #[serde(default)]
    pub code_length: i64,
    /// Weight of the mode-seeking term (Mao et al., CVPR 2019), which rewards different images
    /// for different codes of the same mask (needs `code_length` > 0; 0 = off).
    #[serde(default)]
    pub mode_seeking: f64,
    /// Lesion inpainting: the generator keeps a real training image and redraws only a hole
    /// around the lesion it paints and the one it paints over ([`Backgrounds`]), instead of
    /// drawing the whole image from the mask (which cannot tell it the background). Measured:
    /// its pairs teach a segmenter less (docs/history §15).
    #[serde(default)]
    pub inpaint: bool,
    /// With `inpaint`: the lesion's real pixels (its own image, moved with the augmented mask)
    /// are pasted into the background, whose own lesion is blanked; the generator corrects the
    /// hole (the lesion's colours, the seam) and fills the blank (harmonisation and erasing;
    /// Deep Image Harmonization's training: it learns to undo a colour shift of its own
    /// lesions). Real texture at full resolution, which the U-Net, first halving the image,
    /// cannot draw.
    #[serde(default)]
    pub paste: bool,
    /// The network that judges the images: Pix2Pix's PatchGAN or OASIS's segmenting U-Net.
    #[serde(default)]
    pub discriminator: DiscriminatorKind,
}

impl GanConfig {
    /// Settings that cannot work together, named by their flags.
    pub fn check(&self) -> Result<()> {
        if self.code_length < 0 {
            bail!("--code-length {}: must be 0 (no code) or more", self.code_length);
        }
        if self.mode_seeking > 0.0 && self.code_length == 0 {
            bail!("--mode-seeking {}: rewards different images for different codes, but the generator takes none; add --code-length 8", self.mode_seeking);
        }
        if self.paste && !self.inpaint {
            bail!("--paste puts real lesions into the hole an inpainting generator redraws; add --inpaint");
        }
        if self.feature_matching > 0.0 && self.discriminator == DiscriminatorKind::Segmenting {
            bail!("--feature-matching {}: compares the PatchGAN's layers on (mask, image) pairs, which --discriminator segmenting does not have; drop one of them", self.feature_matching);
        }
        Ok(())
    }
}

impl GanConfig {
    /// The generator GenSeg's verdict used (docs/RESULTS.md): DiffAugment, joint augmentation
    /// and feature matching, both networks `ngf` wide.
    pub fn data_efficient(ngf: i64) -> GanConfig {
        GanConfig {
            ngf,
            ndf: ngf,
            diff_augment: true,
            joint_augment: true,
            feature_matching: 10.0,
            ..Default::default()
        }
    }
}

impl Default for GanConfig {
    fn default() -> Self {
        GanConfig {
            ngf: 64,
            ndf: 64,
            lr: 2e-4,
            beta1: 0.5,
            lambda_l1: 100.0,
            fused: None,
            diff_augment: false,
            joint_augment: false,
            feature_matching: 0.0,
            code_length: 0,
            mode_seeking: 0.0,
            inpaint: false,
            paste: false,
            discriminator: DiscriminatorKind::Patch,
        }
    }
}

/// Everything needed to rebuild a generator from its folder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(from = "GanSpecFile")]
pub struct GanSpec {
    pub gan: GanConfig,
    /// Spatial shape: `[S, S]` or `[D, H, W]`.
    pub shape: Vec<i64>,
    /// Image channels (generated).
    pub channels: i64,
    /// Mask channels (the generator's input, one per label).
    pub mask_channels: i64,
}

/// gan.json as written now, or by 2-D-only versions (`size` instead of `shape`, one mask channel).
#[derive(Deserialize)]
pub(super) struct GanSpecFile {
    gan: GanConfig,
    shape: Option<Vec<i64>>,
    size: Option<i64>,
    channels: i64,
    mask_channels: Option<i64>,
}

impl From<GanSpecFile> for GanSpec {
    fn from(f: GanSpecFile) -> GanSpec {
        let shape = f.shape.unwrap_or_else(|| vec![f.size.unwrap_or(0); 2]);
        GanSpec { gan: f.gan, shape, channels: f.channels, mask_channels: f.mask_channels.unwrap_or(1) }
    }
}

impl GanSpec {
    /// The gan.json of a generator folder.
    pub fn read(dir: &Path) -> Result<GanSpec> {
        let path = dir.join("gan.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("{} not found: give a folder written by `genseg pretrain-generator`", path.display())
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a generator description", path.display()))
    }

    /// The GAN for a dataset's shape, image channels and labels.
    pub fn for_data(gan: GanConfig, data: &SegDataset) -> GanSpec {
        GanSpec {
            gan,
            shape: data.shape.clone(),
            channels: data.channels as i64,
            mask_channels: data.labels.len() as i64,
        }
    }

    /// The generator's input channels: the mask, and for inpainting the image with its hole
    /// blanked and the hole itself.
    fn generator_inputs(&self) -> i64 {
        match self.gan.inpaint {
            true => self.mask_channels + self.channels + 1,
            false => self.mask_channels,
        }
    }

    /// How far the hole reaches beyond the lesions (a 16th of the shortest side, at least 1
    /// pixel): room to blend a lesion into its surroundings.
    fn hole_margin(&self) -> i64 {
        (self.shape.iter().min().copied().unwrap_or(16) / 16).max(1)
    }
}
