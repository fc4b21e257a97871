//! `genseg experimental`: every setting of the run configuration as a flag, the research options
//! that docs/RESULTS.md measured as not helping among them (docs/OPTIONS.md gives each verdict).
use super::Given;
use anyhow::Result;
use clap::Args;
use genseg::data::split::DataConfig;
use genseg::eval::metrics::EmptyPolicy;
use genseg::gan::GanConfig;
use genseg::learn::loss::RegionLoss;
use genseg::learn::optim::OptimKind;
use genseg::models::discriminator::DiscriminatorKind;
use genseg::models::resnet::Backbone;
use genseg::models::unet::Upsampling;
use genseg::train::config::Schedule;
use genseg::train::config::{default_optim, UpperTarget};
use genseg::train::TrainConfig;
use genseg::upper::hypergrad::HypergradMode;
use std::path::{Path, PathBuf};

const SEGMENTER: &str = "Segmenter";
const OPTIMISER: &str = "Optimiser";
const AUGMENT: &str = "Augmentation";
const SYNTHETIC: &str = "Synthetic pairs (separate, genseg)";
pub const GENERATOR: &str = "Generator";
const UPPER: &str = "Upper level (genseg)";
pub const RESEARCH: &str = "Research (measured not to help; docs/OPTIONS.md)";

fn defaults() -> TrainConfig {
    TrainConfig::new(DataConfig::new(Path::new("")))
}

fn gan_defaults() -> GanConfig {
    GanConfig::default()
}

