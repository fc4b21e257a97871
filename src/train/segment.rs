//! The segmentation training loop, one for all four methods ([`super::method::Arm`] holds what
//! differs): prepare the run folder, resume, step, validate and checkpoint, finish.
//!
//! A run folder holds config.json, split.json, model.json, metrics.jsonl, the best model,
//! curves.png, summary.json with test and out-of-domain metrics, per-case CSVs and overlay
//! pictures. A run killed midway resumes from its checkpoint.
use super::checkpoint;
use super::config::{Method, TrainConfig};
use super::method::{step_seed, Arm, Batches, Segmenter, StepLog};
use super::optim::Optimizer;
use super::record::{ConfigFile, LoopState, MetricsLine, RunSummary};
use super::report;
use crate::data::split::{load_splits, Splits};
use crate::eval::evaluate;
use crate::eval::report::summarize;
use crate::infer::ModelSpec;
use crate::models::segnet::{check_init, init_from, SegNet};
use crate::runtime::{all_finite, lock_folder};
use crate::runtime::{
    append_jsonl, ensure_writable_dir, load_tensors, load_vars, save_tensors, save_vars, versions, write_atomic,
    write_json,
};
use anyhow::{bail, Context, Result};
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
    pub arm: Arm,
    batches: Batches,
    /// Ids of the cases that reached the segmentation optimiser.
    pub seen: BTreeSet<String>,
}

/// Trains one model into `out` (resuming if a checkpoint of the same config is there) and
/// returns its summary. A finished run is returned as is.
pub fn run(cfg: &TrainConfig, out: &Path, device: Device) -> Result<RunSummary> {
    run_on(cfg, out, device, || load_splits(&cfg.data, cfg.seed))
}

/// [`run`] on the splits `load` gives instead of `cfg.data`'s (synth-eval trains on synthetic
/// pairs and validates and tests on real ones); `load` runs only when there is training to do.
pub fn run_on(
    cfg: &TrainConfig,
    out: &Path,
    device: Device,
    load: impl FnOnce() -> Result<Splits>,
) -> Result<RunSummary> {
    ensure_writable_dir(out)?;
    let _lock = lock_folder(out)?;
    if let Some(finished) = open_run_folder(cfg, out)? {
        return Ok(finished);
    }
    let splits = load()?;
    let mut t = Trainer::new(cfg, &splits, out, device)?;
    let ckpt = out.join("checkpoint");
    let mut state = t.resume(&ckpt, out)?;
    let bar = crate::viz::progress(cfg.iters as u64, cfg.method.name());
    bar.set_position(state.iter as u64);
    let (started, seconds_before) = (std::time::Instant::now(), state.seconds);
    let mut loss_acc = (0.0, 0usize);
    let end = if state.stopped { state.iter } else { cfg.iters };
    for iter in state.iter..end {
        let log = t.step(iter, &splits);
        stop_if_diverged(&log, iter + 1, &state)?;
        loss_acc = (loss_acc.0 + log.loss, loss_acc.1 + 1);
        bar.inc(1);
        let done = iter + 1;
        if done.is_multiple_of(cfg.val_every) || done == cfg.iters {
            if let Some(part) = t.non_finite_part() {
                bail!("{}", diverged(done, &format!("{part} are not finite"), &state));
            }
            let (val_dice, val_iou) = t.validate(&splits, device);
            // Without validation cases the last model is kept.
            if val_dice > state.best_val_dice || splits.val.is_empty() {
                (state.best_val_dice, state.best_iter) = (val_dice, done);
                save_vars(&t.seg.vs, &out.join("model.safetensors"))?;
            }
            state.iter = done;
            state.seconds = seconds_before + started.elapsed().as_secs_f64();
            state.rng_word_pos = t.batches.rng.get_word_pos();
            state.seg_optimizer_ids = t.seen.clone();
            let mean_loss = loss_acc.0 / loss_acc.1.max(1) as f64;
            append_jsonl(&out.join("metrics.jsonl"), &t.metrics_line(&state, &log, mean_loss, (val_dice, val_iou)))?;
            loss_acc = (0.0, 0);
            state.stopped = state.plateaued(cfg.patience, cfg.val_every, cfg.min_iters, val_dice);
            t.save_checkpoint(&ckpt, &state)?;
            bar.set_message(format!("loss {:.3} val Dice {:.3} (best {:.3})", log.loss, val_dice, state.best_val_dice));
            if state.stopped {
                tracing::info!(
                    "early stop at iteration {done}: no better validation Dice since iteration {}",
                    state.best_iter
                );
                break;
            }
        }
    }
    bar.finish();
    report::finish(out, device, t, &splits, &state)
}

