//! The command line: flags, their validation and their conversion into the library's
//! configurations. Defaults come from the library ([`TrainConfig::new`], [`DataConfig::new`],
//! [`GanConfig::default`]), so the CLI, the demo and the tests share them.
use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use genseg::data::nnaug::AugmentPreset;
use genseg::data::set::{default_mask_suffixes, LoadOptions, VolumeOptions};
use genseg::data::split::{validation_count, DataConfig};
use genseg::eval::metrics::{EmptyPolicy, MetricOptions};
use genseg::export::Format;
use genseg::models::discriminator::DiscriminatorKind;
use genseg::models::resnet::Backbone;
use genseg::models::segnet::ModelKind;
use genseg::models::unet::Upsampling;
use genseg::precision::Precision;
use genseg::study::{StudyArm, StudyConfig};
use genseg::train::config::{Schedule, Upper, SWIN_ADAM_LR};
use genseg::train::gan::{read_prior, GanConfig, PretrainConfig};
use genseg::train::hypergrad::HypergradMode;
use genseg::train::loss::RegionLoss;
use genseg::train::optim::{OptimConfig, OptimKind};
use genseg::train::{Method, TrainConfig};
use std::path::{Path, PathBuf};

fn train_defaults() -> TrainConfig {
    TrainConfig::new(DataConfig::new(Path::new("")))
}

fn load_defaults() -> LoadOptions {
    LoadOptions::default()
}

fn gan_defaults() -> GanConfig {
    GanConfig::default()
}

#[derive(Parser)]
#[command(
    name = "genseg",
    version,
    about = "Segmentation from a handful of labelled images, with generated training pairs (GenSeg)"
)]
pub struct Cli {
    /// auto (CUDA when present), cpu or cuda
    #[arg(long, global = true, default_value = "auto")]
    pub device: String,
    /// libtorch threads (0 = libtorch's default)
    #[arg(long, global = true, default_value_t = 0)]
    pub threads: usize,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Clone)]
pub struct DataArgs {
    /// Dataset folder: images/ + masks/, or nnU-Net's imagesTr/ + labelsTr/
    pub data: PathBuf,
    /// Square side images and masks are resized to
    #[arg(long, default_value_t = load_defaults().size)]
    size: u32,
    /// 1 or 3 input channels (default: from the first image)
    #[arg(long)]
    channels: Option<usize>,
    /// Extra mask file suffix to strip when pairing (repeatable; _mask, _segmentation, _lesion, _manual1 are built in)
    #[arg(long = "mask-suffix")]
    mask_suffix: Vec<String>,
    /// Threshold masks with more than two values at half their range instead of refusing them;
    /// for NIfTI label maps: merge every foreground label into one
    #[arg(long)]
    binarize: bool,
    /// NIfTI volumes: shape every volume is centre-cropped/padded to (axis order of the files)
    #[arg(long, value_parser = parse_shape, default_value_t = Shape(VolumeOptions::default().shape))]
    shape: Shape,
    /// NIfTI volumes: labels to segment, one output channel each (default: every label found)
    #[arg(long, value_delimiter = ',')]
    labels: Option<Vec<u32>>,
    /// Accept a set whose every mask is empty (refused by default: nothing to learn)
    #[arg(long)]
    allow_empty_masks: bool,
}

/// A volume shape as the command line writes it: `32,48,32`.
#[derive(Clone, Copy)]
struct Shape([usize; 3]);

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c] = self.0;
        write!(f, "{a},{b},{c}")
    }
}

fn parse_shape(text: &str) -> std::result::Result<Shape, String> {
    let sides: Vec<usize> = text
        .split(',')
        .map(|v| v.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("{e}"))?;
    let shape =
        <[usize; 3]>::try_from(sides).map_err(|_| format!("'{text}' is not three sides; write e.g. 32,48,32"))?;
    if shape.contains(&0) {
        return Err(format!("'{text}' has a side of 0; every side must be at least 1"));
    }
    Ok(Shape(shape))
}

impl DataArgs {
    pub fn options(&self) -> Result<LoadOptions> {
        if self.size == 0 {
            bail!("--size must be at least 1 (the side images are resized to)");
        }
        if let Some(c) = self.channels.filter(|c| ![1, 3].contains(c)) {
            bail!("--channels {c}: use 1 (grey) or 3 (colour)");
        }
        Ok(LoadOptions {
            size: self.size,
            channels: self.channels,
            mask_suffixes: default_mask_suffixes().into_iter().chain(self.mask_suffix.iter().cloned()).collect(),
            binarize: self.binarize,
            volume: VolumeOptions { shape: self.shape.0, labels: self.labels.clone() },
            allow_empty: self.allow_empty_masks,
        })
    }

