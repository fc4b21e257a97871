//! Cross-validation of the plan's candidates: k seeded folds over every labelled pair (each pair
//! validates once), every candidate trained on every fold as an ordinary run folder, fold by
//! fold so that a budget that runs out leaves every candidate with the same folds. Each fold's
//! iterations (the same for every candidate) are what the budget left affords at the rate
//! measured so far. Every fold model
//! is scored per validation case; candidates compare by those scores, paired by case.
use super::plan::{Plan, FULL_ITERS, MIN_ITERS, OVERHEAD};
use super::{Candidate, Clock, FitConfig};
use crate::data::split::{load_splits, DataConfig};
use crate::data::SegDataset;
use crate::eval::metrics::CaseMetrics;
use crate::eval::stats::mean_interval;
use crate::runtime::write_atomic;
use crate::train::config::{Keep, Schedule};
use crate::train::{RunSummary, TrainConfig};
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// What cross-validation measured, and the choice (plan.json's `cv`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CvResult {
    pub rows: Vec<CvRow>,
    pub chosen: Candidate,
    pub reason: String,
}

/// One candidate over its finished folds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CvRow {
    pub candidate: Candidate,
    /// Fold run folders, relative to the fit folder.
    pub runs: Vec<PathBuf>,
    /// Mean validation Dice over the pairs of those folds, each scored by the fold model that did
    /// not train on it (its last model), with its 95 % bootstrap interval.
    #[serde(with = "crate::runtime::json_f64")]
    pub mean: f64,
    pub interval: Option<(f64, f64)>,
    /// Paired by case against the first candidate: difference, interval and verdict.
    pub vs_reference: Option<String>,
    /// Validation Dice per case id.
    pub cases: Vec<(String, f64)>,
    /// The same cases scored by each fold's best-validation checkpoint instead: chosen on these
    /// very cases, so an optimistic figure; below the last models' it is evidence against it.
    pub best_checkpoint_mean: Option<f64>,
    /// Iterations each fold run trained, and where its best checkpoint was.
    pub stopped_iters: Vec<usize>,
    pub best_iters: Vec<usize>,
    pub seconds: f64,
}

impl CvResult {
    pub fn row(&self, c: Candidate) -> Option<&CvRow> {
        self.rows.iter().find(|r| r.candidate == c)
    }

    /// The chosen candidate's fold runs: the ensemble.
    pub fn members(&self, c: Candidate) -> Vec<PathBuf> {
        self.row(c).map(|r| r.runs.clone()).unwrap_or_default()
    }
}

/// A finished fold run with its validation cases, their scores and probabilities.
pub struct FoldScore {
    pub candidate: Candidate,
    pub run: PathBuf,
    pub summary: RunSummary,
    pub cases: Vec<CaseMetrics>,
    /// The validation cases scored by model_best.safetensors.
    pub best_cases: Vec<CaseMetrics>,
    pub val: SegDataset,
    pub probs: Tensor,
}

/// The validation ids of each fold: the sorted ids shuffled by `seed`, the i-th to fold i mod k.
pub fn assign_folds(ids: &[String], k: usize, seed: u64) -> Vec<Vec<String>> {
    let mut order = ids.to_vec();
    order.sort();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    (0..k).map(|f| order.iter().skip(f).step_by(k).cloned().collect()).collect()
}

/// Writes folds/foldK.train.txt and .val.txt; returns their paths.
fn write_folds(plan: &Plan, seed: u64, out: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let dir = out.join("folds");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let folds = assign_folds(&plan.profile.ids, plan.folds, seed);
    let mut files = Vec::new();
    for (k, val) in folds.iter().enumerate() {
        let train: Vec<&String> = plan.profile.ids.iter().filter(|id| !val.contains(id)).collect();
        let (t, v) = (dir.join(format!("fold{k}.train.txt")), dir.join(format!("fold{k}.val.txt")));
        let lines = |ids: Vec<&String>| ids.iter().map(|s| format!("{s}\n")).collect::<String>();
        write_atomic(&t, lines(train).as_bytes())?;
        write_atomic(&v, lines(val.iter().collect()).as_bytes())?;
        files.push((std::path::absolute(&t)?, std::path::absolute(&v)?));
    }
    Ok(files)
}

