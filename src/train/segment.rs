//! The segmentation training loop, one code path for all four methods:
//! - `plain`: real pairs only;
//! - `augment`: classic augmentation of real pairs;
//! - `separate`: real + lambda x synthetic pairs from a frozen, pretrained generator;
//! - `genseg`: end to end: GAN step, segmentation step on real + lambda x synthetic with a
//!   differentiable synthetic path, and an architecture (alpha) step on the validation loss
//!   through the segmentation update (see [`super::hypergrad`]).
//!
//! A run folder holds config.json, split.json, metrics.jsonl, the best model, curves.png,
//! summary.json with test and out-of-domain metrics, per-case CSVs and overlay pictures. A run
//! killed midway resumes from its checkpoint.
use super::checkpoint::{self, load_tensors, load_vars, save_tensors, save_vars};
use super::gan::{pretrain, Gan, GanConfig, GanLosses, GanSpec, PretrainConfig};
use super::hypergrad::{HypergradMode, Lower, TrainBatch};
use super::loss::{segmentation_loss, RegionLoss};
use super::optim::{gradients, OptimConfig, Optimizer};
use crate::data::augment::{augment_masks, augment_pairs, AugmentConfig};
use crate::data::dataset::{self, LoadOptions, SegDataset};
use crate::data::split::{self, Split};
use crate::data::volume::VolumeOptions;
use crate::eval::metrics::{batch_metrics, CaseMetrics, EmptyPolicy, MetricOptions};
use crate::eval::report::{summarize, write_cases_csv, Summary};
use crate::models::unet::{UNet, UNetConfig, Upsampling};
use crate::runtime::{append_jsonl, ensure_writable_dir, versions, write_json, Versions};
use anyhow::{bail, Context, Result};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Plain,
    Augment,
    Separate,
    Genseg,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Plain => "plain",
            Method::Augment => "augment",
            Method::Separate => "separate",
            Method::Genseg => "genseg",
        }
    }

    pub fn uses_generator(self) -> bool {
        matches!(self, Method::Separate | Method::Genseg)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataConfig {
    pub data: PathBuf,
    pub ood: Option<PathBuf>,
    pub size: u32,
    pub channels: Option<usize>,
    pub mask_suffixes: Vec<String>,
    pub binarize: bool,
    pub train_n: usize,
    pub val_n: usize,
    pub train_ids: Option<PathBuf>,
    pub val_ids: Option<PathBuf>,
    /// Shape and labels of NIfTI volume sets (unused for 2-D images).
    #[serde(default)]
    pub volume: VolumeOptions,
}

impl DataConfig {
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            size: self.size,
            channels: self.channels,
            mask_suffixes: self.mask_suffixes.clone(),
            binarize: self.binarize,
            volume: VolumeOptions { binarize: self.binarize, ..self.volume.clone() },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    pub data: DataConfig,
    pub method: Method,
    pub seed: u64,
    pub width: i64,
    pub depth: usize,
    pub upsampling: Upsampling,
    pub region_loss: RegionLoss,
    pub optim: OptimConfig,
    pub iters: usize,
    pub batch_size: i64,
    pub val_every: usize,
    /// Weight of the synthetic-pair loss.
    pub lambda: f64,
    pub augment: AugmentConfig,
    /// Brightness/contrast jitter of `augment`.
    pub jitter: f64,
    pub gan: GanConfig,
    /// Generator pretraining steps when no pretrained generator is given.
    pub pretrain_iters: usize,
    /// A folder written by `pretrain-generator` (skips pretraining).
    pub generator: Option<PathBuf>,
    pub arch_lr: f64,
    /// Architecture step every k iterations.
    pub arch_every: usize,
    /// Inner step size of the unrolled update; `None` = the segmenter's learning rate.
    pub xi: Option<f64>,
    /// Finite-difference perturbation norm of the hypergradient (eps = fd_scale / |v|).
    pub fd_scale: f64,
    /// How the mixed second derivative of the hypergradient is taken.
    #[serde(default)]
    pub hypergrad: HypergradMode,
    pub empty_policy: EmptyPolicy,
}

/// What predict needs to rebuild the model and bring inputs to its shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelSpec {
    pub unet: UNetConfig,
    pub size: u32,
    pub channels: usize,
    /// Label value of each output channel.
    #[serde(default = "one_label")]
    pub labels: Vec<u32>,
    /// Set for models of 3-D volumes.
    #[serde(default)]
    pub volume_shape: Option<[usize; 3]>,
}

