//! The segmentation training loop, one for all four methods ([`super::method::MethodState`] holds what
//! differs): prepare the run folder, resume, step, validate and checkpoint, finish.
//!
//! A run folder holds config.json, split.json, model.json, metrics.jsonl, the best model,
//! curves.png, summary.json with test and out-of-domain metrics, per-case CSVs and overlay
//! pictures. A run killed midway resumes from its checkpoint.
use super::config::{Keep, Method, TrainConfig};
use super::method::StepLog;
use super::record::{LoopState, RunSummary};
use super::report;
use super::teacher;
use super::trainer::Trainer;
use crate::data::fingerprint::Fingerprint;
use crate::data::split::{load_splits, Splits};
use crate::data::SegDataset;
use crate::progress::Progress;
use crate::runtime::lock_folder;
use crate::runtime::{append_jsonl, ensure_writable_dir, save_vars, write_json};
use anyhow::{bail, Context, Result};
use std::path::Path;
use tch::Device;

/// Trains one model into `out` (resuming if a checkpoint of the same config is there) and
/// returns its summary. A finished run is returned as is.
pub fn run(cfg: &TrainConfig, out: &Path, device: Device) -> Result<RunSummary> {
    let mut inputs = cfg.data.inputs();
    inputs.extend(cfg.generator.as_deref().map(|p| ("--generator", p)));
    inputs.extend(cfg.init.as_deref().map(|p| ("--init", p)));
    crate::runtime::refuse_overlap("--out", out, &inputs)?;
    let mut fingerprint = Fingerprint::of(&cfg.data.data)?;
    let unlabelled = cfg.data.unlabelled.as_deref().filter(|_| cfg.method.uses_unlabelled());
    if let Some(dir) = unlabelled {
        fingerprint.unlabelled = Some(Box::new(Fingerprint::of_files(dir, &crate::data::unlabelled::files(dir)?)?));
    }
    fingerprint.refuse_changed(out, &cfg.data.data)?;
    run_on(cfg, out, device, || {
        let mut splits = load_splits(&cfg.data, cfg.seed)?;
        if unlabelled.is_some() {
            splits.load_unlabelled_folder(&cfg.data)?;
        }
        Ok((splits, Some(fingerprint)))
    })
}

/// The pairs a generator pretrained into `gen_dir` learns from: the training pairs, and with
/// `--pseudo-labels` also the unlabelled images that a teacher, trained here first
/// ([`super::teacher`]), labels confidently. Refused before any training where it cannot work.
pub fn generator_pairs(cfg: &TrainConfig, splits: &Splits, gen_dir: &Path, device: Device) -> Result<SegDataset> {
    if cfg.pseudo.is_none() {
        return Ok(splits.train.clone());
    }
    teacher::check_pool(splits)?;
    let dir = teacher::teacher_dir(gen_dir);
    tracing::info!("pseudo-labels: training the teacher (augment on the same split) in {}", dir.display());
    run_on(&teacher::teacher_config(cfg), &dir, device, || Ok((teacher::teacher_splits(splits), None)))?;
    teacher::with_confident_pairs(cfg, splits, &dir, device)
}

/// [`run`] on the splits `load` gives instead of `cfg.data`'s (synth-eval trains on synthetic
/// pairs and validates and tests on real ones); `load` runs only when there is training to do.
pub fn run_on(
    cfg: &TrainConfig,
    out: &Path,
    device: Device,
    load: impl FnOnce() -> Result<(Splits, Option<Fingerprint>)>,
) -> Result<RunSummary> {
    let created = !out.exists();
    ensure_writable_dir(out)?;
    let lock = lock_folder(out)?;
    if let Some(finished) = open_run_folder(cfg, out)? {
        return Ok(finished);
    }
    // Data or settings refused before the run's records are written leave no folder this call
    // created; after them (a diverged generator pretraining) the folder keeps what resumes it.
    let abandon = |lock, e: anyhow::Error| {
        drop(lock);
        if created && !out.join("config.json").exists() {
            let _ = std::fs::remove_dir_all(out);
        }
        e
    };
    let (splits, fingerprint) = match load() {
        Ok(loaded) => loaded,
        Err(e) => return Err(abandon(lock, e)),
    };
    let pairs = match cfg.generator.is_none() && cfg.method.uses_generator() {
        true => generator_pairs(cfg, &splits, &out.join("generator"), device),
        false => Ok(splits.train.clone()),
    };
    let pairs = match pairs {
        Ok(pairs) => pairs,
        Err(e) => return Err(abandon(lock, e)),
    };
    let mut t = match Trainer::new(cfg, &splits, out, device, &pairs) {
        Ok(t) => t,
        Err(e) => return Err(abandon(lock, e)),
    };
    let _lock = lock;
    if let Some(f) = fingerprint {
        write_json(&out.join("data_fingerprint.json"), &f)?;
    }
    let ckpt = out.join("checkpoint");
    let mut state = t.resume(&ckpt, out)?;
    tracing::info!("plan: {}", cfg.plan(&splits));
    let mut progress = Progress::new(cfg.method.name(), cfg.iters as u64, state.iter as u64);
    let (started, seconds_before) = (std::time::Instant::now(), state.seconds);
    let mut loss_acc = (0.0, 0usize);
    let end = if state.stopped { state.iter } else { cfg.iters };
    for iter in state.iter..end {
        let log = t.step(iter, &splits);
        stop_if_diverged(&log, iter + 1, &state)?;
        loss_acc = (loss_acc.0 + log.loss, loss_acc.1 + 1);
        progress.inc();
        let done = iter + 1;
        if done.is_multiple_of(cfg.val_every) || done == cfg.iters {
            if let Some(part) = t.non_finite_part() {
                bail!("{}", diverged(done, &format!("{part} are not finite"), &state));
            }
            let (val_dice, val_iou) = t.validate(&splits, device);
            // Without validation cases the last model is kept.
            let better = val_dice > state.best_val_dice || splits.val.is_empty();
            if better {
                (state.best_val_dice, state.best_iter) = (val_dice, done);
            }
            match cfg.keep {
                Keep::Best if better => save_vars(&t.seg.vs, &out.join("model.safetensors"))?,
                Keep::Best => {}
                Keep::Last => {
                    save_vars(&t.seg.vs, &out.join("model.safetensors"))?;
                    if better {
                        save_vars(&t.seg.vs, &out.join("model_best.safetensors"))?;
                    }
                }
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
            // The loss metrics.jsonl records: the mean since the last validation.
            progress.status(match splits.val.is_empty() {
                true => format!("loss {mean_loss:.3}, no validation cases (the last model is kept)"),
                false => format!("loss {mean_loss:.3}, val Dice {val_dice:.3} (best {:.3})", state.best_val_dice),
            });
            if state.stopped {
                tracing::info!(
                    "early stop at iteration {done}: no better validation Dice since iteration {}",
                    state.best_iter
                );
                break;
            }
        }
    }
    progress.finish();
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