/// `train`'s configuration for candidate `c` on one fold, at the plan's resolution and network.
fn fold_config(
    cfg: &FitConfig,
    plan: &Plan,
    c: Candidate,
    (train, val): &(PathBuf, PathBuf),
    iters: usize,
) -> TrainConfig {
    let mut data = DataConfig::new(&cfg.data);
    data.load = crate::data::set::LoadOptions { size: plan.size, ..cfg.load.clone() };
    (data.train_ids, data.val_ids) = (Some(train.clone()), Some(val.clone()));
    let mut t = TrainConfig::new(data);
    (t.seed, t.width, t.depth, t.batch_size, t.iters) = (cfg.seed, plan.width, plan.depth, plan.batch_size, iters);
    // nnU-Net's way: the planned iterations, the learning rate decaying to 0, the last model
    // kept, so that the fold's validation cases score the model instead of choosing it (on 2-8
    // cases a best-validation choice is mostly noise: docs/RESULTS.md, "Does fit beat train?").
    (t.patience, t.schedule, t.keep) = (0, Schedule::Poly, Keep::Last);
    c.apply(&mut t, cfg.unlabelled.as_deref());
    t
}

/// The configuration a fold run folder was started with (a resumed fit keeps it).
fn started_config(dir: &Path) -> Result<Option<TrainConfig>> {
    let Ok(text) = std::fs::read_to_string(dir.join("config.json")) else { return Ok(None) };
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}/config.json is corrupt", dir.display()))?;
    Ok(Some(serde_json::from_value(value["config"].clone())?))
}

/// Trains (or resumes) every (fold, candidate) run the budget affords and scores them.
pub fn run(
    cfg: &FitConfig,
    plan: &Plan,
    out: &Path,
    clock: &Clock,
    device: Device,
) -> Result<(CvResult, Vec<FoldScore>)> {
    let folds = write_folds(plan, cfg.seed, out)?;
    let order = run_order(plan);
    let mut scores: Vec<FoldScore> = Vec::new();
    let mut rate = Rate::planned(plan);
    // Iterations of the fold being trained: every candidate of a fold gets the same.
    let mut fold_iters: Option<(usize, usize)> = None;
    for (i, &(k, c)) in order.iter().enumerate() {
        let rel = run_folder(k, c);
        let dir = out.join(&rel);
        let started = started_config(&dir)?;
        let fresh = started.is_none();
        let tcfg = match started {
            Some(t) => t,
            None => {
                let iters = match fold_iters {
                    Some((fold, iters)) if fold == k => Some(iters),
                    _ => match fold_started_iters(out, plan, k)? {
                        Some(iters) => Some(iters),
                        None => {
                            let remaining: f64 = order[i..].iter().map(|&(_, c)| c.cost()).sum();
                            let left = plan.training_s - clock.spent();
                            let iters = fold_iterations(left, rate.unit * remaining, rate.cap, k == 0);
                            if let Some(n) = iters {
                                tracing::info!(
                                    "fit: fold {} runs {n} iterations ({:.0} s left for {} runs at {:.3} s an \
                                     iteration, {})",
                                    k + 1,
                                    left.max(0.0),
                                    order.len() - i,
                                    rate.unit,
                                    rate.source
                                );
                            }
                            iters
                        }
                    },
                };
                let Some(iters) = iters else {
                    tracing::warn!(
                        "fit: the budget is spent after {} of {} fold runs; choosing on the folds every candidate finished",
                        i,
                        order.len()
                    );
                    break;
                };
                fold_iters = Some((k, iters));
                fold_config(cfg, plan, c, &folds[k], iters)
            }
        };
        tracing::info!(
            "fit: cross-validation fold {}/{}, candidate {} ({}/{} runs), {} of the budget left",
            k + 1,
            plan.folds,
            c.name(),
            i + 1,
            order.len(),
            crate::progress::clock((cfg.budget_s - clock.spent()).max(0.0))
        );
        let run_started = std::time::Instant::now();
        let summary = crate::train::segment::run(&tcfg, &dir, device)?;
        let (_vs, net, _spec) = crate::infer::load_model(&dir, device)?;
        let val = load_splits(&tcfg.data, tcfg.seed)?.val;
        let (cases, probs) = crate::eval::evaluate(&net, &val, device, tcfg.empty_policy);
        let best_cases = match dir.join("model_best.safetensors").is_file() {
            true => {
                let (_vs, best, _spec) = crate::infer::load_model_weights(&dir, "model_best.safetensors", device)?;
                crate::eval::evaluate(&best, &val, device, tcfg.empty_policy).0
            }
            false => vec![],
        };
        if fresh {
            rate.measured(run_started.elapsed().as_secs_f64(), summary.stopped_iter, c);
        }
        clock.save()?;
        scores.push(FoldScore { candidate: c, run: rel, summary, cases, best_cases, val, probs });
    }
    Ok((summarise(plan, &scores)?, scores))
}

