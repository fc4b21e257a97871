//! `fit --slurm`: the fit's stages as Slurm jobs. A plan job profiles the data and times steps
//! where the folds will train (a login node may have no GPU), then submits every fold run of the
//! plan as one job array (the folds train side by side instead of one after another, so the
//! budget bounds each task, not their sum: each runs what the whole training budget affords one
//! run at the plan's rate, [`task_iterations`]) and, after the array, the finishing fit: the same
//! command without `--slurm`, which finds the fold runs done (or resumes any a preempted task
//! left), chooses, and writes the ensemble, model.onnx and report.html.
//!
//! FIT/slurm/: plan.sh, folds.sh, finish.sh, plan.log, fold-N.log, finish.log.
use super::plan::{Plan, FULL_ITERS, OVERHEAD};
use super::{cv, prepare, FitConfig, FitRecord};
use crate::runtime::ensure_writable_dir;
use crate::slurm::{quote, sbatch, submit_array_then, write_script, ArrayThenJob};
use anyhow::{Context, Result};
use std::path::Path;
use tch::Device;

/// Submits the plan job; `command` is this fit's command line without `--slurm` (the program,
/// then its arguments), `options` go to every `sbatch`. Returns the plan job's id.
pub fn submit(out: &Path, command: &[String], options: &str) -> Result<String> {
    let dir = out.join("slurm");
    ensure_writable_dir(&dir)?;
    let mut plan = quoted(command);
    plan.push(format!("--slurm-plan={}", quote(options)));
    let script = dir.join("plan.sh");
    write_script(&script, "the plan of a fit, which then submits its fold runs", &plan)?;
    let output = format!("--output={}", dir.join("plan.log").display());
    sbatch(&["--job-name=genseg-fit-plan".into(), output], &crate::slurm::options(options), &script)
}

/// The plan job: plans (or keeps the plan), then submits the fold runs and the finishing fit.
/// Returns (the array's job id, the finishing job's id).
pub fn plan_and_submit(
    cfg: &FitConfig,
    out: &Path,
    command: &[String],
    options: &str,
    device: Device,
) -> Result<(String, String)> {
    let (lock, record) = prepare(cfg, out, device)?;
    drop(lock);
    let runs = cv::run_order(&record.plan).len();
    let dir = out.join("slurm");
    let (folds_sh, finish_sh) = (dir.join("folds.sh"), dir.join("finish.sh"));
    let mut task = quoted(command);
    task.insert(1, "--threads \"${SLURM_CPUS_PER_TASK:-1}\"".into());
    task.push("--fold-run \"${SLURM_ARRAY_TASK_ID}\"".into());
    write_script(&folds_sh, &format!("fold run $SLURM_ARRAY_TASK_ID of {runs} of a fit"), &task)?;
    write_script(&finish_sh, "the fit's choice, ensemble and report from its fold runs", &quoted(command))?;
    let job = ArrayThenJob {
        tasks: format!("0-{}", runs - 1),
        array: (&folds_sh, dir.join("fold-%a.log")),
        after: (&finish_sh, dir.join("finish.log")),
        names: ("genseg-fit-folds", "genseg-fit"),
    };
    submit_array_then(&job, &crate::slurm::options(options))
}

/// One array task: fold run `index` of the plan in `out`.
pub fn fold_run(cfg: &FitConfig, out: &Path, index: usize, device: Device) -> Result<()> {
    let path = out.join("plan.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: no plan; start the fit with `genseg fit ... --slurm`", path.display()))?;
    let record: FitRecord = serde_json::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))?;
    let iters = task_iterations(&record.plan);
    tracing::info!("fit: fold run {index} runs {iters} iterations (what the training budget affords one run)");
    cv::run_one(cfg, &record.plan, out, index, iters, device)
}

/// Iterations of every array task: what the fit's training time affords one run of its costliest
/// candidate at the plan's estimated rate (the same for every candidate, as in a fit on one
/// machine), between the plan's iterations (the budget split over all runs one after another)
/// and [`FULL_ITERS`].
pub fn task_iterations(plan: &Plan) -> usize {
    let costliest = plan.candidates.iter().map(|c| c.cost()).fold(1.0, f64::max);
    let per_iter = plan.ms_per_step * OVERHEAD * costliest / 1000.0;
    let affordable = (plan.training_s / per_iter) as usize;
    affordable.clamp(plan.iters.min(FULL_ITERS), FULL_ITERS)
}

fn quoted(command: &[String]) -> Vec<String> {
    command.iter().map(|a| quote(a)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::Candidate;

    fn plan(training_s: f64, iters: usize, candidates: &[&str]) -> Plan {
        serde_json::from_value(serde_json::json!({
            "profile": {"dims": 2, "channels": 1, "pairs": 20, "ids": [], "median_side": 64,
                        "foreground_median": 0.1, "foreground_min": 0.05, "empty_masks": 0},
            "budget_s": training_s + 10.0, "training_s": training_s, "device": "cpu", "size": 64,
            "width": 16, "depth": 4, "batch_size": 4, "iters": iters, "folds": 5,
            "candidates": candidates, "step_ms": [[64, 50.0]], "ms_per_step": 50.0, "reasons": []
        }))
        .unwrap()
    }

    /// A task runs what the whole training time affords one run (at 50 ms a step and the plan's
    /// overhead of 1.25, 62.5 ms an iteration), priced at the costliest candidate, never fewer
    /// than the plan gave a run on one machine and never more than FULL_ITERS.
    #[test]
    fn a_task_runs_what_the_whole_budget_affords_one_run() {
        assert_eq!(task_iterations(&plan(30.0, 100, &["augment"])), 480);
        assert_eq!(task_iterations(&plan(600.0, 500, &["augment"])), FULL_ITERS);
        assert_eq!(Candidate::Genseg.cost(), 15.0);
        assert_eq!(task_iterations(&plan(30.0, 20, &["augment", "genseg"])), 32);
        assert_eq!(task_iterations(&plan(30.0, 100, &["augment", "genseg"])), 100);
    }
}
