//! Everything a run trains (segmenter, optimiser, the method's arm) and one training step of it;
//! built from a run's configuration and splits after its records are written.
use super::config::{Method, TrainConfig};
use super::method::{step_seed, Batches, MethodState, Segmenter, StepLog};
use super::record::{ConfigFile, LoopState, MetricsLine};
use crate::data::split::Splits;
use crate::data::SegDataset;
use crate::eval::evaluate;
use crate::eval::report::summarize;
use crate::infer::ModelSpec;
use crate::learn::checkpoint;
use crate::learn::optim::Optimizer;
use crate::models::segnet::{check_init, init_from, SegNet};
use crate::runtime::all_finite;
use crate::runtime::{load_tensors, load_vars, save_tensors, save_vars, versions, write_atomic, write_json};
use anyhow::{bail, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::path::Path;
use tch::nn::VarStore;
use tch::Device;

/// Everything a run trains and the random stream it draws from.
pub struct Trainer<'a> {
    pub cfg: &'a TrainConfig,
    pub seg: Segmenter,
    seg_opt: Optimizer,
    pub arm: MethodState,
    pub(super) batches: Batches,
    /// Ids of the cases that reached the segmentation optimiser.
    pub seen: BTreeSet<String>,
}

impl<'a> Trainer<'a> {
    /// Writes the run's records (config, split, model spec), then builds the networks.
    /// `generator_pairs`: what a generator pretrained here learns from
    /// ([`super::segment::generator_pairs`]).
    pub(super) fn new(
        cfg: &'a TrainConfig,
        splits: &Splits,
        out: &Path,
        device: Device,
        generator_pairs: &SegDataset,
    ) -> Result<Trainer<'a>> {
        let net_cfg = cfg.net(&splits.train);
        net_cfg.validate(&splits.train.shape)?;
        cfg.check_network(&net_cfg)?;
        cfg.precision.check(device)?;
        let init = cfg.init.as_ref().map(|f| load_tensors(f).map(|t| (f, t))).transpose()?;
        if let Some((file, tensors)) = &init {
            check_init(&net_cfg, tensors, file)?;
        }
        if cfg.synthetic_photometric && splits.train.dims() != 2 {
            bail!("--synthetic-photometric is the reference's chain for 2-D images; leave it out for volumes");
        }
        if let Some(a) = cfg.mirror_axes.iter().flatten().find(|&&a| a >= splits.train.dims()) {
            bail!(
                "--mirror-axes {a}: the data has {} spatial axes (0..{})",
                splits.train.dims(),
                splits.train.dims() - 1
            );
        }
        MethodState::check(cfg, splits)?;
        refuse_empty_validation(cfg, &splits.val)?;
        write_json(&out.join("config.json"), &ConfigFile { config: cfg, versions: versions(device) })?;
        write_json(&out.join("split.json"), &splits.split)?;
        let spec = ModelSpec {
            net: net_cfg.clone(),
            size: cfg.data.load.size,
            channels: splits.train.channels,
            labels: splits.train.labels.clone(),
            volume_shape: (splits.train.dims() == 3).then_some(cfg.data.load.volume.shape),
        };
        write_json(&out.join("model.json"), &spec)?;
        let arm = MethodState::build(cfg, splits, out, device, generator_pairs)?;
        tch::manual_seed(cfg.seed as i64);
        let vs = VarStore::new(device);
        let net = SegNet::new(&vs.root(), &net_cfg);
        if let Some((file, tensors)) = &init {
            let n = init_from(&vs, tensors, file)?;
            tracing::info!("{n} tensors of the segmenter initialised from {}", file.display());
        }
        let seg_opt = Optimizer::new(cfg.optim.clone(), vs.trainable_variables());
        let batches = Batches { rng: ChaCha8Rng::seed_from_u64(cfg.seed), size: cfg.batch_size, device };
        Ok(Trainer { cfg, seg: Segmenter { vs, net }, seg_opt, arm, batches, seen: BTreeSet::new() })
    }

    pub(super) fn step(&mut self, iter: usize, splits: &Splits) -> StepLog {
        tch::manual_seed(step_seed(self.cfg.seed, iter));
        self.seg_opt.set_lr(self.cfg.schedule.lr(self.cfg.optim.lr, iter, self.cfg.iters));
        let (idx, x, m) = self.batches.draw(&splits.train);
        let (grads, log) = self.arm.step(self.cfg, &self.seg, iter, (x, m), &mut self.batches, splits);
        self.seg_opt.step(&grads);
        self.seen.extend(idx.iter().map(|&i| splits.train.ids[i].clone()));
        log
    }

    /// Mean validation Dice and IoU (NaN without validation cases).
    pub(super) fn validate(&self, splits: &Splits, device: Device) -> (f64, f64) {
        if splits.val.is_empty() {
            return (f64::NAN, f64::NAN);
        }
        let s = summarize(&evaluate(&self.seg.net, &splits.val, device, self.cfg.empty_policy).0);
        (s.dice.mean, s.iou.mean)
    }

    /// Which networks hold a non-finite weight or buffer, if any.
    pub(super) fn non_finite_part(&self) -> Option<&'static str> {
        if !all_finite(&self.seg.vs) {
            return Some("the segmenter's weights");
        }
        let gan = self.arm.gan()?;
        if !all_finite(&gan.arch_vs) {
            return Some("the architecture logits (alpha)");
        }
        (!all_finite(&gan.g_vs) || !all_finite(&gan.d_vs)).then_some("the GAN's weights")
    }

    pub(super) fn metrics_line(
        &self,
        state: &LoopState,
        log: &StepLog,
        loss: f64,
        (val_dice, val_iou): (f64, f64),
    ) -> MetricsLine {
        MetricsLine {
            iter: state.iter,
            loss,
            val_dice,
            val_iou,
            d_loss: log.gan.map(|g| g.d),
            g_l1: log.gan.map(|g| g.l1),
            hypergrad_norm: log.hypergrad_norm,
            confident: log.confident,
            alpha: if self.cfg.method == Method::Genseg { self.arm.alpha_softmax() } else { None },
            seconds: state.seconds,
        }
    }

    pub(super) fn save_checkpoint(&self, dir: &Path, state: &LoopState) -> Result<()> {
        checkpoint::save_dir(dir, |d| {
            save_vars(&self.seg.vs, &d.join("model.safetensors"))?;
            save_tensors(&d.join("seg_optim.safetensors"), &self.seg_opt.state())?;
            self.arm.save(d)?;
            write_json(&d.join("state.json"), state)
        })
    }

    /// The loop state of the newest checkpoint (networks, optimisers and random stream restored),
    /// or a fresh start. Metrics lines logged after that checkpoint (a kill between log and
    /// checkpoint) are dropped, to be logged again.
    pub(super) fn resume(&mut self, ckpt: &Path, out: &Path) -> Result<LoopState> {
        let metrics = out.join("metrics.jsonl");
        let Some(dir) = checkpoint::find_dir(ckpt) else {
            if metrics.exists() {
                std::fs::remove_file(&metrics)?;
            }
            return Ok(LoopState::start());
        };
        load_vars(&mut self.seg.vs, &dir.join("model.safetensors"))?;
        self.seg_opt.load_state(&load_tensors(&dir.join("seg_optim.safetensors"))?)?;
        self.arm.load(&dir)?;
        let state: LoopState = serde_json::from_str(&std::fs::read_to_string(dir.join("state.json"))?)?;
        self.batches.rng.set_word_pos(state.rng_word_pos);
        self.seen = state.seg_optimizer_ids.clone();
        tracing::info!("resuming {} at iteration {}", out.display(), state.iter);
        let text = std::fs::read_to_string(&metrics).unwrap_or_default();
        let kept: String = text
            .lines()
            .filter(|l| serde_json::from_str::<MetricsLine>(l).map(|m| m.iter <= state.iter).unwrap_or(false))
            .map(|l| format!("{l}\n"))
            .collect();
        write_atomic(&metrics, kept.as_bytes())?;
        Ok(state)
    }
}

/// A validation set whose every mask is empty (at `--size`: small lesions vanish) scores no
/// Dice, so no model could be chosen: refused before the run writes anything, naming the cases.
fn refuse_empty_validation(cfg: &TrainConfig, val: &crate::data::SegDataset) -> Result<()> {
    if val.is_empty() {
        return Ok(());
    }
    let per_case = val.masks.flatten(1, -1).sum_dim_intlist(1, false, tch::Kind::Float);
    let foreground = Vec::<f32>::try_from(per_case).unwrap_or_default();
    if foreground.iter().any(|&f| f > 0.0) {
        return Ok(());
    }
    let shown: Vec<&str> = val.ids.iter().take(5).map(String::as_str).collect();
    let more = if val.ids.len() > 5 { format!(" and {} more", val.ids.len() - 5) } else { String::new() };
    anyhow::bail!(
        "every validation case's mask is empty at --size {} ({}{more}), so no validation Dice can choose a model; \
         give validation cases with a lesion (--val-ids, or another --seed), or a larger --size",
        cfg.data.load.size,
        shown.join(", ")
    )
}