    fn config(&self, split: &SplitArgs) -> Result<DataConfig> {
        validation_count(split.n, split.val_n)?;
        Ok(DataConfig { load: self.options()?, n: split.n, val_n: split.val_n, ..DataConfig::new(&self.data) })
    }
}

/// How many labelled pairs a seeded split takes, and how many of them validate.
#[derive(Args, Clone)]
pub struct SplitArgs {
    /// Labelled pairs: training + validation, as the GenSeg paper counts them (the rest is test)
    #[arg(long, default_value_t = train_defaults().data.n)]
    pub n: usize,
    /// Validation pairs among the --n [default: a quarter of --n, at least 2]
    #[arg(long)]
    pub val_n: Option<usize>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum MixedOpForm {
    Auto,
    Fused,
    Separate,
}

#[derive(Args, Clone)]
pub struct GanArgs {
    /// Generator width (Pix2Pix ngf)
    #[arg(long, default_value_t = gan_defaults().ngf)]
    ngf: i64,
    /// Discriminator width (Pix2Pix ndf)
    #[arg(long, default_value_t = gan_defaults().ndf)]
    ndf: i64,
    #[arg(long, default_value_t = gan_defaults().lr)]
    gan_lr: f64,
    #[arg(long, default_value_t = gan_defaults().lambda_l1)]
    lambda_l1: f64,
    /// Mixed ops as one fused conv or three separate convs (the reference's form); auto: three
    /// convs on the CPU, fused on CUDA (the faster form on each)
    #[arg(long, value_enum, default_value_t = MixedOpForm::Auto)]
    mixed_ops: MixedOpForm,
    /// DiffAugment (colour, translation, cutout) on every discriminator input, real and fake
    #[arg(long)]
    diff_augment: bool,
    /// Train the GAN on pairs jointly augmented with GenSeg's geometric set
    #[arg(long)]
    joint_augment: bool,
    /// Weight of pix2pixHD's discriminator feature-matching loss (0 = off; pix2pixHD uses 10)
    #[arg(long, default_value_t = gan_defaults().feature_matching)]
    feature_matching: f64,
    /// Length of a per-image Gaussian code the generator takes beside the mask (0 = none;
    /// dropout is then its only noise)
    #[arg(long, default_value_t = gan_defaults().code_length)]
    code_length: i64,
    /// Weight of the mode-seeking term that makes different codes give different images (needs
    /// --code-length; MSGAN uses 1)
    #[arg(long, default_value_t = gan_defaults().mode_seeking)]
    mode_seeking: f64,
    /// Lesion inpainting: draw each synthetic lesion into another real training image, redrawing
    /// only a hole around it and around that image's own lesion (the rest stays real)
    #[arg(long)]
    inpaint: bool,
    /// With --inpaint: paste each lesion's real pixels (from its own image, moved with the
    /// augmented mask) into the other image; the generator corrects their colours and the seam
    /// and paints over that image's own lesion
    #[arg(long)]
    paste: bool,
    /// The network that judges the generator's images: patch (Pix2Pix's PatchGAN on mask and
    /// image) or segmenting (OASIS: a U-Net that segments the image into the mask's classes or
    /// "fake", per pixel; not with --feature-matching)
    #[arg(long, value_enum, default_value_t = DiscriminatorKind::Patch)]
    discriminator: DiscriminatorKind,
}

impl GanArgs {
    fn config(&self) -> Result<GanConfig> {
        if self.ngf < 1 || self.ndf < 1 {
            bail!("--ngf and --ndf must be at least 1");
        }
        positive("--gan-lr", self.gan_lr)?;
        non_negative("--lambda-l1", self.lambda_l1)?;
        non_negative("--feature-matching", self.feature_matching)?;
        non_negative("--mode-seeking", self.mode_seeking)?;
        let gan = GanConfig {
            ngf: self.ngf,
            ndf: self.ndf,
            lr: self.gan_lr,
            lambda_l1: self.lambda_l1,
            fused: match self.mixed_ops {
                MixedOpForm::Auto => None,
                MixedOpForm::Fused => Some(true),
                MixedOpForm::Separate => Some(false),
            },
            diff_augment: self.diff_augment,
            joint_augment: self.joint_augment,
            feature_matching: self.feature_matching,
            code_length: self.code_length,
            mode_seeking: self.mode_seeking,
            inpaint: self.inpaint,
            paste: self.paste,
            discriminator: self.discriminator,
            ..gan_defaults()
        };
        gan.check()?;
        Ok(gan)
    }
}

fn positive(flag: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        bail!("{flag} {v}: must be a finite number above 0");
    }
    Ok(())
}

