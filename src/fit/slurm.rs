//! `fit --slurm`: the fit's stages as Slurm jobs. A plan job profiles the data and times steps
//! where the folds will train (a login node may have no GPU) and plans for fold runs side by
//! side ([`Runs::SideBySide`]: the budget bounds each task, not their sum, so the side and
//! iterations are what one run of the costliest candidate affords), then submits every fold run
//! as one job array and, after it, the finishing fit: the same command without `--slurm`, which
//! finds the fold runs done (or resumes any a preempted task left), chooses, and writes the
//! ensemble, model.onnx and report.html.
//!
//! FIT/slurm/: plan.sh, folds.sh, finish.sh, plan.log, fold-N.log, finish.log.
use super::plan::Runs;
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
    let (lock, record) = prepare(cfg, out, Runs::SideBySide, device)?;
    drop(lock);
    let runs = cv::run_order(&record.plan).len();
    // The plan job makes the folder too: `--slurm-plan` may run without `submit` before it.
    let dir = out.join("slurm");
    ensure_writable_dir(&dir)?;
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
    let iters = record.plan.iters;
    let planned = match record.plan.runs {
        Runs::SideBySide => "side by side",
        Runs::OneAfterAnother => "one after another: this fit was planned without --slurm",
    };
    tracing::info!("fit: fold run {index} runs {iters} iterations (the plan's, for runs {planned})");
    cv::run_one(cfg, &record.plan, out, index, iters, device)
}

fn quoted(command: &[String]) -> Vec<String> {
    command.iter().map(|a| quote(a)).collect()
}