fn one_label() -> Vec<u32> {
    vec![1]
}

/// Test (and out-of-domain) metrics of one label of a multi-label model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabelSummary {
    pub label: u32,
    pub test: Summary,
    pub ood: Option<Summary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub method: Method,
    pub seed: u64,
    pub train_n: usize,
    pub best_iter: usize,
    #[serde(with = "crate::runtime::json_f64")]
    pub best_val_dice: f64,
    /// Over every (case, label) pair.
    pub test: Summary,
    pub ood: Option<Summary>,
    /// Per label, when the model segments several.
    #[serde(default)]
    pub labels: Vec<LabelSummary>,
    /// softmax(alpha) rows at the end (generator methods).
    pub alpha: Option<Vec<Vec<f64>>>,
    pub seconds: f64,
    pub seconds_per_iter: f64,
}

#[derive(Serialize, Deserialize)]
struct LoopState {
    iter: usize,
    #[serde(with = "crate::runtime::json_f64")]
    best_val_dice: f64,
    best_iter: usize,
    rng_word_pos: u128,
    seconds: f64,
    seg_optimizer_ids: BTreeSet<String>,
}

/// Which cases reached which optimiser: the audit trail for "validation never trains".
#[derive(Debug, Serialize, Deserialize)]
pub struct DataUsage {
    pub seg_optimizer_ids: BTreeSet<String>,
    pub generator_ids: Vec<String>,
    pub val_ids: Vec<String>,
    pub test_ids: Vec<String>,
}

#[derive(Serialize)]
struct ConfigFile<'a> {
    config: &'a TrainConfig,
    versions: Versions,
}

pub struct Splits {
    pub train: SegDataset,
    pub val: SegDataset,
    pub test: SegDataset,
    pub ood: Option<SegDataset>,
    pub split: Split,
}

pub fn load_splits(cfg: &DataConfig, seed: u64) -> Result<Splits> {
    let opts = cfg.load_options();
    let all = dataset::load(&cfg.data, &opts)?;
    let split = match &cfg.train_ids {
        Some(f) => split::explicit(&all.ids, f, cfg.val_ids.as_deref())?,
        None => split::seeded(&all.ids, cfg.train_n, cfg.val_n, seed)?,
    };
    let ood = match &cfg.ood {
        Some(dir) => Some(dataset::load(dir, &LoadOptions { channels: Some(all.channels), ..opts.clone() })?),
        None => None,
    };
    Ok(Splits { train: all.select(&split.train)?, val: all.select(&split.val)?, test: all.select(&split.test)?, ood, split })
}

/// The segmenter a run trains: input channels, one output per label and the spatial axes come
/// from the data, the rest from the configuration.
pub fn unet_config(cfg: &TrainConfig, data: &SegDataset) -> UNetConfig {
    UNetConfig {
        in_channels: data.channels as i64,
        out_channels: data.labels.len() as i64,
        width: cfg.width,
        depth: cfg.depth,
        upsampling: cfg.upsampling,
        dims: data.dims(),
    }
}

/// Probabilities in eval mode, in batches, on `device`; returns CPU tensors.
pub fn predict_probs(seg: &UNet, images: &Tensor, device: Device) -> Tensor {
    tch::no_grad(|| {
        let n = images.size()[0];
        let chunks: Vec<Tensor> = (0..n)
            .step_by(8)
            .map(|s| seg.forward_t(&images.narrow(0, s, (n - s).min(8)).to_device(device), false).sigmoid().to_device(Device::Cpu))
            .collect();
        Tensor::cat(&chunks, 0)
    })
}

pub fn evaluate(seg: &UNet, data: &SegDataset, device: Device, policy: EmptyPolicy) -> (Vec<CaseMetrics>, Tensor) {
    let probs = predict_probs(seg, &data.images, device);
    (batch_metrics(&data.ids, &probs, &data.masks, &data.labels, &MetricOptions::pixels(policy, data.dims())), probs)
}

/// Cases of one label out of multi-label metrics (ids `{case}/{label}`).
fn label_cases(cases: &[CaseMetrics], label: u32) -> Vec<CaseMetrics> {
    let suffix = format!("/{label}");
    cases.iter().filter(|c| c.id.ends_with(&suffix)).cloned().collect()
}

struct Trainer<'a> {
    cfg: &'a TrainConfig,
    device: Device,
    seg_vs: VarStore,
    seg: UNet,
    seg_opt: Optimizer,
    gan: Option<Gan>,
    arch_opt: Option<Optimizer>,
    rng: ChaCha8Rng,
    seen: BTreeSet<String>,
}