/// The fold runs in the order they train: folds outermost, so a fit cut short by its budget
/// still compares every candidate on the folds it finished.
pub fn run_order(plan: &Plan) -> Vec<(usize, Candidate)> {
    (0..plan.folds).flat_map(|k| plan.candidates.iter().map(move |&c| (k, c))).collect()
}

/// A fold run's folder, relative to the fit folder.
fn run_folder(k: usize, c: Candidate) -> PathBuf {
    Path::new("runs").join(c.name()).join(format!("fold{k}"))
}

/// Trains (or resumes) fold run `index` of [`run_order`] for `iters` iterations: one task of
/// `fit --slurm`'s job array. The finishing fit finds the run done and scores it.
pub fn run_one(cfg: &FitConfig, plan: &Plan, out: &Path, index: usize, iters: usize, device: Device) -> Result<()> {
    let order = run_order(plan);
    let Some(&(k, c)) = order.get(index) else {
        bail!("fold run {index}: the plan in {} has runs 0 to {}", out.display(), order.len().saturating_sub(1));
    };
    let folds = write_folds(plan, cfg.seed, out)?;
    let dir = out.join(run_folder(k, c));
    let tcfg = match started_config(&dir)? {
        Some(t) => t,
        None => fold_config(cfg, plan, c, &folds[k], iters),
    };
    crate::train::segment::run(&tcfg, &dir, device)?;
    Ok(())
}

/// Seconds a fold run takes per iteration and unit of [`Candidate::cost`], and the iteration cap
/// that goes with the estimate: the plan's guess for the first fold, then what the fold runs of
/// this session measured (training, validation and scoring, wall clock), which lifts the cap to
/// [`FULL_ITERS`] so that a machine faster than the guess spends the budget instead of ending
/// early (the first fits ended at 52-85 % of it: docs/RESULTS.md, "Does fit beat train?"). The
/// slower of the mean so far and the last run's rate: a machine that slows down (another job
/// starts) cuts the next fold at once instead of leaving the last fold a few iterations.
struct Rate {
    unit: f64,
    cap: usize,
    source: &'static str,
    seconds: f64,
    units: f64,
}

impl Rate {
    fn planned(plan: &Plan) -> Rate {
        let unit = plan.ms_per_step * OVERHEAD / 1000.0;
        Rate { unit, cap: plan.iters, source: "the plan's estimate", seconds: 0.0, units: 0.0 }
    }

    /// A fold run trained from its start in this session took `seconds` for `iters` iterations.
    fn measured(&mut self, seconds: f64, iters: usize, c: Candidate) {
        if iters == 0 || !seconds.is_finite() {
            return;
        }
        let units = iters as f64 * c.cost();
        (self.seconds, self.units) = (self.seconds + seconds, self.units + units);
        let unit = (self.seconds / self.units).max(seconds / units);
        (self.unit, self.cap, self.source) = (unit, FULL_ITERS, "measured on the fold runs so far");
    }
}