fn probability(flag: &str, v: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&v) {
        bail!("{flag} {v}: a probability must be between 0 and 1");
    }
    Ok(())
}

fn non_negative(flag: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v >= 0.0) {
        bail!("{flag} {v}: must be a finite number, 0 or above");
    }
    Ok(())
}

/// `--synthetic-share` (train, study, bench schedule), as a clap value parser: strictly between 0
/// and 1.
fn synthetic_share(text: &str) -> std::result::Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        Ok(_) => Err("must be above 0 and below 1 (the real pairs keep their place; for real pairs only use \
                      --method augment)"
            .into()),
        Err(e) => Err(format!("{e}")),
    }
}

/// A count that must be at least 1, as a clap value parser.
fn at_least_1(text: &str) -> std::result::Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(e) => Err(format!("{e}")),
    }
}

fn at_least_one(flag: &str, v: usize) -> Result<()> {
    if v == 0 {
        bail!("{flag} must be at least 1");
    }
    Ok(())
}

#[derive(Args, Clone)]
pub struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Out-of-domain dataset evaluated with the final model
    #[arg(long)]
    ood: Option<PathBuf>,
    /// File of training case ids (one a line) instead of a seeded split
    #[arg(long)]
    train_ids: Option<PathBuf>,
    /// File of validation case ids (with --train-ids)
    #[arg(long)]
    val_ids: Option<PathBuf>,
    #[arg(long, default_value_t = train_defaults().seed)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = train_defaults().method)]
    method: Method,
    /// The segmentation network (deeplabv3plus: 2-D, sides a multiple of 16; swin-unet: 2-D,
    /// sides the window grid divides)
    #[arg(long, value_enum, default_value_t = train_defaults().model)]
    model: ModelKind,
    /// DeepLabV3+'s ResNet encoder
    #[arg(long, value_enum, default_value_t = train_defaults().backbone)]
    backbone: Backbone,
    /// Swin-UNet's attention window side (7 for 224 px as the reference; 4 for 64 px)
    #[arg(long, default_value_t = train_defaults().window)]
    window: i64,
    /// Initial segmenter weights (safetensors by variable name, e.g. a torchvision ResNet
    /// converted by scripts/convert_resnet.py); default: random
    #[arg(long)]
    init: Option<PathBuf>,
    /// U-Net width (channels of the first level)
    #[arg(long, default_value_t = train_defaults().width)]
    width: i64,
    /// U-Net levels
    #[arg(long, default_value_t = train_defaults().depth)]
    depth: usize,
    #[arg(long, value_enum, default_value_t = train_defaults().upsampling)]
    upsampling: Upsampling,
    #[arg(long, value_enum, default_value_t = train_defaults().region_loss)]
    loss: RegionLoss,
    /// adam, rmsprop, or sgd (Nesterov momentum 0.99, weight decay 3e-5: nnU-Net's)
    #[arg(long, value_enum, default_value_t = train_defaults().optim.kind)]
    optimizer: OptimKind,
    /// Learning rate (default: 1e-3 for adam and rmsprop, 1e-2 for sgd)
    #[arg(long)]
    lr: Option<f64>,
    /// Weight decay (default: the optimiser's: adam 0, rmsprop 1e-8, sgd 3e-5)
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Learning-rate schedule: constant, or poly (nnU-Net's (1 - t/T)^0.9)
    #[arg(long, value_enum, default_value_t = train_defaults().schedule)]
    schedule: Schedule,
    /// What `--method augment` applies: none, geometric (GenSeg's set) or nnunet (nnU-Net v2's defaults)
    #[arg(long = "augment", value_enum, default_value_t = train_defaults().augment_preset)]
    augment_preset: AugmentPreset,
    /// Spatial axes the nnunet preset may mirror, e.g. 1 (default: all; leave out axes whose
    /// sides carry different labels, such as left/right anatomy)
    #[arg(long, value_delimiter = ',')]
    mirror_axes: Option<Vec<usize>>,
    /// Early stopping: validations without a better validation Dice before the run stops (0 =
    /// off); never while the validation Dice is 0 (the segmenter finds no lesion yet)
    #[arg(long, default_value_t = train_defaults().patience)]
    patience: usize,
    /// Early stopping never stops before this iteration
    #[arg(long, default_value_t = train_defaults().min_iters)]
    min_iters: usize,
    /// separate/genseg: augment the real pairs with the --augment preset too (synthetic pairs on
    /// top of classic augmentation)
    #[arg(long)]
    augment_real: bool,
    /// Copy-paste augmentation: the probability that a real pair, after the --augment preset,
    /// receives the lesions of another pair of its batch, pixels and labels (augment; separate
    /// and genseg with --augment-real)
    #[arg(long, default_value_t = train_defaults().copy_paste)]
    copy_paste: f64,
    /// separate/genseg: weight each synthetic pair by its influence on the validation loss after
    /// a look-ahead step (Ren et al. 2018); pairs that oppose it get weight 0
    #[arg(long)]
    reweight: bool,
    /// The reference's photometric chain on synthetic images (equalize, posterize, sharpness,
    /// autocontrast, saturation), 2-D only
    #[arg(long)]
    synthetic_photometric: bool,
    /// Probability of an elastic deformation per case in the nnunet preset (nnU-Net's default 0)
    #[arg(long, default_value_t = train_defaults().elastic_p)]
    elastic_p: f64,
    /// Deep supervision (nnU-Net): auxiliary outputs on the decoder stages, weighted 1/2^i
    #[arg(long)]
    deep_supervision: bool,
    /// Forward passes of the segmentation and GAN steps: fp32, or bf16 autocast with float32
    /// weights (the hypergradient and validation stay float32)
    #[arg(long, value_enum, default_value_t = train_defaults().precision)]
    precision: Precision,
    #[arg(long, default_value_t = train_defaults().iters)]
    iters: usize,
    #[arg(long, default_value_t = train_defaults().batch_size)]
    batch_size: i64,
    /// Validate (and checkpoint) every k iterations
    #[arg(long, default_value_t = train_defaults().val_every)]
    val_every: usize,
    /// Weight of the synthetic-pair loss
    #[arg(long, default_value_t = train_defaults().lambda)]
    lambda: f64,
    /// separate/genseg: the synthetic pairs' share of each step's pairs (the real ones stay
    /// --batch-size; 0.5 = as many synthetic as real, 0.2 = one per four real); their loss is
    /// weighted by that count, so at --lambda 1 they carry this share of the step's loss
    #[arg(long, default_value_t = train_defaults().synthetic_share, value_parser = synthetic_share)]
    synthetic_share: f64,
    #[command(flatten)]
    gan: GanArgs,
    /// Generator pretraining steps (separate/genseg without --generator)
    #[arg(long, default_value_t = train_defaults().pretrain_iters)]
    pretrain_iters: usize,
    /// Pretrained generator folder (from pretrain-generator)
    #[arg(long)]
    generator: Option<PathBuf>,
    /// Generator folder the pretraining starts from: a prior pretrained on other datasets'
    /// pairs (pretrain-generator on a folder of them), fine-tuned on this run's pairs
    #[arg(long, conflicts_with = "generator")]
    generator_prior: Option<PathBuf>,
    /// Learning rate of the architecture logits alpha (Adam)
    #[arg(long, default_value_t = train_defaults().arch_lr)]
    arch_lr: f64,
    /// Upper-level (hypergradient) step every k iterations
    #[arg(long, default_value_t = train_defaults().arch_every)]
    arch_every: usize,
    /// genseg: GAN step every k iterations
    #[arg(long, default_value_t = train_defaults().gan_every)]
    gan_every: usize,
    /// genseg: what the hypergradient moves (alpha: the paper's architecture logits; generator:
    /// the generator's decoder weights; both)
    #[arg(long, value_enum, default_value_t = train_defaults().upper)]
    upper: Upper,
    /// Adam learning rate of the generator's decoder under --upper generator|both
    #[arg(long, default_value_t = train_defaults().upper_generator_lr)]
    upper_generator_lr: f64,
    /// Inner step of the unrolled update (default: --lr)
    #[arg(long)]
    xi: Option<f64>,
    /// Hypergradient finite-difference perturbation norm (eps = scale / |v|)
    #[arg(long, default_value_t = train_defaults().fd_scale)]
    fd_scale: f64,
    /// fd: DARTS finite difference; exact: double backward (for comparison)
    #[arg(long, value_enum, default_value_t = train_defaults().hypergrad)]
    hypergrad: HypergradMode,
    /// Score of a case whose prediction and reference are both empty
    #[arg(long, value_enum, default_value_t = train_defaults().empty_policy)]
    empty_policy: EmptyPolicy,
}