struct StepLog {
    loss: f64,
    gan: Option<GanLosses>,
    hypergrad_norm: Option<f64>,
}

impl Trainer<'_> {
    fn batch(&mut self, data: &SegDataset) -> (Vec<usize>, Tensor, Tensor) {
        let idx: Vec<usize> = (0..self.cfg.batch_size).map(|_| self.rng.gen_range(0..data.len())).collect();
        let t = Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>());
        (idx, data.images.index_select(0, &t).to_device(self.device), data.masks.index_select(0, &t).to_device(self.device))
    }

    fn step(&mut self, iter: usize, splits: &Splits) -> StepLog {
        let cfg = self.cfg;
        let seed = (cfg.seed as i64).wrapping_mul(1_000_003) ^ iter as i64;
        tch::manual_seed(seed);
        let (idx, x, m) = self.batch(&splits.train);
        let params = self.seg_vs.trainable_variables();
        let mut log = StepLog { loss: 0.0, gan: None, hypergrad_norm: None };
        let grads = match cfg.method {
            Method::Plain | Method::Augment => {
                let (x, m) = if cfg.method == Method::Augment { augment_pairs(&x, &m, &cfg.augment, cfg.jitter, &mut self.rng) } else { (x, m) };
                let loss = segmentation_loss(&self.seg.forward_t(&x, true), &m, cfg.region_loss);
                log.loss = loss.double_value(&[]);
                gradients(&loss, &params)
            }
            Method::Separate | Method::Genseg => {
                if cfg.method == Method::Genseg {
                    let gan = self.gan.as_mut().expect("generator methods build a GAN");
                    log.gan = Some(gan.step(&x, &m));
                }
                let batch = TrainBatch { synthetic_masks: augment_masks(&m, &cfg.augment, &mut self.rng), images: x, masks: m, seed };
                let val_batch = (cfg.method == Method::Genseg && iter % cfg.arch_every == 0).then(|| self.batch(&splits.val));
                let gan = self.gan.as_ref().expect("generator methods build a GAN");
                let lower = Lower { seg: &self.seg, seg_vs: &self.seg_vs, gan, region: cfg.region_loss, lambda: cfg.lambda };
                let (loss, synthetic) = if cfg.method == Method::Separate {
                    // Frozen generator: synthetic images are plain inputs.
                    let syn = tch::no_grad(|| lower.synthesize(&batch));
                    (lower.train_loss(&batch, &syn), None)
                } else {
                    let syn = lower.synthesize(&batch);
                    (lower.train_loss(&batch, &syn), Some(syn))
                };
                log.loss = loss.double_value(&[]);
                let grads = gradients(&loss, &params);
                if let (Some((_, vx, vm)), Some(syn)) = (val_batch, synthetic) {
                    let xi = cfg.xi.unwrap_or(cfg.optim.lr);
                    let g_alpha = lower.hypergradient(&batch, &syn, (&vx, &vm), &grads, xi, cfg.hypergrad, cfg.fd_scale);
                    log.hypergrad_norm = Some(g_alpha.norm().double_value(&[]));
                    self.arch_opt.as_mut().expect("genseg has an architecture optimiser").step(&[g_alpha]);
                }
                grads
            }
        };
        self.seg_opt.step(&grads);
        self.seen.extend(idx.iter().map(|&i| splits.train.ids[i].clone()));
        log
    }

    fn alpha_softmax(&self) -> Option<Vec<Vec<f64>>> {
        self.gan.as_ref().map(|g| {
            let s = g.g.alpha.softmax(1, Kind::Double).to_device(Device::Cpu);
            let rows = s.size()[0];
            (0..rows).map(|r| Vec::<f64>::try_from(s.get(r)).unwrap()).collect()
        })
    }

    fn save_checkpoint(&self, dir: &Path, state: &LoopState) -> Result<()> {
        checkpoint::save_dir(dir, |d| {
            save_vars(&self.seg_vs, &d.join("model.safetensors"))?;
            save_tensors(&d.join("seg_optim.ot"), &self.seg_opt.state())?;
            if let Some(gan) = &self.gan {
                gan.save(d)?;
                gan.save_optimizers(d)?;
            }
            if let Some(a) = &self.arch_opt {
                save_tensors(&d.join("arch_optim.ot"), &a.state())?;
            }
            write_json(&d.join("state.json"), state)
        })
    }

    fn load_checkpoint(&mut self, dir: &Path) -> Result<LoopState> {
        load_vars(&mut self.seg_vs, &dir.join("model.safetensors"))?;
        self.seg_opt.load_state(&load_tensors(&dir.join("seg_optim.ot"))?)?;
        if let Some(gan) = self.gan.as_mut() {
            gan.load_weights(dir)?;
            gan.load_optimizers(dir)?;
        }
        if let Some(a) = self.arch_opt.as_mut() {
            a.load_state(&load_tensors(&dir.join("arch_optim.ot"))?)?;
        }
        let state: LoopState = serde_json::from_str(&std::fs::read_to_string(dir.join("state.json"))?)?;
        self.rng.set_word_pos(state.rng_word_pos);
        self.seen = state.seg_optimizer_ids.clone();
        Ok(state)
    }
}

