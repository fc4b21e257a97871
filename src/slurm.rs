//! Handing work to Slurm, the scheduler clusters run: job scripts that `cd` to where the command
//! was given and `exec` this program, and `sbatch` calls that return the job id. Used by
//! `study --slurm` (cells as a job array) and `fit --slurm` (fold runs as a job array).
use crate::runtime::write_atomic;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// A job script at `path`: a comment, `cd` to the current folder, then `command` (already
/// quoted words, or shell text such as `"${SLURM_ARRAY_TASK_ID}"`).
pub fn write_script(path: &Path, comment: &str, command: &[String]) -> Result<()> {
    let cwd = std::env::current_dir()?;
    let text = format!(
        "#!/bin/bash\n# Written by genseg: {comment}\ncd {}\nexec {}\n",
        quote(&cwd.to_string_lossy()),
        command.join(" ")
    );
    write_atomic(path, text.as_bytes())
}

/// `sbatch --parsable OURS THEIRS SCRIPT`; returns the job id.
pub fn sbatch(ours: &[String], theirs: &[String], script: &Path) -> Result<String> {
    let output = std::process::Command::new("sbatch")
        .arg("--parsable")
        .args(ours)
        .args(theirs)
        .arg(script)
        .output()
        .context("cannot run sbatch: use --slurm on a machine that submits Slurm jobs (or run without it)")?;
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

/// A job array and the job that runs when every task of it has ended.
pub struct ArrayThenJob<'a> {
    /// The array's task indices (`0-3`, `0,2`), its script and log (`%a`: the task index).
    pub tasks: String,
    pub array: (&'a Path, PathBuf),
    /// The script and log of the job after the array.
    pub after: (&'a Path, PathBuf),
    /// Job names of the array and the job after it.
    pub names: (&'a str, &'a str),
}

/// Submits `job` (the array with `--requeue`: a preempted task runs again and resumes); `theirs`
/// go to both `sbatch` calls. Returns (the array's id, the following job's id).
pub fn submit_array_then(job: &ArrayThenJob, theirs: &[String]) -> Result<(String, String)> {
    let array = sbatch(
        &[
            format!("--array={}", job.tasks),
            format!("--job-name={}", job.names.0),
            "--requeue".into(),
            format!("--output={}", job.array.1.display()),
        ],
        theirs,
        job.array.0,
    )?;
    let after = sbatch(
        &[
            format!("--dependency=afterany:{array}"),
            format!("--job-name={}", job.names.1),
            format!("--output={}", job.after.1.display()),
        ],
        theirs,
        job.after.0,
    )?;
    Ok((array, after))
}

/// The options given as `--slurm=OPTIONS`, one word each.
pub fn options(given: &str) -> Vec<String> {
    given.split_whitespace().map(String::from).collect()
}

/// `s` as one bash word.
pub fn quote(s: &str) -> String {
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