#[derive(Args, Clone)]
pub struct ExperimentalArgs {
    /// DeepLabV3+'s ResNet encoder
    #[arg(long, value_enum, default_value_t = defaults().backbone, help_heading = SEGMENTER)]
    backbone: Backbone,
    /// Swin-UNet's attention window side (7 for 224 px as the reference; 4 for 64 px)
    #[arg(long, default_value_t = defaults().window, help_heading = SEGMENTER)]
    window: i64,
    /// Initial segmenter weights (safetensors by variable name, e.g. a torchvision ResNet
    /// converted by scripts/convert_resnet.py); default: random
    #[arg(long, help_heading = SEGMENTER)]
    init: Option<PathBuf>,
    /// U-Net up-sampling
    #[arg(long, value_enum, default_value_t = defaults().upsampling, help_heading = SEGMENTER)]
    upsampling: Upsampling,
    /// Region loss beside cross-entropy
    #[arg(long, value_enum, default_value_t = defaults().region_loss, help_heading = SEGMENTER)]
    loss: RegionLoss,
    /// Deep supervision (nnU-Net): auxiliary outputs on the decoder stages, weighted 1/2^i
    #[arg(long, help_heading = SEGMENTER)]
    deep_supervision: bool,
    /// Score of a validation case whose prediction and reference are both empty
    #[arg(long, value_enum, default_value_t = defaults().empty_policy, help_heading = SEGMENTER)]
    empty_policy: EmptyPolicy,
    /// adam, rmsprop, or sgd (Nesterov momentum 0.99, weight decay 3e-5: nnU-Net's)
    #[arg(long, value_enum, default_value_t = defaults().optim.kind, help_heading = OPTIMISER)]
    optimizer: OptimKind,
    /// Learning rate [default: 1e-3 for adam and rmsprop (3e-4 for swin-unet), 1e-2 for sgd]
    #[arg(long, help_heading = OPTIMISER)]
    lr: Option<f64>,
    /// Weight decay [default: the optimiser's: adam 0, rmsprop 1e-8, sgd 3e-5]
    #[arg(long, help_heading = OPTIMISER)]
    weight_decay: Option<f64>,
    /// Learning-rate schedule: constant, or poly (nnU-Net's (1 - t/T)^0.9)
    #[arg(long, value_enum, default_value_t = defaults().schedule, help_heading = OPTIMISER)]
    schedule: Schedule,
    /// Early stopping never stops before this iteration
    #[arg(long, default_value_t = defaults().min_iters, help_heading = OPTIMISER)]
    min_iters: usize,
    /// Spatial axes the nnunet preset may mirror, e.g. 1 [default: all; leave out axes whose
    /// sides carry different labels]
    #[arg(long, value_delimiter = ',', help_heading = AUGMENT)]
    mirror_axes: Option<Vec<usize>>,
    /// Probability of an elastic deformation per case in the nnunet preset
    #[arg(long, default_value_t = defaults().elastic_p, help_heading = AUGMENT)]
    elastic_p: f64,
    /// Copy-paste: the probability that a real pair receives the lesions of another pair of its
    /// batch, pixels and labels
    #[arg(long, default_value_t = defaults().copy_paste, help_heading = AUGMENT)]
    copy_paste: f64,
    /// separate/genseg: augment the real pairs with the --augment preset too
    #[arg(long, help_heading = SYNTHETIC)]
    augment_real: bool,
    /// Weight of the synthetic-pair loss
    #[arg(long, default_value_t = defaults().lambda, help_heading = SYNTHETIC)]
    lambda: f64,
    /// The synthetic pairs' share of each step's pairs (0.5 = as many synthetic as real); their
    /// loss is weighted by that count, so at --lambda 1 they carry this share of the step's loss
    #[arg(long, default_value_t = defaults().synthetic_share, help_heading = SYNTHETIC)]
    synthetic_share: f64,
    /// Generator pretraining steps (without --generator)
    #[arg(long, default_value_t = defaults().pretrain_iters, help_heading = SYNTHETIC)]
    pretrain_iters: usize,
    /// The generator also learns from the unlabelled images (--unlabelled, --unlabelled-n) that a
    /// teacher (augment on the same split; synth-eval: the TRTR run) labels confidently (pixel
    /// confidence 0.95 on 90 % of an image, some foreground, at most 400)
    #[arg(long, help_heading = SYNTHETIC)]
    pseudo_labels: bool,
    /// Learning rate of the architecture logits alpha (Adam)
    #[arg(long, default_value_t = defaults().arch_lr, help_heading = UPPER)]
    arch_lr: f64,
    /// Upper-level (hypergradient) step every k iterations
    #[arg(long, default_value_t = defaults().arch_every, help_heading = UPPER)]
    arch_every: usize,
    /// GAN step every k iterations
    #[arg(long, default_value_t = defaults().gan_every, help_heading = UPPER)]
    gan_every: usize,
    /// Inner step of the unrolled update [default: the segmenter's learning rate]
    #[arg(long, help_heading = UPPER)]
    xi: Option<f64>,
    #[command(flatten)]
    gan: GanArgs,
    #[command(flatten)]
    research: ResearchArgs,
}