#[derive(Serialize, Deserialize)]
struct MetricsLine {
    iter: usize,
    #[serde(with = "crate::runtime::json_f64")]
    loss: f64,
    #[serde(with = "crate::runtime::json_f64")]
    val_dice: f64,
    #[serde(with = "crate::runtime::json_f64")]
    val_iou: f64,
    d_loss: Option<f64>,
    g_l1: Option<f64>,
    hypergrad_norm: Option<f64>,
    alpha: Option<Vec<Vec<f64>>>,
    seconds: f64,
}

/// Trains one model into `out` (resuming if a checkpoint of the same config is there) and
/// returns its summary. A finished run is returned as is.
pub fn run(cfg: &TrainConfig, out: &Path, device: Device) -> Result<RunSummary> {
    ensure_writable_dir(out)?;
    let config_path = out.join("config.json");
    if config_path.is_file() {
        let text = std::fs::read_to_string(&config_path)?;
        let previous: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is corrupt", config_path.display()))?;
        // Compared as structs, so options added later (serde defaults) keep old runs resumable.
        let same = serde_json::from_value::<TrainConfig>(previous["config"].clone()).map(|p| p == *cfg).unwrap_or(false);
        if !same {
            bail!("{} holds a run with a different configuration; choose another --out or delete that folder", out.display());
        }
        if let Ok(text) = std::fs::read_to_string(out.join("summary.json")) {
            tracing::info!("{} already finished; delete summary.json to rerun", out.display());
            return Ok(serde_json::from_str(&text)?);
        }
    }
    if cfg.method == Method::Genseg && cfg.data.val_n == 0 && cfg.data.val_ids.is_none() {
        bail!("--method genseg needs validation cases for the architecture step; set --val-n");
    }
    let splits = load_splits(&cfg.data, cfg.seed)?;
    let unet_cfg = unet_config(cfg, &splits.train);
    unet_cfg.validate(&splits.train.shape)?;
    write_json(&config_path, &ConfigFile { config: cfg, versions: versions(device) })?;
    write_json(&out.join("split.json"), &splits.split)?;
    let spec = ModelSpec {
        unet: unet_cfg.clone(),
        size: cfg.data.size,
        channels: splits.train.channels,
        labels: splits.train.labels.clone(),
        volume_shape: (splits.train.dims() == 3).then_some(cfg.data.volume.shape),
    };
    write_json(&out.join("model.json"), &spec)?;

    let gan = if cfg.method.uses_generator() {
        let gan_spec = GanSpec::for_data(cfg.gan.clone(), &splits.train);
        Some(match &cfg.generator {
            Some(dir) => {
                let gan = Gan::load(dir, device)?;
                let (a, b) = (&gan.spec, &gan_spec);
                if (&a.shape, a.channels, a.mask_channels) != (&b.shape, b.channels, b.mask_channels) {
                    bail!(
                        "generator in {} was trained for shape {:?}, {} channels, {} labels; this run has {:?}, {}, {}",
                        dir.display(), a.shape, a.channels, a.mask_channels, b.shape, b.channels, b.mask_channels
                    );
                }
                gan
            }
            None => {
                let pcfg = PretrainConfig { iters: cfg.pretrain_iters, batch_size: cfg.batch_size, sample_every: (cfg.pretrain_iters / 10).max(1), seed: cfg.seed };
                pretrain(&gan_spec, &pcfg, &splits.train, &out.join("generator"), device)?
            }
        })
    } else {
        None
    };
    tch::manual_seed(cfg.seed as i64);
    let seg_vs = VarStore::new(device);
    let seg = UNet::new(&seg_vs.root(), &unet_cfg);
    let seg_opt = Optimizer::new(cfg.optim.clone(), seg_vs.trainable_variables());
    let arch_opt = match (&gan, cfg.method) {
        (Some(g), Method::Genseg) => Some(Optimizer::new(OptimConfig::adam(cfg.arch_lr, 0.5), vec![g.g.alpha.shallow_clone()])),
        _ => None,
    };
    let mut t = Trainer { cfg, device, seg_vs, seg, seg_opt, gan, arch_opt, rng: ChaCha8Rng::seed_from_u64(cfg.seed), seen: BTreeSet::new() };

    let ckpt = out.join("checkpoint");
    let mut state = LoopState { iter: 0, best_val_dice: f64::NEG_INFINITY, best_iter: 0, rng_word_pos: 0, seconds: 0.0, seg_optimizer_ids: BTreeSet::new() };
    if let Some(dir) = checkpoint::find_dir(&ckpt) {
        state = t.load_checkpoint(&dir)?;
        tracing::info!("resuming {} at iteration {}", out.display(), state.iter);
        // Lines logged after the checkpoint (kill between log and checkpoint) are replayed.
        let metrics = out.join("metrics.jsonl");
        let text = std::fs::read_to_string(&metrics).unwrap_or_default();
        let kept: String = text
            .lines()
            .filter(|l| serde_json::from_str::<MetricsLine>(l).map(|m| m.iter <= state.iter).unwrap_or(false))
            .map(|l| format!("{l}\n"))
            .collect();
        crate::runtime::write_atomic(&metrics, kept.as_bytes())?;
    } else if out.join("metrics.jsonl").exists() {
        std::fs::remove_file(out.join("metrics.jsonl"))?;
    }
    let best_path = out.join("model.safetensors");
    let bar = crate::viz::progress(cfg.iters as u64, cfg.method.name());
    bar.set_position(state.iter as u64);
    let started = std::time::Instant::now();
    let seconds_before = state.seconds;
    let mut loss_acc = (0.0, 0usize);
    for iter in state.iter..cfg.iters {
        let log = t.step(iter, &splits);
        loss_acc = (loss_acc.0 + log.loss, loss_acc.1 + 1);
        bar.inc(1);
        let done = iter + 1;
        if done % cfg.val_every == 0 || done == cfg.iters {
            let (val_dice, val_iou) = if splits.val.is_empty() {
                (f64::NAN, f64::NAN)
            } else {
                let s = summarize(&evaluate(&t.seg, &splits.val, device, cfg.empty_policy).0);
                (s.dice.mean, s.iou.mean)
            };
            // Without validation cases the last model is kept.
            if val_dice > state.best_val_dice || splits.val.is_empty() {
                state.best_val_dice = val_dice;
                state.best_iter = done;
                save_vars(&t.seg_vs, &best_path)?;
            }
            state.iter = done;
            state.seconds = seconds_before + started.elapsed().as_secs_f64();
            state.rng_word_pos = t.rng.get_word_pos();
            state.seg_optimizer_ids = t.seen.clone();
            append_jsonl(
                &out.join("metrics.jsonl"),
                &MetricsLine {
                    iter: done,
                    loss: loss_acc.0 / loss_acc.1.max(1) as f64,
                    val_dice,
                    val_iou,
                    d_loss: log.gan.map(|g| g.d),
                    g_l1: log.gan.map(|g| g.l1),
                    hypergrad_norm: log.hypergrad_norm,
                    alpha: if cfg.method == Method::Genseg { t.alpha_softmax() } else { None },
                    seconds: state.seconds,
                },
            )?;
            loss_acc = (0.0, 0);
            t.save_checkpoint(&ckpt, &state)?;
            bar.set_message(format!("loss {:.3} val Dice {:.3} (best {:.3})", log.loss, val_dice, state.best_val_dice));
        }
    }
    bar.finish();
    finish(cfg, out, device, t, &splits, &state)
}