/// A study of every N in `ns` (each checked against `val_n`), seeds 1..=`seeds`.
pub fn study_config(
    args: &TrainArgs,
    ns: Vec<usize>,
    val_n: Option<usize>,
    seeds: u64,
    methods: Vec<Method>,
    shard: Option<(usize, usize)>,
) -> Result<StudyConfig> {
    for &n in &ns {
        validation_count(n, val_n)?;
    }
    args.check_generator_flags(&methods)?;
    let base = args.config(&SplitArgs { n: ns[0], val_n })?;
    Ok(StudyConfig { base, ns, seeds: (1..=seeds).collect(), methods, shard })
}

/// `i/k` with i < k.
fn shard(text: &str) -> std::result::Result<(usize, usize), String> {
    let (i, k) = text.split_once('/').ok_or_else(|| format!("'{text}' is not i/k"))?;
    let (i, k) = (i.parse::<usize>().map_err(|e| e.to_string())?, k.parse::<usize>().map_err(|e| e.to_string())?);
    if i >= k {
        return Err(format!("'{text}': i must be below k"));
    }
    Ok((i, k))
}

/// The command line of `--jobs` worker `i` of `jobs`: this process's arguments without `--jobs`
/// and `--threads`, with `threads` libtorch threads and `--shard i/jobs`.
pub fn worker_args(i: usize, jobs: usize, threads: usize) -> Vec<String> {
    let mut args = vec!["--threads".to_string(), threads.to_string()];
    let mut given = std::env::args().skip(1);
    while let Some(a) = given.next() {
        match a.as_str() {
            "--jobs" | "--threads" => {
                given.next();
            }
            _ if a.starts_with("--jobs=") || a.starts_with("--threads=") => {}
            _ => args.push(a),
        }
    }
    args.extend(["--shard".to_string(), format!("{i}/{jobs}")]);
    args
}

