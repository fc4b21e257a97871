//! A study's cells as a Slurm job array: task i runs cell i (a `--shard i/CELLS` worker of this
//! very command), and a job that starts when the array has ended writes the tables from the
//! finished cells. The study folder on shared storage is the only coordination: cells are
//! resumable runs, so a requeued or preempted task resumes its checkpoints, and rerunning the
//! same `study --slurm` command submits only the cells that have not finished.
//!
//! OUT/slurm/: array.sh and tables.sh (the job scripts, readable and rerunnable by hand),
//! cell-N.log (each task's output), tables.log, submitted.json (the job ids, appended).
use super::{cells, StudyConfig};
use crate::runtime::{ensure_writable_dir, write_atomic};
use crate::train::segment;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// What `study --slurm` handed to the scheduler.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Submitted {
    /// The cells (indices, seeds outermost) in the array.
    pub cells: Vec<usize>,
    pub array_job: String,
    pub tables_job: String,
}

/// Indices of the study's cells with a run that has not finished.
pub fn unfinished_cells(cfg: &StudyConfig, out: &Path) -> Result<Vec<usize>> {
    let all = StudyConfig { shard: None, ..cfg.clone() };
    let mut left = Vec::new();
    for (i, cell) in cells(&all, out).iter().enumerate() {
        for (c, dir) in &cell.runs {
            if segment::finished(c, dir)?.is_none() {
                left.push(i);
                break;
            }
        }
    }
    Ok(left)
}

/// Writes the job scripts and submits the unfinished cells with `sbatch`. `worker` is the
/// command line of this study without the flags of the submission (`exe`, then its arguments);
/// `sbatch_args` go to every `sbatch` call (partition, GPUs, time...). Returns `None` when every
/// cell has finished (the tables are written at once).
pub fn submit(cfg: &StudyConfig, out: &Path, worker: &[String], sbatch_args: &[String]) -> Result<Option<Submitted>> {
    crate::runtime::refuse_overlap("--out", out, &cfg.base.data.inputs())?;
    ensure_writable_dir(out)?;
    let todo = unfinished_cells(cfg, out)?;
    if todo.is_empty() {
        super::tables_from_finished(cfg, out)?;
        return Ok(None);
    }
    let dir = out.join("slurm");
    ensure_writable_dir(&dir)?;
    let count = cells(&StudyConfig { shard: None, ..cfg.clone() }, out).len();
    let cwd = std::env::current_dir()?;
    let quoted: Vec<String> = worker.iter().map(|a| quote(a)).collect();
    let (exe, args) = quoted.split_first().context("a worker command line")?;
    let header = format!("#!/bin/bash\n# Written by `genseg study --slurm`.\ncd {}\n", quote(&cwd.to_string_lossy()));
    let array = format!(
        "{header}# Cell $SLURM_ARRAY_TASK_ID of {count}: a resumable worker of the study.\nexec {exe} --threads \"${{SLURM_CPUS_PER_TASK:-1}}\" {} --shard \"${{SLURM_ARRAY_TASK_ID}}/{count}\"\n",
        args.join(" ")
    );
    let tables =
        format!("{header}# The tables from the finished cells.\nexec {exe} {} --tables-only\n", args.join(" "));
    let (array_sh, tables_sh) = (dir.join("array.sh"), dir.join("tables.sh"));
    write_atomic(&array_sh, array.as_bytes())?;
    write_atomic(&tables_sh, tables.as_bytes())?;
    let list = todo.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let array_job = sbatch(
        &[
            format!("--array={list}"),
            "--job-name=genseg-study".into(),
            "--requeue".into(),
            format!("--output={}", dir.join("cell-%a.log").display()),
        ],
        sbatch_args,
        &array_sh,
    )?;
    let tables_job = sbatch(
        &[
            format!("--dependency=afterany:{array_job}"),
            "--job-name=genseg-tables".into(),
            format!("--output={}", dir.join("tables.log").display()),
        ],
        sbatch_args,
        &tables_sh,
    )?;
    let submitted = Submitted { cells: todo, array_job, tables_job };
    crate::runtime::append_jsonl(&dir.join("submitted.jsonl"), &submitted)?;
    Ok(Some(submitted))
}

/// `sbatch --parsable OURS THEIRS SCRIPT`; returns the job id.
fn sbatch(ours: &[String], theirs: &[String], script: &Path) -> Result<String> {
    let output =
        std::process::Command::new("sbatch").arg("--parsable").args(ours).args(theirs).arg(script).output().context(
            "cannot run sbatch: run `genseg study --slurm` on a machine that submits Slurm jobs, or use --jobs K",
        )?;
    if !output.status.success() {
        bail!(
            "sbatch refused {} ({}): {}; fix the options of --slurm=... or the cluster's settings",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    // --parsable prints "id" or "id;cluster".
    let text = String::from_utf8_lossy(&output.stdout);
    let id = text.trim().split(';').next().unwrap_or_default().to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch printed no job id for {}: {text:?}", script.display());
    }
    Ok(id)
}

/// `s` as one bash word.
fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn words_are_quoted_for_bash() {
        assert_eq!(quote("--n"), "--n");
        assert_eq!(quote("my data/x"), "'my data/x'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
    }
}
