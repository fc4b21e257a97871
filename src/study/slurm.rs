//! A study's cells as a Slurm job array: task i runs cell i (a `--shard i/CELLS` worker of this
//! very command), and a job that starts when the array has ended writes the tables from the
//! finished cells. The study folder on shared storage is the only coordination: cells are
//! resumable runs, so a requeued or preempted task resumes its checkpoints, and rerunning the
//! same `study --slurm` command submits only the cells that have not finished.
//!
//! OUT/slurm/: array.sh and tables.sh (the job scripts, readable and rerunnable by hand),
//! cell-N.log (each task's output), tables.log, submitted.json (the job ids, appended).
use super::{cells, StudyConfig};
use crate::runtime::ensure_writable_dir;
use crate::slurm::{quote, submit_array_then, write_script, ArrayThenJob};
use crate::train::segment;
use anyhow::{Context, Result};
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
    cfg.base.data.refuse_missing_inputs()?;
    ensure_writable_dir(out)?;
    let todo = unfinished_cells(cfg, out)?;
    if todo.is_empty() {
        super::tables_from_finished(cfg, out)?;
        return Ok(None);
    }
    let dir = out.join("slurm");
    ensure_writable_dir(&dir)?;
    let count = cells(&StudyConfig { shard: None, ..cfg.clone() }, out).len();
    let quoted: Vec<String> = worker.iter().map(|a| quote(a)).collect();
    let (exe, args) = quoted.split_first().context("a worker command line")?;
    let (array_sh, tables_sh) = (dir.join("array.sh"), dir.join("tables.sh"));
    let mut task = vec![exe.clone(), "--threads \"${SLURM_CPUS_PER_TASK:-1}\"".into()];
    task.extend(args.iter().cloned());
    task.push(format!("--shard \"${{SLURM_ARRAY_TASK_ID}}/{count}\""));
    write_script(&array_sh, &format!("cell $SLURM_ARRAY_TASK_ID of {count}, a resumable worker of the study"), &task)?;
    let mut tables = quoted.clone();
    tables.push("--tables-only".into());
    write_script(&tables_sh, "the tables from the finished cells", &tables)?;
    let job = ArrayThenJob {
        tasks: todo.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
        array: (&array_sh, dir.join("cell-%a.log")),
        after: (&tables_sh, dir.join("tables.log")),
        names: ("genseg-study", "genseg-tables"),
    };
    let (array_job, tables_job) = submit_array_then(&job, sbatch_args)?;
    let submitted = Submitted { cells: todo, array_job, tables_job };
    crate::runtime::append_jsonl(&dir.join("submitted.jsonl"), &submitted)?;
    Ok(Some(submitted))
}