/// The iterations of fold `k`'s runs already started (a resumed fit keeps them for the rest).
fn fold_started_iters(out: &Path, plan: &Plan, k: usize) -> Result<Option<usize>> {
    for &c in &plan.candidates {
        if let Some(t) = started_config(&out.join(run_folder(k, c)))? {
            return Ok(Some(t.iters));
        }
    }
    Ok(None)
}

/// Iterations of the next fold's runs: what the time `left` affords at `per_iter` seconds for
/// it and every run after it, at most `cap`; `None` below [`MIN_ITERS`] (the budget is spent).
/// The first fold always gets [`MIN_ITERS`] at least: the plan promised it, and a step measured
/// slow on a loaded machine must not leave the fit without any model.
fn fold_iterations(left: f64, per_iter: f64, cap: usize, first_fold: bool) -> Option<usize> {
    let iters = ((left / per_iter).max(0.0) as usize).min(cap);
    match (iters >= MIN_ITERS, first_fold) {
        (true, _) => Some(iters),
        (false, true) => Some(MIN_ITERS.min(cap.max(1))),
        (false, false) => None,
    }
}

/// One row per candidate over the folds every candidate finished; the choice.
fn summarise(plan: &Plan, scores: &[FoldScore]) -> Result<CvResult> {
    let folds_of = |c: Candidate| scores.iter().filter(|s| s.candidate == c).count();
    let common = plan.candidates.iter().map(|&c| folds_of(c)).min().unwrap_or(0);
    if common == 0 {
        bail!(
            "the budget of {:.0} s ran out before every candidate finished one fold; give a larger --budget",
            plan.budget_s
        );
    }
    let row = |c: Candidate| {
        let own: Vec<&FoldScore> = scores.iter().filter(|s| s.candidate == c).take(common).collect();
        let cases: Vec<(String, f64)> =
            own.iter().flat_map(|s| s.cases.iter().map(|m| (m.id.clone(), m.dice))).collect();
        let dice: Vec<f64> = cases.iter().map(|c| c.1).collect();
        let interval = mean_interval(&dice);
        let best: Vec<f64> = own.iter().flat_map(|s| s.best_cases.iter().map(|m| m.dice)).collect();
        CvRow {
            best_checkpoint_mean: mean_interval(&best).map(|i| i.mean),
            candidate: c,
            runs: own.iter().map(|s| s.run.clone()).collect(),
            mean: interval.map(|i| i.mean).unwrap_or(f64::NAN),
            interval: interval.map(|i| (i.lo, i.hi)),
            vs_reference: None,
            cases,
            stopped_iters: own.iter().map(|s| s.summary.stopped_iter).collect(),
            best_iters: own.iter().map(|s| s.summary.best_iter).collect(),
            seconds: own.iter().map(|s| s.summary.seconds).sum(),
        }
    };
    let mut rows: Vec<CvRow> = plan.candidates.iter().map(|&c| row(c)).collect();
    let reference = rows[0].clone();
    for r in rows.iter_mut().skip(1) {
        let diffs: Vec<f64> = r
            .cases
            .iter()
            .filter_map(|(id, d)| reference.cases.iter().find(|(rid, _)| rid == id).map(|(_, rd)| d - rd))
            .filter(|d| d.is_finite())
            .collect();
        r.vs_reference = mean_interval(&diffs).map(|i| {
            format!("{} - {}: {} ({}) {}", r.candidate.name(), reference.candidate.name(), i.signed(), i.n, i.verdict())
        });
    }
    // The highest mean; on a tie the earlier (cheaper) candidate.
    let best = rows.iter().fold(&rows[0], |best, r| if r.mean > best.mean { r } else { best });
    let others: Vec<String> = rows
        .iter()
        .filter(|r| r.candidate != best.candidate)
        .map(|r| format!("{} {:.3}", r.candidate.name(), r.mean))
        .collect();
    let mut reason = format!(
        "{}: the highest cross-validated Dice, {:.3} over {} pairs in {common} fold(s)",
        best.candidate.name(),
        best.mean,
        best.cases.len()
    );
    if !others.is_empty() {
        reason += &format!(" ({})", others.join(", "));
    }
    reason += &best.vs_reference.as_ref().map(|v| format!("; {v}")).unwrap_or_default();
    // One model on all pairs cannot be compared with it inside a fit (no held-out case), so the
    // choice was measured once: docs/RESULTS.md, "One model on all pairs, or the ensemble?".
    reason += &format!(
        "; the ensemble is its {common} fold models (mean of probabilities), not one model on all pairs (lower test \
         Dice in docs/RESULTS.md)"
    );
    Ok(CvResult { chosen: best.candidate, reason, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_machine_still_trains_the_first_fold() {
        // 35 s left, 1.13 s an iteration for the remaining runs: 30 iterations, below the minimum.
        assert_eq!(fold_iterations(35.0, 1.13, 50, true), Some(MIN_ITERS));
        assert_eq!(fold_iterations(35.0, 1.13, 50, false), None, "later folds stop the fit instead");
        assert_eq!(fold_iterations(-5.0, 1.0, 40, true), Some(40), "never more than the plan");
        assert_eq!(fold_iterations(500.0, 1.0, 300, false), Some(300));
    }

    /// Before any fold run the plan's guess and cap hold; once runs are measured their rate does,
    /// and a machine faster than the guess may run up to FULL_ITERS.
    #[test]
    fn the_rate_measured_on_fold_runs_replaces_the_plans_guess() {
        let plan: Plan = serde_json::from_value(serde_json::json!({
            "profile": {"dims": 2, "channels": 3, "pairs": 16, "ids": [], "median_side": 64,
                        "foreground_median": 0.1, "foreground_min": 0.01, "empty_masks": 0},
            "budget_s": 600.0, "training_s": 525.0, "device": "cpu", "size": 64, "width": 16, "depth": 4,
            "batch_size": 4, "iters": 400, "folds": 5, "candidates": ["augment", "copy-paste"],
            "step_ms": [[64, 60.0]], "ms_per_step": 60.0, "reasons": []
        }))
        .unwrap();
        let mut rate = Rate::planned(&plan);
        assert_eq!((rate.cap, (rate.unit * 1000.0).round()), (400, 75.0));
        rate.measured(24.0, 400, Candidate::Augment);
        rate.measured(0.0, 0, Candidate::CopyPaste);
        assert_eq!((rate.cap, rate.unit), (FULL_ITERS, 0.06));
        // 480 s left for 8 runs of cost 1.025 at 0.06 s: 975 iterations.
        assert_eq!(fold_iterations(480.0, rate.unit * 8.2, rate.cap, false), Some(975));
        // The machine slows down: the last run's rate, not the mean, sets the next fold.
        rate.measured(36.0, 400, Candidate::Augment);
        assert_eq!(rate.unit, 0.09);
        rate.measured(24.0, 400, Candidate::Augment);
        assert!((rate.unit - 0.07).abs() < 1e-12, "{}", rate.unit);
    }

    /// Every pair validates exactly once, folds differ in size by at most one, and the seed decides.
    #[test]
    fn every_pair_validates_once() {
        let ids: Vec<String> = (0..17).map(|i| format!("c{i:02}")).collect();
        let folds = assign_folds(&ids, 5, 3);
        let mut all: Vec<String> = folds.concat();
        all.sort();
        assert_eq!(all, ids);
        let sizes: Vec<usize> = folds.iter().map(Vec::len).collect();
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
        assert_eq!(assign_folds(&ids, 5, 3), folds);
        assert_ne!(assign_folds(&ids, 5, 4), folds);
    }
}