impl ExperimentalArgs {
    pub fn apply(&self, cfg: &mut TrainConfig, given: &Given) -> Result<()> {
        given.set("backbone", &mut cfg.backbone, &self.backbone);
        given.set("window", &mut cfg.window, &self.window);
        given.set("init", &mut cfg.init, &self.init);
        given.set("upsampling", &mut cfg.upsampling, &self.upsampling);
        given.set("loss", &mut cfg.region_loss, &self.loss);
        given.set("deep_supervision", &mut cfg.deep_supervision, &self.deep_supervision);
        given.set("empty_policy", &mut cfg.empty_policy, &self.empty_policy);
        if given.has("optimizer") {
            cfg.optim = default_optim(self.optimizer, cfg.model);
        }
        if let Some(lr) = self.lr {
            cfg.optim.lr = lr;
        }
        if let Some(wd) = self.weight_decay {
            cfg.optim.weight_decay = wd;
        }
        given.set("schedule", &mut cfg.schedule, &self.schedule);
        given.set("min_iters", &mut cfg.min_iters, &self.min_iters);
        given.set("mirror_axes", &mut cfg.mirror_axes, &self.mirror_axes);
        given.set("elastic_p", &mut cfg.elastic_p, &self.elastic_p);
        given.set("copy_paste", &mut cfg.copy_paste, &self.copy_paste);
        given.set("augment_real", &mut cfg.augment_real, &self.augment_real);
        given.set("lambda", &mut cfg.lambda, &self.lambda);
        given.set("synthetic_share", &mut cfg.synthetic_share, &self.synthetic_share);
        given.set("pretrain_iters", &mut cfg.pretrain_iters, &self.pretrain_iters);
        // A filter from --config stays; the flag alone brings the default one.
        if self.pseudo_labels && cfg.pseudo.is_none() {
            cfg.pseudo = Some(genseg::gan::pseudo::PseudoFilter::default());
        }
        given.set("arch_lr", &mut cfg.arch_lr, &self.arch_lr);
        given.set("arch_every", &mut cfg.arch_every, &self.arch_every);
        given.set("gan_every", &mut cfg.gan_every, &self.gan_every);
        given.set("xi", &mut cfg.xi, &self.xi);
        self.gan.apply(&mut cfg.gan, given);
        self.research.apply(cfg, given);
        Ok(())
    }
}

/// The generator's size and learning, shared by `pretrain-generator` and the experimental
/// commands.
#[derive(Args, Clone)]
pub struct GanArgs {
    /// Generator width (Pix2Pix ngf)
    #[arg(long, default_value_t = gan_defaults().ngf, help_heading = GENERATOR)]
    ngf: i64,
    /// Discriminator width (Pix2Pix ndf)
    #[arg(long, default_value_t = gan_defaults().ndf, help_heading = GENERATOR)]
    ndf: i64,
    /// The GAN's Adam learning rate
    #[arg(long, default_value_t = gan_defaults().lr, help_heading = GENERATOR)]
    gan_lr: f64,
    /// Weight of the generator's L1 loss to the real image
    #[arg(long, default_value_t = gan_defaults().lambda_l1, help_heading = GENERATOR)]
    lambda_l1: f64,
}

