//! The flags of `train`, `study` and `synth-eval`, and the run configuration they make: a
//! configuration file (`--config`, the format a run folder's config.json has) or the library's
//! defaults, with every flag given on the command line on top.
use super::data::{DataArgs, SplitArgs};
use super::experimental::ExperimentalArgs;
use super::values::{at_least_one, non_negative, positive, probability, synthetic_share};
use super::Given;
use anyhow::{bail, Context, Result};
use clap::Args;
use genseg::data::nnaug::AugmentPreset;
use genseg::data::split::DataConfig;
use genseg::gan::{read_prior, GanConfig};
use genseg::models::segnet::ModelKind;
use genseg::precision::Precision;
use genseg::train::config::default_optim;
use genseg::train::{Method, TrainConfig};
use std::path::{Path, PathBuf};

pub const MODEL: &str = "Model";
pub const TRAINING: &str = "Training";
pub const OUTPUT: &str = "Configuration and output";

pub fn defaults() -> TrainConfig {
    TrainConfig::new(DataConfig::new(Path::new("")))
}

/// What a configuration trains: `train`'s `--method`, or a study's arms.
pub enum Methods<'a> {
    Flag(Method),
    Arms(&'a [Method]),
}

/// The flags a user of `train` needs; every other setting is a key of the configuration file
/// (docs/OPTIONS.md) and a flag of `genseg experimental train`.
#[derive(Args, Clone)]
pub struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Out-of-domain dataset, scored with the final model
    #[arg(long, help_heading = "Data")]
    ood: Option<PathBuf>,
    /// Folder of images without masks (or a dataset folder, masks ignored) that semi (and
    /// separate/genseg beside their synthetic pairs) learn from; none may be a validation or test image
    #[arg(long, help_heading = "Data")]
    unlabelled: Option<PathBuf>,
    /// File of training case ids (one a line) instead of a seeded split
    #[arg(long, help_heading = "Data")]
    train_ids: Option<PathBuf>,
    /// File of validation case ids (with --train-ids)
    #[arg(long, help_heading = "Data")]
    val_ids: Option<PathBuf>,
    /// The segmentation network (deeplabv3plus: 2-D, sides a multiple of 16; swin-unet: 2-D,
    /// sides the window grid divides)
    #[arg(long, value_enum, default_value_t = defaults().model, help_heading = MODEL)]
    model: ModelKind,
    /// U-Net width (channels of the first level)
    #[arg(long, default_value_t = defaults().width, help_heading = MODEL)]
    width: i64,
    /// U-Net levels
    #[arg(long, default_value_t = defaults().depth, help_heading = MODEL)]
    depth: usize,
    /// Seed of the split, the initial weights and every random draw
    #[arg(long, default_value_t = defaults().seed, help_heading = TRAINING)]
    seed: u64,
    /// Training iterations (the budget; early stopping may end sooner)
    #[arg(long, default_value_t = defaults().iters, help_heading = TRAINING)]
    iters: usize,
    /// Real pairs per step
    #[arg(long, default_value_t = defaults().batch_size, help_heading = TRAINING)]
    batch_size: i64,
    /// Validate (and keep the best model) every k iterations
    #[arg(long, default_value_t = defaults().val_every, help_heading = TRAINING)]
    val_every: usize,
    /// Early stopping: validations without a better validation Dice before the run stops (0 =
    /// off); never while the validation Dice is 0
    #[arg(long, default_value_t = defaults().patience, help_heading = TRAINING)]
    patience: usize,
    /// What augmentation applies to real pairs: none, geometric (GenSeg's set) or nnunet
    /// (nnU-Net v2's defaults)
    #[arg(long = "augment", value_enum, default_value_t = defaults().augment_preset, help_heading = TRAINING)]
    augment_preset: AugmentPreset,
    /// Forward passes in fp32, or bf16 autocast with float32 weights (faster where the CPU or GPU
    /// has bf16; the hypergradient and validation stay float32)
    #[arg(long, value_enum, default_value_t = defaults().precision, help_heading = TRAINING)]
    precision: Precision,
    /// separate/genseg: a pretrained generator folder (from pretrain-generator) instead of
    /// pretraining one
    #[arg(long, help_heading = TRAINING)]
    generator: Option<PathBuf>,
    /// Start from this configuration (JSON: a run folder's config.json, or any subset of its
    /// "config" keys); flags given on the command line override it
    #[arg(long, help_heading = OUTPUT)]
    config: Option<PathBuf>,
}