/// The first non-finite loss stops the run (see [`diverged`]).
fn stop_if_diverged(log: &StepLog, iter: usize, state: &LoopState) -> Result<()> {
    let mut phases = vec![("segmentation loss", log.loss)];
    if let Some(g) = log.gan {
        phases.extend([("GAN discriminator loss", g.d), ("GAN generator loss", g.g_adv), ("GAN L1 loss", g.l1)]);
    }
    phases.extend(log.hypergrad_norm.map(|h| ("architecture hypergradient", h)));
    match phases.into_iter().find(|(_, v)| !v.is_finite()) {
        Some((phase, v)) => bail!("{}", diverged(iter, &format!("the {phase} is {v}"), state)),
        None => Ok(()),
    }
}

/// What a diverged run says: where it stopped, what it kept, what to change.
fn diverged(iter: usize, what: &str, state: &LoopState) -> String {
    let kept = if state.iter == 0 {
        "nothing to keep yet (no validation reached)".to_string()
    } else {
        format!(
            "its checkpoint of iteration {} and its best model (iteration {}) are kept",
            state.iter, state.best_iter
        )
    };
    format!(
        "training diverged at iteration {iter}: {what}; the run stopped, {kept}. Lower the learning rate (--lr, \
         --gan-lr or --arch-lr) and train into a new --out"
    )
}

/// The summary of the run `cfg` in `out` when it has finished (`None` when it has not started or
/// not finished); a folder holding another configuration is an error.
pub fn finished(cfg: &TrainConfig, out: &Path) -> Result<Option<RunSummary>> {
    open_run_folder(cfg, out)
}

/// Checks that `out` is new or holds this very run; returns the summary of a finished one.
fn open_run_folder(cfg: &TrainConfig, out: &Path) -> Result<Option<RunSummary>> {
    let config_path = out.join("config.json");
    if config_path.is_file() {
        let text = std::fs::read_to_string(&config_path)?;
        let previous: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{} is corrupt", config_path.display()))?;
        // Compared as structs, so options added later (serde defaults) keep old runs resumable.
        let same =
            serde_json::from_value::<TrainConfig>(previous["config"].clone()).map(|p| p == *cfg).unwrap_or(false);
        if !same {
            bail!(
                "{} holds a run with a different configuration; choose another --out or delete that folder",
                out.display()
            );
        }
        if let Ok(text) = std::fs::read_to_string(out.join("summary.json")) {
            tracing::info!("{} already finished; delete summary.json to rerun", out.display());
            return Ok(Some(serde_json::from_str(&text)?));
        }
    }
    if cfg.method == Method::Genseg && cfg.data.val_n == Some(0) && cfg.data.val_ids.is_none() {
        bail!("--method genseg needs validation cases for the architecture step; set --val-n");
    }
    Ok(None)
}

impl<'a> Trainer<'a> {
    /// Writes the run's records (config, split, model spec), then builds the networks.
    fn new(cfg: &'a TrainConfig, splits: &Splits, out: &Path, device: Device) -> Result<Trainer<'a>> {
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
        Arm::check(cfg, &splits.train)?;
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
        let arm = Arm::build(cfg, splits, out, device)?;
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

    fn step(&mut self, iter: usize, splits: &Splits) -> StepLog {
        tch::manual_seed(step_seed(self.cfg.seed, iter));
        self.seg_opt.set_lr(self.cfg.schedule.lr(self.cfg.optim.lr, iter, self.cfg.iters));
        let (idx, x, m) = self.batches.draw(&splits.train);
        let (grads, log) = self.arm.step(self.cfg, &self.seg, iter, (x, m), &mut self.batches, splits);
        self.seg_opt.step(&grads);
        self.seen.extend(idx.iter().map(|&i| splits.train.ids[i].clone()));
        log
    }

    /// Mean validation Dice and IoU (NaN without validation cases).
    fn validate(&self, splits: &Splits, device: Device) -> (f64, f64) {
        if splits.val.is_empty() {
            return (f64::NAN, f64::NAN);
        }
        let s = summarize(&evaluate(&self.seg.net, &splits.val, device, self.cfg.empty_policy).0);
        (s.dice.mean, s.iou.mean)
    }

    /// Which networks hold a non-finite weight or buffer, if any.
    fn non_finite_part(&self) -> Option<&'static str> {
        if !all_finite(&self.seg.vs) {
            return Some("the segmenter's weights");
        }
        let gan = self.arm.gan()?;
        if !all_finite(&gan.arch_vs) {
            return Some("the architecture logits (alpha)");
        }
        (!all_finite(&gan.g_vs) || !all_finite(&gan.d_vs)).then_some("the GAN's weights")
    }

    fn metrics_line(
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
            alpha: if self.cfg.method == Method::Genseg { self.arm.alpha_softmax() } else { None },
            seconds: state.seconds,
        }
    }

    fn save_checkpoint(&self, dir: &Path, state: &LoopState) -> Result<()> {
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
    fn resume(&mut self, ckpt: &Path, out: &Path) -> Result<LoopState> {
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