impl TrainArgs {
    /// `train`'s configuration: [`TrainArgs::config`], with the generator flags checked.
    pub fn train_config(&self, split: &SplitArgs) -> Result<TrainConfig> {
        self.check_generator_flags(&[self.method])?;
        self.config(split)
    }

    /// `--generator` and `--generator-prior` are refused, not ignored, when none of `methods`
    /// trains with a generator: a run that silently dropped them would read as one that used them.
    fn check_generator_flags(&self, methods: &[Method]) -> Result<()> {
        let given = [("--generator", &self.generator), ("--generator-prior", &self.generator_prior)];
        let Some((flag, _)) = given.into_iter().find(|(_, dir)| dir.is_some()) else {
            return Ok(());
        };
        if !methods.iter().any(|m| m.uses_generator()) {
            let names: Vec<&str> = methods.iter().map(|m| m.name()).collect();
            bail!(
                "{flag}: --method {} trains no generator; drop {flag}, or use --method separate or genseg",
                names.join(",")
            );
        }
        Ok(())
    }

    /// The run's configuration; a flag out of range is refused naming it.
    pub fn config(&self, split: &SplitArgs) -> Result<TrainConfig> {
        for (flag, v) in
            [("--iters", self.iters), ("--val-every", self.val_every), ("--width", self.width.max(0) as usize)]
        {
            at_least_one(flag, v)?;
        }
        at_least_one("--batch-size", self.batch_size.max(0) as usize)?;
        let mut optim = OptimConfig::of_kind(self.optimizer);
        if self.model == ModelKind::SwinUnet && self.optimizer == OptimKind::Adam {
            optim.lr = SWIN_ADAM_LR;
        }
        if let Some(lr) = self.lr {
            positive("--lr", lr)?;
            optim.lr = lr;
        }
        if let Some(wd) = self.weight_decay {
            non_negative("--weight-decay", wd)?;
            optim.weight_decay = wd;
        }
        positive("--arch-lr", self.arch_lr)?;
        positive("--upper-generator-lr", self.upper_generator_lr)?;
        at_least_one("--arch-every", self.arch_every)?;
        at_least_one("--gan-every", self.gan_every)?;
        positive("--fd-scale", self.fd_scale)?;
        non_negative("--lambda", self.lambda)?;
        probability("--elastic-p", self.elastic_p)?;
        probability("--copy-paste", self.copy_paste)?;
        if let Some(xi) = self.xi {
            positive("--xi", xi)?;
        }
        let data = DataConfig {
            ood: self.ood.clone(),
            train_ids: self.train_ids.clone(),
            val_ids: self.val_ids.clone(),
            ..self.data.config(split)?
        };
        Ok(TrainConfig {
            method: self.method,
            seed: self.seed,
            model: self.model,
            backbone: self.backbone,
            window: self.window,
            init: self.init.clone(),
            width: self.width,
            depth: self.depth,
            upsampling: self.upsampling,
            region_loss: self.loss,
            optim,
            iters: self.iters,
            batch_size: self.batch_size,
            val_every: self.val_every,
            lambda: self.lambda,
            synthetic_share: self.synthetic_share,
            gan: gan_config(&self.gan, &self.generator_prior)?,
            pretrain_iters: self.pretrain_iters,
            generator: self.generator.clone(),
            generator_prior: self.generator_prior.clone(),
            arch_lr: self.arch_lr,
            arch_every: self.arch_every,
            gan_every: self.gan_every,
            upper: self.upper,
            upper_generator_lr: self.upper_generator_lr,
            xi: self.xi,
            fd_scale: self.fd_scale,
            hypergrad: self.hypergrad,
            empty_policy: self.empty_policy,
            augment_preset: self.augment_preset,
            mirror_axes: self.mirror_axes.clone(),
            schedule: self.schedule,
            patience: self.patience,
            min_iters: self.min_iters,
            deep_supervision: self.deep_supervision,
            elastic_p: self.elastic_p,
            synthetic_photometric: self.synthetic_photometric,
            augment_real: self.augment_real,
            copy_paste: self.copy_paste,
            reweight: self.reweight,
            precision: self.precision,
            ..TrainConfig::new(data)
        })
    }
}