impl TrainArgs {
    /// The run's configuration. `more`: the flags of `genseg experimental`.
    pub fn config(
        &self,
        split: &SplitArgs,
        more: Option<&ExperimentalArgs>,
        methods: Methods,
        given: &Given,
    ) -> Result<TrainConfig> {
        // Without a configuration file every flag counts, defaults included: they are the
        // library's defaults, so the result is the same.
        let given = if self.config.is_some() { given.clone() } else { Given::all() };
        let mut cfg = match &self.config {
            Some(file) => read_config(file, &self.data.data)?,
            None => TrainConfig::new(DataConfig::new(&self.data.data)),
        };
        self.apply(&mut cfg, split, &given)?;
        if let Some(more) = more {
            more.apply(&mut cfg, &given)?;
        }
        match methods {
            Methods::Flag(method) => {
                given.set("method", &mut cfg.method, &method);
                check(&cfg, &[cfg.method])?;
            }
            Methods::Arms(arms) => check(&cfg, arms)?,
        }
        Ok(cfg)
    }

    fn apply(&self, cfg: &mut TrainConfig, split: &SplitArgs, given: &Given) -> Result<()> {
        cfg.data.data = self.data.data.clone();
        self.data.apply(&mut cfg.data.load, given)?;
        split.apply(&mut cfg.data, given)?;
        let d = &mut cfg.data;
        given.set("ood", &mut d.ood, &self.ood);
        given.set("unlabelled", &mut d.unlabelled, &self.unlabelled);
        given.set("train_ids", &mut d.train_ids, &self.train_ids);
        given.set("val_ids", &mut d.val_ids, &self.val_ids);
        if given.has("model") {
            // A model with its own default learning rate takes it unless one was chosen.
            if cfg.optim.lr == default_optim(cfg.optim.kind, cfg.model).lr {
                cfg.optim.lr = default_optim(cfg.optim.kind, self.model).lr;
            }
            cfg.model = self.model;
        }
        given.set("width", &mut cfg.width, &self.width);
        given.set("depth", &mut cfg.depth, &self.depth);
        given.set("seed", &mut cfg.seed, &self.seed);
        given.set("iters", &mut cfg.iters, &self.iters);
        given.set("batch_size", &mut cfg.batch_size, &self.batch_size);
        given.set("val_every", &mut cfg.val_every, &self.val_every);
        given.set("patience", &mut cfg.patience, &self.patience);
        given.set("augment_preset", &mut cfg.augment_preset, &self.augment_preset);
        given.set("precision", &mut cfg.precision, &self.precision);
        given.set("generator", &mut cfg.generator, &self.generator);
        Ok(())
    }
}

/// A configuration file: a run folder's config.json (`{"config": {...}, "versions": ...}`) or
/// the object under its "config" key, complete or in part; missing keys take the defaults and
/// an unknown key is refused, naming it.
pub fn read_config(file: &Path, data: &Path) -> Result<TrainConfig> {
    let text = std::fs::read_to_string(file).with_context(|| format!("--config {}: cannot read it", file.display()))?;
    let mut given: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("--config {}: not JSON (write it as a run folder's config.json)", file.display()))?;
    if let Some(inner) = given.get("config").cloned() {
        given = inner;
    }
    let mut base = serde_json::to_value(TrainConfig::new(DataConfig::new(data)))?;
    merge(&mut base, &given, "").with_context(|| format!("--config {}", file.display()))?;
    serde_json::from_value(base).with_context(|| {
        format!("--config {}: a value has the wrong type (docs/OPTIONS.md lists every key)", file.display())
    })
}