fn finish(cfg: &TrainConfig, out: &Path, device: Device, mut t: Trainer, splits: &Splits, state: &LoopState) -> Result<RunSummary> {
    let alpha = t.alpha_softmax();
    if let Some(gan) = &t.gan {
        if cfg.method == Method::Genseg {
            gan.save(&ensure_dir(&out.join("generator_final"))?)?;
        }
        let shown: Vec<String> = splits.train.ids.iter().take(4).cloned().collect();
        let shown = splits.train.select(&shown)?;
        // Rows: mask | real | synthetic from the real mask | augmented mask | its synthetic image.
        let aug = augment_masks(&shown.masks, &cfg.augment, &mut ChaCha8Rng::seed_from_u64(cfg.seed));
        let (fake, fake_aug) = tch::no_grad(|| (gan.synthesize(&shown.masks.to_device(device)), gan.synthesize(&aug.to_device(device))));
        use crate::viz::{mask_picture, picture};
        let rows: Vec<Vec<Tensor>> = (0..shown.len() as i64)
            .map(|i| {
                vec![
                    mask_picture(&shown.masks.get(i)),
                    picture(&shown.images.get(i)),
                    picture(&fake.get(i).to_device(Device::Cpu)),
                    mask_picture(&aug.get(i)),
                    picture(&fake_aug.get(i).to_device(Device::Cpu)),
                ]
            })
            .collect();
        crate::viz::save_png(&out.join("samples.png"), &crate::viz::tensor_grid(&rows))?;
    }
    load_vars(&mut t.seg_vs, &out.join("model.safetensors"))?;
    let (test_cases, test_probs) = evaluate(&t.seg, &splits.test, device, cfg.empty_policy);
    write_cases_csv(&out.join("test_cases.csv"), &test_cases)?;
    save_overlays(&out.join("overlays_test.png"), &splits.test, &test_probs)?;
    let ood_cases = match &splits.ood {
        Some(ood) => {
            let (cases, probs) = evaluate(&t.seg, ood, device, cfg.empty_policy);
            write_cases_csv(&out.join("ood_cases.csv"), &cases)?;
            save_overlays(&out.join("overlays_ood.png"), ood, &probs)?;
            Some(cases)
        }
        None => None,
    };
    let labels = if splits.test.labels.len() > 1 {
        splits
            .test
            .labels
            .iter()
            .map(|&label| LabelSummary {
                label,
                test: summarize(&label_cases(&test_cases, label)),
                ood: ood_cases.as_ref().map(|c| summarize(&label_cases(c, label))),
            })
            .collect()
    } else {
        vec![]
    };
    let ood = ood_cases.as_ref().map(|c| summarize(c));
    write_json(
        &out.join("data_usage.json"),
        &DataUsage {
            seg_optimizer_ids: t.seen.clone(),
            generator_ids: if cfg.method.uses_generator() { splits.split.train.clone() } else { vec![] },
            val_ids: splits.split.val.clone(),
            test_ids: splits.split.test.clone(),
        },
    )?;
    plot_curves(out)?;
    let summary = RunSummary {
        method: cfg.method,
        seed: cfg.seed,
        train_n: splits.train.len(),
        best_iter: state.best_iter,
        best_val_dice: state.best_val_dice,
        test: summarize(&test_cases),
        ood,
        labels,
        alpha,
        seconds: state.seconds,
        seconds_per_iter: state.seconds / cfg.iters.max(1) as f64,
    };
    write_json(&out.join("summary.json"), &summary)?;
    std::fs::remove_dir_all(out.join("checkpoint")).ok();
    Ok(summary)
}