#[derive(Args, Clone)]
pub struct PretrainArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    split: SplitArgs,
    #[arg(long, default_value_t = train_defaults().seed)]
    seed: u64,
    #[arg(long, default_value_t = train_defaults().pretrain_iters)]
    iters: usize,
    #[arg(long, default_value_t = train_defaults().batch_size)]
    batch_size: i64,
    /// Write a sample grid (mask | real | generated) every k steps (default: a tenth of --iters)
    #[arg(long)]
    sample_every: Option<usize>,
    /// The GAN steps' forward passes: fp32, or bf16 autocast with float32 weights
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    precision: Precision,
    /// Generator folder to start from instead of random weights (a prior pretrained on other
    /// datasets' pairs), fine-tuned on these pairs
    #[arg(long)]
    generator_prior: Option<PathBuf>,
    #[command(flatten)]
    gan: GanArgs,
}

impl PretrainArgs {
    pub fn config(&self) -> Result<(DataConfig, GanConfig, PretrainConfig)> {
        at_least_one("--iters", self.iters)?;
        at_least_one("--batch-size", self.batch_size.max(0) as usize)?;
        let mut pretrain = PretrainConfig {
            precision: self.precision,
            prior: self.generator_prior.clone(),
            ..PretrainConfig::new(self.iters, self.batch_size, self.seed)
        };
        if let Some(k) = self.sample_every {
            at_least_one("--sample-every", k)?;
            pretrain.sample_every = k;
        }
        Ok((self.data.config(&self.split)?, gan_config(&self.gan, &self.generator_prior)?, pretrain))
    }
}

/// The GAN flags, and the `--generator-prior` folder checked against them before a run writes
/// anything.
fn gan_config(gan: &GanArgs, prior: &Option<PathBuf>) -> Result<GanConfig> {
    let gan = gan.config()?;
    if let Some(prior) = prior {
        read_prior(prior, &gan)?;
    }
    Ok(gan)
}

#[derive(Args, Clone)]
pub struct EvaluateArgs {
    pub pred: PathBuf,
    pub reference: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = EmptyPolicy::Nan)]
    empty_policy: EmptyPolicy,
    #[arg(long = "mask-suffix")]
    mask_suffix: Vec<String>,
    /// Pixel spacing in mm, rows,columns
    #[arg(long, value_delimiter = ',', default_value = "1,1", allow_hyphen_values = true)]
    spacing: Vec<f64>,
    /// Normalised surface Dice tolerance in mm
    #[arg(long, default_value_t = 1.0)]
    pub nsd_tolerance: f64,
    /// Labels to score in NIfTI label maps (each as its own binary mask)
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub labels: Vec<u32>,
}