/// Writes `over` into `base` key by key, refusing keys `base` does not have.
fn merge(base: &mut serde_json::Value, over: &serde_json::Value, path: &str) -> Result<()> {
    let Some(fields) = over.as_object() else {
        *base = over.clone();
        return Ok(());
    };
    let Some(known) = base.as_object_mut() else {
        bail!("{path} is not an object in a configuration");
    };
    for (key, value) in fields {
        let name = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        let Some(slot) = known.get_mut(key) else {
            bail!("unknown key '{name}' (docs/OPTIONS.md lists every key)");
        };
        if slot.is_object() && value.is_object() {
            merge(slot, value, &name)?;
        } else {
            *slot = value.clone();
        }
    }
    Ok(())
}

/// Refuses a configuration that cannot train, naming the flag, whether the value came from a
/// flag or a configuration file.
pub fn check(cfg: &TrainConfig, methods: &[Method]) -> Result<()> {
    for (flag, v) in [("--iters", cfg.iters), ("--val-every", cfg.val_every), ("--width", cfg.width.max(0) as usize)] {
        at_least_one(flag, v)?;
    }
    at_least_one("--batch-size", cfg.batch_size.max(0) as usize)?;
    at_least_one("--arch-every", cfg.arch_every)?;
    at_least_one("--gan-every", cfg.gan_every)?;
    positive("--lr", cfg.optim.lr)?;
    non_negative("--weight-decay", cfg.optim.weight_decay)?;
    positive("--arch-lr", cfg.arch_lr)?;
    positive("--upper-generator-lr", cfg.upper_generator_lr)?;
    positive("--fd-scale", cfg.fd_scale)?;
    non_negative("--lambda", cfg.lambda)?;
    probability("--elastic-p", cfg.elastic_p)?;
    probability("--copy-paste", cfg.copy_paste)?;
    synthetic_share(cfg.synthetic_share)?;
    if let Some(xi) = cfg.xi {
        positive("--xi", xi)?;
    }
    check_gan(&cfg.gan)?;
    check_generator_flags(cfg, methods)?;
    check_unlabelled(cfg, methods)?;
    if let Some(prior) = &cfg.generator_prior {
        read_prior(prior, &cfg.gan)?;
    }
    Ok(())
}

/// Refuses generator settings that cannot train, naming the flag (`train` and
/// `pretrain-generator`).
pub fn check_gan(gan: &GanConfig) -> Result<()> {
    if gan.ngf < 1 || gan.ndf < 1 {
        bail!("--ngf and --ndf must be at least 1");
    }
    positive("--gan-lr", gan.lr)?;
    non_negative("--lambda-l1", gan.lambda_l1)?;
    non_negative("--feature-matching", gan.feature_matching)?;
    non_negative("--mode-seeking", gan.mode_seeking)?;
    gan.check()
}

/// A method that learns from unlabelled images needs some; the semi-supervised settings must
/// make sense.
fn check_unlabelled(cfg: &TrainConfig, methods: &[Method]) -> Result<()> {
    let d = &cfg.data;
    for m in methods {
        m.check_unlabelled(d.unlabelled.is_some() || d.unlabelled_n.is_some_and(|u| u > 0))?;
    }
    if d.unlabelled.is_some() && d.unlabelled_n.is_some() {
        bail!("--unlabelled and --unlabelled-n both give unlabelled images; keep one");
    }
    if let Some(dir) = &d.unlabelled {
        genseg::data::unlabelled::files(dir)?;
    }
    if !(0.5..=1.0).contains(&cfg.semi.confidence) {
        bail!("semi.confidence {}: a pseudo-label's confidence is between 0.5 and 1", cfg.semi.confidence);
    }
    if !(0.0..1.0).contains(&cfg.semi.feature_dropout) {
        bail!(
            "semi.feature_dropout {}: a dropout probability from 0 up to (not including) 1",
            cfg.semi.feature_dropout
        );
    }
    non_negative("semi.unlabelled_batch", cfg.semi.unlabelled_batch as f64)
}

/// `--generator` and `--generator-prior` are refused, not ignored, when none of `methods` trains
/// with a generator: a run that silently dropped them would read as one that used them.
fn check_generator_flags(cfg: &TrainConfig, methods: &[Method]) -> Result<()> {
    if cfg.generator.is_some() && cfg.generator_prior.is_some() {
        bail!("--generator-prior: the pretraining it starts is skipped with --generator; drop one of them");
    }
    let given = [("--generator", &cfg.generator), ("--generator-prior", &cfg.generator_prior)];
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