impl GanArgs {
    pub fn apply(&self, gan: &mut GanConfig, given: &Given) {
        given.set("ngf", &mut gan.ngf, &self.ngf);
        given.set("ndf", &mut gan.ndf, &self.ndf);
        given.set("gan_lr", &mut gan.lr, &self.gan_lr);
        given.set("lambda_l1", &mut gan.lambda_l1, &self.lambda_l1);
    }
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum MixedOpForm {
    Auto,
    Fused,
    Separate,
}

/// The generator's research options (`pretrain-generator` and training): each was measured and
/// did not help (docs/OPTIONS.md); kept to reproduce those results.
#[derive(Args, Clone)]
pub struct GanResearchArgs {
    /// Mixed ops as one fused conv or three separate convs; auto: three on the CPU, fused on CUDA
    #[arg(long, value_enum, default_value_t = MixedOpForm::Auto, help_heading = RESEARCH)]
    mixed_ops: MixedOpForm,
    /// DiffAugment (colour, translation, cutout) on every discriminator input
    #[arg(long, help_heading = RESEARCH)]
    diff_augment: bool,
    /// Train the GAN on pairs jointly augmented with GenSeg's geometric set
    #[arg(long, help_heading = RESEARCH)]
    joint_augment: bool,
    /// Weight of pix2pixHD's discriminator feature-matching loss (0 = off)
    #[arg(long, default_value_t = gan_defaults().feature_matching, help_heading = RESEARCH)]
    feature_matching: f64,
    /// Length of a per-image Gaussian code the generator takes beside the mask (0 = none)
    #[arg(long, default_value_t = gan_defaults().code_length, help_heading = RESEARCH)]
    code_length: i64,
    /// Weight of MSGAN's mode-seeking term (needs --code-length)
    #[arg(long, default_value_t = gan_defaults().mode_seeking, help_heading = RESEARCH)]
    mode_seeking: f64,
    /// Lesion inpainting: draw each synthetic lesion into another real training image
    #[arg(long, help_heading = RESEARCH)]
    inpaint: bool,
    /// With --inpaint: paste each lesion's real pixels into the other image first
    #[arg(long, help_heading = RESEARCH)]
    paste: bool,
    /// patch (Pix2Pix's PatchGAN) or segmenting (OASIS's per-pixel U-Net discriminator)
    #[arg(long, value_enum, default_value_t = gan_defaults().discriminator, help_heading = RESEARCH)]
    discriminator: DiscriminatorKind,
    /// Generator folder the pretraining starts from (a prior pretrained on other datasets)
    #[arg(long, help_heading = RESEARCH)]
    pub generator_prior: Option<PathBuf>,
}

/// The segmenter's and the upper level's research options, as [`GanResearchArgs`].
#[derive(Args, Clone)]
pub struct ResearchArgs {
    #[command(flatten)]
    gan: GanResearchArgs,
    /// Weight each synthetic pair by its influence on the validation loss (Ren et al. 2018)
    #[arg(long, help_heading = RESEARCH)]
    reweight: bool,
    /// The reference's photometric chain on synthetic images (2-D)
    #[arg(long, help_heading = RESEARCH)]
    synthetic_photometric: bool,
    /// What the hypergradient moves: alpha (the paper's), generator (its decoder), or both
    #[arg(long, value_enum, default_value_t = defaults().upper, help_heading = RESEARCH)]
    upper: UpperTarget,
    /// Adam learning rate of the generator's decoder under --upper generator|both
    #[arg(long, default_value_t = defaults().upper_generator_lr, help_heading = RESEARCH)]
    upper_generator_lr: f64,
    /// exact: double backward (the default); fd: DARTS' finite difference
    #[arg(long, value_enum, default_value_t = defaults().hypergrad, help_heading = RESEARCH)]
    hypergrad: HypergradMode,
    /// Finite-difference perturbation norm of --hypergrad fd (eps = scale / |v|)
    #[arg(long, default_value_t = defaults().fd_scale, help_heading = RESEARCH)]
    fd_scale: f64,
}

impl GanResearchArgs {
    pub fn apply(&self, gan: &mut GanConfig, given: &Given) {
        if given.has("mixed_ops") {
            gan.fused = match self.mixed_ops {
                MixedOpForm::Auto => None,
                MixedOpForm::Fused => Some(true),
                MixedOpForm::Separate => Some(false),
            };
        }
        given.set("diff_augment", &mut gan.diff_augment, &self.diff_augment);
        given.set("joint_augment", &mut gan.joint_augment, &self.joint_augment);
        given.set("feature_matching", &mut gan.feature_matching, &self.feature_matching);
        given.set("code_length", &mut gan.code_length, &self.code_length);
        given.set("mode_seeking", &mut gan.mode_seeking, &self.mode_seeking);
        given.set("inpaint", &mut gan.inpaint, &self.inpaint);
        given.set("paste", &mut gan.paste, &self.paste);
        given.set("discriminator", &mut gan.discriminator, &self.discriminator);
    }
}

impl ResearchArgs {
    fn apply(&self, cfg: &mut TrainConfig, given: &Given) {
        self.gan.apply(&mut cfg.gan, given);
        given.set("generator_prior", &mut cfg.generator_prior, &self.gan.generator_prior);
        given.set("reweight", &mut cfg.reweight, &self.reweight);
        given.set("synthetic_photometric", &mut cfg.synthetic_photometric, &self.synthetic_photometric);
        given.set("upper", &mut cfg.upper, &self.upper);
        given.set("upper_generator_lr", &mut cfg.upper_generator_lr, &self.upper_generator_lr);
        given.set("hypergrad", &mut cfg.hypergrad, &self.hypergrad);
        given.set("fd_scale", &mut cfg.fd_scale, &self.fd_scale);
    }
}