fn ensure_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir.to_path_buf())
}

/// Up to 8 cases: image | reference outline on prediction overlay (volumes: middle slices,
/// any label).
fn save_overlays(path: &Path, data: &SegDataset, probs: &Tensor) -> Result<()> {
    use crate::viz::{foreground, picture, tensor_to_rgb};
    let rows: Vec<Vec<image::RgbImage>> = (0..data.len().min(8) as i64)
        .map(|i| {
            let img = tensor_to_rgb(&picture(&data.images.get(i)));
            let pred = foreground(&probs.get(i));
            let reference = foreground(&data.masks.get(i));
            vec![img.clone(), crate::viz::overlay(&img, &pred, Some(&reference))]
        })
        .collect();
    crate::viz::save_png(path, &crate::viz::image_grid(&rows))
}

/// curves.png: training loss and validation Dice against iteration.
pub fn plot_curves(out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl"))?;
    let lines: Vec<MetricsLine> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let series = |label: &str, f: fn(&MetricsLine) -> f64| crate::viz::Series {
        label: label.into(),
        points: lines.iter().map(|l| (l.iter as f64, f(l))).filter(|p| p.1.is_finite()).collect(),
        errors: vec![],
    };
    crate::viz::line_chart(
        &out.join("curves.png"),
        "training loss and validation Dice",
        "iteration",
        "value",
        &[series("train loss", |l| l.loss), series("val Dice", |l| l.val_dice)],
        false,
    )
}
