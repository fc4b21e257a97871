//! What a training run is asked to do. Every default lives here ([`TrainConfig::new`]); the
//! command line, the demo and the tests start from it.
pub use super::semi::SemiConfig;
use crate::data::augment::AugmentConfig;
use crate::data::nnaug::AugmentPreset;
use crate::data::split::{DataConfig, Splits};
use crate::data::SegDataset;
use crate::eval::metrics::EmptyPolicy;
use crate::gan::{GanConfig, PretrainConfig};
use crate::learn::loss::RegionLoss;
pub use crate::learn::optim::Schedule;
use crate::learn::optim::{OptimConfig, OptimKind};
use crate::models::deeplab::DeepLabConfig;
use crate::models::resnet::Backbone;
use crate::models::segnet::{ModelKind, NetConfig};
use crate::models::swin_unet::SwinUNetConfig;
use crate::models::unet::{UNetConfig, Upsampling};
use crate::precision::Precision;
use crate::upper::hypergrad::HypergradMode;
pub use crate::upper::UpperTarget;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Real pairs only.
    Plain,
    /// Classic augmentation of real pairs.
    Augment,
    /// Real + lambda x synthetic pairs from a frozen, pretrained generator.
    Separate,
    /// End to end: GAN step, segmentation step through the synthetic path, architecture step.
    Genseg,
    /// Semi-supervised after UniMatch: `augment` on the labelled pairs plus consistency with
    /// confident pseudo-labels on unlabelled images ([`super::semi`]).
    Semi,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Plain => "plain",
            Method::Augment => "augment",
            Method::Separate => "separate",
            Method::Genseg => "genseg",
            Method::Semi => "semi",
        }
    }

    pub fn uses_generator(self) -> bool {
        matches!(self, Method::Separate | Method::Genseg)
    }

    /// Whether the method learns from unlabelled images when they are given (the generator
    /// methods with `semi`'s unlabelled loss beside their synthetic pairs).
    pub fn uses_unlabelled(self) -> bool {
        matches!(self, Method::Semi | Method::Separate | Method::Genseg)
    }

    /// Refuses a method that cannot train without unlabelled images when none are `given`.
    pub fn check_unlabelled(self, given: bool) -> Result<()> {
        if self == Method::Semi && !given {
            bail!(
                "--method {}: learns from unlabelled images; give a folder of them with --unlabelled DIR (a study \
                 may set cases of the set aside with --unlabelled-n U)",
                self.name()
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    pub data: DataConfig,
    pub method: Method,
    pub seed: u64,
    /// The segmentation network.
    #[serde(default)]
    pub model: ModelKind,
    /// DeepLabV3+'s encoder.
    #[serde(default)]
    pub backbone: Backbone,
    /// Swin-UNet's attention window side.
    #[serde(default = "seven")]
    pub window: i64,
    /// Initial weights for the segmenter (safetensors, by variable name; e.g. a torchvision
    /// ResNet converted by scripts/convert_resnet.py); `None`: random initialisation.
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// U-Net width (channels of the first level).
    pub width: i64,
    /// U-Net levels.
    pub depth: usize,
    pub upsampling: Upsampling,
    pub region_loss: RegionLoss,
    pub optim: OptimConfig,
    pub iters: usize,
    pub batch_size: i64,
    /// Validate (and checkpoint) every k iterations.
    pub val_every: usize,
    /// Weight of the synthetic-pair loss.
    pub lambda: f64,
    /// `separate` and `genseg`: the synthetic pairs' share of each step's pairs (see
    /// [`TrainConfig::synthetic_count`]); 0.5 = as many synthetic pairs as real ones.
    #[serde(default = "half")]
    pub synthetic_share: f64,
    pub augment: AugmentConfig,
    /// Brightness/contrast jitter of `augment`.
    pub jitter: f64,
    pub gan: GanConfig,
    /// Generator pretraining steps when no pretrained generator is given.
    pub pretrain_iters: usize,
    /// A folder written by `pretrain-generator` (skips pretraining).
    pub generator: Option<PathBuf>,
    /// A generator folder the pretraining starts from ([`PretrainConfig::prior`]).
    #[serde(default)]
    pub generator_prior: Option<PathBuf>,
    /// `separate` and `genseg`: the generator also learns from the unlabelled images a teacher
    /// labels confidently ([`super::teacher`]); `None`: from the labelled pairs alone.
    #[serde(default)]
    pub pseudo: Option<crate::gan::pseudo::PseudoFilter>,
    /// Learning rate of the architecture logits alpha (Adam with beta1 [`ARCH_BETA1`]).
    pub arch_lr: f64,
    /// Architecture step every k iterations.
    pub arch_every: usize,
    /// `genseg`: GAN step every k iterations (amortises the most expensive phase after the
    /// hypergradient). Between upper-level steps the synthetic pairs of each window over which
    /// the generator does not change are made in one batch when it opens (`SyntheticWindow`).
    #[serde(default = "one")]
    pub gan_every: usize,
    /// What the hypergradient moves in `genseg`.
    #[serde(default)]
    pub upper: UpperTarget,
    /// Adam learning rate of the generator's decoder when `upper` moves it.
    #[serde(default = "upper_generator_lr")]
    pub upper_generator_lr: f64,
    /// Inner step size of the unrolled update; `None` = the segmenter's learning rate.
    pub xi: Option<f64>,
    /// Finite-difference perturbation norm of the hypergradient (eps = fd_scale / |v|).
    pub fd_scale: f64,
    /// How the mixed second derivative of the hypergradient is taken.
    #[serde(default = "HypergradMode::before_the_field")]
    pub hypergrad: HypergradMode,
    pub empty_policy: EmptyPolicy,
    /// What `augment` applies to real pairs.
    #[serde(default)]
    pub augment_preset: AugmentPreset,
    /// Spatial axes the `nnunet` preset may mirror; `None` = all (off for left/right labels).
    #[serde(default)]
    pub mirror_axes: Option<Vec<usize>>,
    /// `separate` and `genseg`: augment the real pairs with the `--augment` preset, as `augment`
    /// does, so synthetic pairs come on top of classic augmentation.
    #[serde(default)]
    pub augment_real: bool,
    /// Probability that a real pair, after the `--augment` preset, receives the lesions of
    /// another pair of its batch, pixels and labels ([`crate::data::augment::copy_paste`]);
    /// wherever real pairs are augmented (0 = off).
    #[serde(default)]
    pub copy_paste: f64,
    /// `separate` and `genseg`: weight each synthetic pair by its influence on the validation loss
    /// after a look-ahead step (Ren et al. 2018); opposing pairs get weight 0.
    #[serde(default)]
    pub reweight: bool,
    /// The reference's photometric chain (equalize, posterize, sharpness, autocontrast,
    /// saturation) on synthetic images before the segmenter sees them (2-D).
    #[serde(default)]
    pub synthetic_photometric: bool,
    /// Probability of an elastic deformation per case in the `nnunet` preset.
    #[serde(default)]
    pub elastic_p: f64,
    /// Learning-rate schedule of the segmenter.
    #[serde(default)]
    pub schedule: Schedule,
    /// Early stopping: stop after this many validations without a better validation Dice
    /// (0 = train the whole budget).
    #[serde(default)]
    pub patience: usize,
    /// Early stopping never stops before this iteration.
    #[serde(default)]
    pub min_iters: usize,
    /// nnU-Net's deep supervision: auxiliary outputs on the decoder stages, weighted 1/2^i.
    #[serde(default)]
    pub deep_supervision: bool,
    /// Forward passes of the segmentation and GAN steps in bf16 autocast (the hypergradient
    /// and validation stay float32).
    #[serde(default)]
    pub precision: Precision,
    /// `semi`: pseudo-label confidence, unlabelled batch, feature dropout.
    #[serde(default)]
    pub semi: SemiConfig,
    /// Which model becomes model.safetensors.
    #[serde(default)]
    pub keep: Keep,
}

fn one() -> usize {
    1
}

fn seven() -> i64 {
    7
}

fn half() -> f64 {
    0.5
}

/// A tenth of the GAN's learning rate: Adam moves every weight by about its learning rate per
/// step whatever the gradient's scale, and the hypergradient should nudge, not outrun, the GAN.
fn upper_generator_lr() -> f64 {
    2e-5
}

/// Which model a run keeps as model.safetensors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Keep {
    /// The best validation Dice (`train`: its validation cases choose the model).
    #[default]
    Best,
    /// The last model, as nnU-Net keeps (`fit`'s fold runs: their validation cases score the model
    /// instead of choosing it); the best is kept too, as model_best.safetensors.
    Last,
}

/// Swin-UNet's Adam learning rate when `--lr` is not given: on kvasir_seg (16 labelled pairs,
/// 64 px, 300 iterations, seed 1) its best validation Dice was 0.245 at 1e-4, 0.503 at 3e-4 and
/// 0.152 at the CNNs' 1e-3 (docs/history §11).
pub const SWIN_ADAM_LR: f64 = 3e-4;

/// The optimiser `kind` with its defaults for the segmenter `model`: Swin-UNet's Adam at
/// [`SWIN_ADAM_LR`], every other at [`OptimConfig::of_kind`]'s.
pub fn default_optim(kind: OptimKind, model: ModelKind) -> OptimConfig {
    let mut optim = OptimConfig::of_kind(kind);
    if model == ModelKind::SwinUnet && kind == OptimKind::Adam {
        optim.lr = SWIN_ADAM_LR;
    }
    optim
}

/// Adam's beta1 for the architecture logits (DARTS uses 0.5).
pub const ARCH_BETA1: f64 = 0.5;

impl TrainConfig {
    /// The defaults of `genseg train` for the given data: the recipe every study here used (64 px
    /// from [`LoadOptions::default`](crate::data::set::LoadOptions), U-Net width 16 depth 4, up
    /// to 1000 iterations with early stopping), which trains on ~40 pairs in minutes on a laptop
    /// CPU; larger networks and sizes are flags away.
    pub fn new(data: DataConfig) -> TrainConfig {
        TrainConfig {
            data,
            // The best measured arm (docs/history §10): on validation Dice no arm is
            // clearly above `augment` (paired over seeds and N, both shared pairs), and it is the
            // cheapest of those that are not clearly below the best.
            method: Method::Augment,
            seed: 0,
            model: ModelKind::Unet,
            backbone: Backbone::Resnet18,
            window: seven(),
            init: None,
            width: 16,
            depth: 4,
            upsampling: Upsampling::Transposed,
            region_loss: RegionLoss::Dice,
            optim: OptimConfig::adam(1e-3, 0.9),
            iters: 1000,
            batch_size: 4,
            val_every: 50,
            lambda: 1.0,
            synthetic_share: half(),
            augment: AugmentConfig::default(),
            jitter: 0.2,
            gan: GanConfig::default(),
            pretrain_iters: 1000,
            generator: None,
            generator_prior: None,
            pseudo: None,
            arch_lr: 3e-3,
            arch_every: 1,
            gan_every: 1,
            upper: UpperTarget::Alpha,
            upper_generator_lr: upper_generator_lr(),
            xi: None,
            fd_scale: 0.01,
            hypergrad: HypergradMode::Exact,
            empty_policy: EmptyPolicy::Nan,
            augment_preset: AugmentPreset::Geometric,
            mirror_axes: None,
            schedule: Schedule::Constant,
            patience: 4,
            min_iters: 300,
            deep_supervision: false,
            elastic_p: 0.0,
            synthetic_photometric: false,
            augment_real: false,
            copy_paste: 0.0,
            reweight: false,
            precision: Precision::Fp32,
            semi: SemiConfig::default(),
            keep: Keep::Best,
        }
    }

    /// How this run pretrains its generator when none is given: `pretrain_iters` steps of
    /// `batch_size` pairs in `precision`, seeded by `seed` (the run's, or a study cell's).
    pub fn pretrain_config(&self, seed: u64) -> PretrainConfig {
        PretrainConfig {
            precision: self.precision,
            prior: self.generator_prior.clone(),
            ..PretrainConfig::new(self.pretrain_iters, self.batch_size, seed)
        }
    }

    /// What this run will do, in one line: `train` logs it before it starts.
    pub fn plan(&self, splits: &Splits) -> String {
        let net = match self.model {
            ModelKind::Unet => format!("U-Net width {} depth {}", self.width, self.depth),
            ModelKind::Deeplabv3plus => format!("DeepLabV3+ over {:?}", self.backbone),
            ModelKind::SwinUnet => format!("Swin-UNet, window {}", self.window),
        };
        let input = match splits.train.dims() {
            3 => format!("{:?} voxels", self.data.load.volume.shape),
            _ => format!("{} px", self.data.load.size),
        };
        let stop = match self.patience {
            0 => String::new(),
            k => format!(
                ", early stopping after {k} validations without a better Dice (not before iteration {})",
                self.min_iters
            ),
        };
        let (train, val, test) = (splits.train.len(), splits.val.len(), splits.test.len());
        let unlabelled = match (&splits.unlabelled, self.method.uses_unlabelled()) {
            (Some(u), true) => format!(" and {} unlabelled images", u.len()),
            _ => String::new(),
        };
        let mut recipe = self.method.name().to_string();
        if self.copy_paste > 0.0 {
            recipe += &format!(" with copy-paste (p {})", self.copy_paste);
        }
        if matches!(self.augment_preset, AugmentPreset::Nnunet) {
            recipe += " with nnU-Net's augmentation preset";
        }
        format!(
            "{recipe} on {train} training and {val} validation pairs{unlabelled} ({test} test), {input}, {net}, batch {}, up \
             to {} iterations, validating every {}{stop}",
            self.batch_size,
            self.iters,
            self.val_every
        )
    }

    /// Synthetic pairs per step beside the `batch_size` real ones: share s of the step's pairs,
    /// `batch_size * s / (1 - s)` rounded, at least 1.
    pub fn synthetic_count(&self) -> i64 {
        let s = self.synthetic_share;
        ((self.batch_size as f64 * s / (1.0 - s)).round() as i64).max(1)
    }

    /// The weight of the synthetic loss (a mean over its pairs): lambda times the synthetic pairs
    /// per real one, so that at lambda 1 the synthetic pairs carry their share of the step's loss,
    /// as in one batch of real and synthetic pairs.
    pub fn synthetic_weight(&self) -> f64 {
        self.lambda * self.synthetic_count() as f64 / self.batch_size as f64
    }

    /// Refuses settings the network `net` (this run's, from [`TrainConfig::net`]) cannot train
    /// with, naming the flag.
    pub fn check_network(&self, net: &NetConfig) -> Result<()> {
        let model = match net {
            NetConfig::Unet(_) => return Ok(()),
            NetConfig::Deeplabv3plus(_) => "deeplabv3plus",
            NetConfig::SwinUnet(_) => "swin-unet",
        };
        if self.deep_supervision {
            bail!("--deep-supervision adds heads to the U-Net's decoder; leave it out for --model {model}");
        }
        let min = net.min_train_batch();
        if self.batch_size < min {
            bail!(
                "--batch-size {}: --model {model} trains on at least {min} cases per batch (BatchNorm after \
                 global pooling)",
                self.batch_size
            );
        }
        if self.method.uses_generator() && self.synthetic_count() < min {
            bail!(
                "--synthetic-share {} gives {} synthetic pair(s) per step; --model {model} needs at least {min}: raise \
                 --synthetic-share or --batch-size",
                self.synthetic_share,
                self.synthetic_count()
            );
        }
        Ok(())
    }

    /// The segmenter this run trains: input channels, one output per label and the spatial axes
    /// come from the data, the rest from the configuration.
    pub fn net(&self, data: &SegDataset) -> NetConfig {
        let (in_channels, out_channels) = (data.channels as i64, data.labels.len() as i64);
        match self.model {
            ModelKind::Unet => NetConfig::Unet(UNetConfig {
                in_channels,
                out_channels,
                width: self.width,
                depth: self.depth,
                upsampling: self.upsampling,
                dims: data.dims(),
                deep_supervision: self.deep_supervision,
            }),
            ModelKind::Deeplabv3plus => {
                NetConfig::Deeplabv3plus(DeepLabConfig { backbone: self.backbone, in_channels, out_channels })
            }
            ModelKind::SwinUnet => NetConfig::SwinUnet(SwinUNetConfig {
                in_channels,
                out_channels,
                shape: [data.shape[0], *data.shape.last().expect("a spatial axis")],
                window: self.window,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_share_sets_count_and_weight() {
        let mut cfg = TrainConfig::new(DataConfig::new(std::path::Path::new("")));
        cfg.batch_size = 4;
        let count_weight = |cfg: &mut TrainConfig, s| {
            cfg.synthetic_share = s;
            (cfg.synthetic_count(), cfg.synthetic_weight())
        };
        // The default keeps the loss of runs made before the flag: B synthetic pairs, weight lambda.
        assert_eq!(count_weight(&mut cfg, 0.5), (4, 1.0));
        assert_eq!(count_weight(&mut cfg, 0.2), (1, 0.25));
        assert_eq!(count_weight(&mut cfg, 0.75), (12, 3.0));
        assert_eq!(count_weight(&mut cfg, 0.01), (1, 0.25));
        cfg.lambda = 0.5;
        assert_eq!(count_weight(&mut cfg, 0.75), (12, 1.5));
    }
}