impl EvaluateArgs {
    /// Metric options; `volumes` takes the spacing from each reference header instead.
    pub fn options(&self, volumes: bool) -> Result<MetricOptions> {
        if !volumes && self.spacing.len() != 2 {
            bail!("--spacing takes two values (rows,columns) for 2-D masks");
        }
        for &s in &self.spacing {
            positive("--spacing", s)?;
        }
        positive("--nsd-tolerance", self.nsd_tolerance)?;
        Ok(MetricOptions { empty: self.empty_policy, spacing: self.spacing.clone(), nsd_tolerance: self.nsd_tolerance })
    }

    pub fn suffixes(&self) -> Vec<String> {
        default_mask_suffixes().into_iter().chain(self.mask_suffix.iter().cloned()).collect()
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Check a dataset folder: counts, sizes, mask values and every problem, naming the file
    Check {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Train a segmenter (plain, augment, separate or genseg) into a run folder
    #[command(allow_negative_numbers = true)]
    Train {
        #[command(flatten)]
        args: TrainArgs,
        #[command(flatten)]
        split: SplitArgs,
        #[arg(long)]
        out: PathBuf,
    },
    /// Predict masks for an image or a folder with a trained run
    Predict {
        #[arg(long)]
        run: PathBuf,
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Test-time augmentation: the mean over every mirroring of the spatial axes (nnU-Net's)
        #[arg(long)]
        tta: bool,
        /// The forward passes: fp32, or bf16 autocast (faster where the hardware has bf16)
        #[arg(long, value_enum, default_value_t = Precision::Fp32)]
        precision: Precision,
    },
    /// A trained run's U-Net as TorchScript or ONNX (checked against genseg's own prediction)
    Export {
        #[arg(long)]
        run: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// torchscript or onnx [default: onnx for a .onnx --out, else torchscript]
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Python with torch [default: the venv genseg was built with]
        #[arg(long)]
        python: Option<PathBuf>,
    },
    /// Compare predicted masks with reference masks (per-case CSV + summary.json)
    #[command(allow_negative_numbers = true)]
    Evaluate(EvaluateArgs),
    /// Pretrain the mask-to-image generator (Pix2Pix with mixed ops) on training pairs
    #[command(allow_negative_numbers = true)]
    PretrainGenerator {
        #[command(flatten)]
        args: PretrainArgs,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write synthetic image/mask pairs from augmented masks with a pretrained generator
    Synth {
        /// Generator folder (pretrain-generator output, or a run's generator/)
        #[arg(long)]
        run: PathBuf,
        /// Folder of binary masks to augment
        #[arg(long, conflicts_with = "from_train")]
        masks: Option<PathBuf>,
        /// Use the generator's own training masks
        #[arg(long)]
        from_train: bool,
        #[arg(long, default_value_t = 16, value_parser = at_least_1)]
        n: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// What a generator's synthetic pairs teach a segmenter: TSTR vs TRTR Dice, memorisation,
    /// diversity, held-out L1 and a picture (pretrains the generator into OUT/generator first)
    #[command(allow_negative_numbers = true)]
    SynthEval {
        #[command(flatten)]
        args: TrainArgs,
        #[command(flatten)]
        split: SplitArgs,
        /// Synthetic pairs the TSTR segmenter trains on [default: 8 per training pair]
        #[arg(long, value_parser = at_least_1)]
        synthetic_n: Option<usize>,
        /// Draws per mask for the diversity figure and the picture
        #[arg(long, default_value_t = 4, value_parser = at_least_1)]
        samples: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Every (N, seed, method) combination; results.csv, results.md and data-efficiency plots
    #[command(allow_negative_numbers = true)]
    Study {
        #[command(flatten)]
        args: TrainArgs,
        /// Labelled-set sizes (training + validation), comma separated
        #[arg(long, value_delimiter = ',', default_value = "8,16,32", value_parser = at_least_1)]
        n: Vec<usize>,
        /// Validation pairs among each N [default: a quarter of N, at least 2]
        #[arg(long)]
        val_n: Option<usize>,
        /// Study cells (N, seed) run in parallel worker processes, the threads split between them
        #[arg(long, default_value_t = 1, value_parser = at_least_1)]
        jobs: usize,
        /// Internal: the worker of --jobs that runs cells i, i+k, ... (i/k)
        #[arg(long, hide = true, value_parser = shard)]
        shard: Option<(usize, usize)>,
        /// Write results.csv/md, the plots and report.html from the runs that have finished,
        /// training nothing (e.g. while the study still runs)
        #[arg(long, conflicts_with_all = ["jobs", "shard"])]
        tables_only: bool,
        /// Number of seeds (1..=k)
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        seeds: u64,
        #[arg(long, value_delimiter = ',', default_value = "plain,augment,separate,genseg")]
        methods: Vec<Method>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Paired differences between arms of different studies (a variant study against the one it
    /// varies), by (N, seed), with 95 % bootstrap intervals, from their results.csv
    Compare {
        /// The arm the others are compared with, STUDY_DIR:METHOD
        #[arg(long)]
        base: StudyArm,
        /// The arms, each STUDY_DIR:METHOD
        #[arg(required = true)]
        arms: Vec<StudyArm>,
        /// Also write the tables to this markdown file
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Time training steps (ms/step, GFLOP/s); bench/run.sh compares them with PyTorch
    Bench(BenchArgs),
    /// Write the built-in phantom dataset (textured blobs on a textured background)
    Phantom {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 60, value_parser = at_least_1)]
        n: usize,
        /// Side in pixels (at least 8, so every blob covers pixels)
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..))]
        size: u32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Self-contained demo on generated phantom data: train plain and genseg briefly, evaluate, draw
    Demo {
        #[arg(long, default_value = "demo-out")]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum BenchWhat {
    Unet,
    /// A DeepLabV3+ training step (--backbone)
    Deeplab,
    /// A Swin-UNet training step (--window)
    SwinUnet,
    /// A plain U-Net step with and without the nnunet augmentation preset
    Augment,
    Gan,
    /// A GAN step with today's defaults, with --diff-augment --joint-augment --feature-matching 10,
    /// with those plus --code-length 8 --mode-seeking 1, with those plus --inpaint, --inpaint
    /// --paste, and with --discriminator segmenting
    GanRecipe,
    /// Images per second of prediction (eval mode, no gradients) at --size, batch --batch
    Predict,
    /// Each phase of one genseg iteration (GAN step, synthesis, segmentation step, both
    /// hypergradient modes, per-sample weights) beside a plain U-Net step
    Phases,
    /// Seconds per iteration of the real training loop on phantom data: plain, augment, and
    /// genseg with its GAN and upper-level steps every 1, 4 and 8 iterations (--every)
    Schedule,
    Hypergrad,
    Metrics,
}

#[derive(Args, Clone)]
pub struct BenchArgs {
    #[arg(value_enum)]
    pub what: BenchWhat,
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(i64).range(1..))]
    pub width: i64,
    #[arg(long, default_value_t = 5, value_parser = at_least_1)]
    pub depth: usize,
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(i64).range(1..))]
    pub size: i64,
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i64).range(1..))]
    pub batch: i64,
    #[arg(long, default_value_t = 10, value_parser = at_least_1)]
    pub steps: usize,
    /// phases, schedule: generator and discriminator width [default: --width]
    #[arg(long)]
    pub ngf: Option<i64>,
    /// deeplab: the ResNet encoder
    #[arg(long, value_enum, default_value_t = Backbone::Resnet18)]
    pub backbone: Backbone,
    /// swin-unet: the attention window side
    #[arg(long, default_value_t = 7)]
    pub window: i64,
    /// gan: three separate transposed convs per mixed op instead of the fused one
    #[arg(long)]
    pub separate_ops: bool,
    /// schedule: the genseg arms' --gan-every / --arch-every, one run each
    #[arg(long, value_delimiter = ',', default_values_t = [1, 4, 8], value_parser = at_least_1)]
    pub every: Vec<usize>,
    /// schedule: the genseg arms' --synthetic-share
    #[arg(long, default_value_t = train_defaults().synthetic_share, value_parser = synthetic_share)]
    pub synthetic_share: f64,
    /// schedule: rounds over all arms; each arm's median is reported (the machine's timings vary)
    #[arg(long, default_value_t = 3, value_parser = at_least_1)]
    pub rounds: usize,
    /// hypergrad: dataset whose cases feed the batches
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// hypergrad: pretrained generator folder
    #[arg(long)]
    pub generator: Option<PathBuf>,
    /// unet, gan, predict, schedule: forward passes in fp32 or bf16 autocast
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
}
