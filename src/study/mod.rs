//! The low-data study: every (training-set size, seed, method) combination, one generator
//! pretrained per (size, seed) and shared by `separate` and `genseg`, finished runs skipped on
//! rerun; results.csv, results.md (with paired differences against `augment` and `separate`),
//! data-efficiency plots and report.html.
use crate::data::split::load_splits;
use crate::eval::metrics::aggregate;
use crate::eval::stats::{mean_interval, Interval};
use crate::gan::{pretrain, GanSpec};
use crate::runtime::{ensure_writable_dir, lock_folder, write_atomic};
use crate::train::{segment, Method, RunSummary, TrainConfig};
use anyhow::Result;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tch::Device;

mod compare;
mod report;
pub mod slurm;
mod tables;

pub use compare::{compare, StudyArm};

#[derive(Debug, Clone)]
pub struct StudyConfig {
    /// Template for every run; method, labelled N, seed and generator are set per run.
    pub base: TrainConfig,
    /// Labelled-set sizes (training + validation).
    pub ns: Vec<usize>,
    pub seeds: Vec<u64>,
    pub methods: Vec<Method>,
    /// `Some((i, k))`: a `--jobs` worker that runs only the cells whose index (seeds outermost)
    /// is i mod k; its parent holds the study folder and writes the tables.
    pub shard: Option<(usize, usize)>,
}

pub struct Row {
    pub n: usize,
    pub seed: u64,
    pub summary: RunSummary,
}

/// One cell of the study (N, seed): where its generator lives and each method's run.
pub(super) struct Cell {
    n: usize,
    seed: u64,
    /// The configuration shared by the cell's runs (method unset).
    base: TrainConfig,
    generator: Option<PathBuf>,
    runs: Vec<(TrainConfig, PathBuf)>,
}

/// The study's cells in order, seeds outermost (an interrupted study still has whole
/// data-efficiency curves), with `shard`'s share only.
pub(super) fn cells(cfg: &StudyConfig, out: &Path) -> Vec<Cell> {
    let all = cfg.seeds.iter().flat_map(|&seed| cfg.ns.iter().map(move |&n| (seed, n)));
    all.enumerate()
        .filter(|(index, _)| cfg.shard.is_none_or(|(i, k)| index % k == i))
        .map(|(_, (seed, n))| {
            let mut base = cfg.base.clone();
            base.data.n = n;
            base.seed = seed;
            let generator = cfg
                .methods
                .iter()
                .any(|m| m.uses_generator())
                .then(|| out.join("generators").join(format!("n{n}-s{seed}")));
            let runs = cfg
                .methods
                .iter()
                .map(|&method| {
                    let mut c = base.clone();
                    c.method = method;
                    c.generator = generator.clone().filter(|_| method.uses_generator());
                    // The cell's generator learned from the pseudo-labelled pairs already.
                    c.pseudo = None;
                    (c, out.join("runs").join(format!("{}-n{n}-s{seed}", method.name())))
                })
                .collect();
            Cell { n, seed, base, generator, runs }
        })
        .collect()
}

pub fn run(cfg: &StudyConfig, out: &Path, device: Device) -> Result<Vec<Row>> {
    crate::runtime::refuse_overlap("--out", out, &cfg.base.data.inputs())?;
    if cfg.base.pseudo.is_some() && !cfg.methods.iter().any(|m| m.uses_generator()) {
        anyhow::bail!("--pseudo-labels: none of the study's methods pretrains a generator; add separate or genseg");
    }
    ensure_writable_dir(out)?;
    let _lock = if cfg.shard.is_none() { Some(lock_folder(out)?) } else { None };
    let mut rows = Vec::new();
    for cell in cells(cfg, out) {
        if let Some(gen_dir) = cell.generator.as_ref().filter(|g| !g.join("gan.json").is_file()) {
            let mut splits = load_splits(&cell.base.data, cell.seed)?;
            if cell.base.pseudo.is_some() {
                splits.load_unlabelled_folder(&cell.base.data)?;
            }
            let spec = GanSpec::for_data(cell.base.gan.clone(), &splits.train);
            let pairs = crate::train::segment::generator_pairs(&cell.base, &splits, gen_dir, device)?;
            pretrain(&spec, &cell.base.pretrain_config(cell.seed), &pairs, &splits.val, gen_dir, device)?;
        }
        for (c, dir) in &cell.runs {
            let summary = segment::run(c, dir, device)?;
            rows.push(Row { n: cell.n, seed: cell.seed, summary });
            if cfg.shard.is_none() {
                write_results(out, &rows, &cfg.methods)?;
            }
        }
    }
    Ok(rows)
}

/// `--tables-only`: the tables, plots and report.html from the study's finished runs, training
/// nothing (while the study still runs elsewhere, or to report the seeds that finished). A run
/// folder holding another configuration is an error, as in [`run`]. Returns the runs found.
pub fn tables_from_finished(cfg: &StudyConfig, out: &Path) -> Result<usize> {
    let mut rows = Vec::new();
    for cell in cells(cfg, out) {
        for (c, dir) in &cell.runs {
            if let Some(summary) = segment::finished(c, dir)? {
                rows.push(Row { n: cell.n, seed: cell.seed, summary });
            }
        }
    }
    if rows.is_empty() {
        anyhow::bail!("{}: no finished run of this study's configuration; nothing to tabulate", out.display());
    }
    write_results(out, &rows, &cfg.methods)?;
    Ok(rows.len())
}

/// `--jobs K`: the study's cells in K worker processes of this program (`worker(i)` gives worker
/// i's arguments), then the tables from their finished runs, which [`run`] reads back without
/// training. The study folder stays locked while the workers run.
pub fn run_in_workers(
    cfg: &StudyConfig,
    out: &Path,
    device: Device,
    jobs: usize,
    worker: impl Fn(usize) -> Vec<String>,
) -> Result<Vec<Row>> {
    if jobs == 1 {
        return run(cfg, out, device);
    }
    crate::runtime::refuse_overlap("--out", out, &cfg.base.data.inputs())?;
    cfg.base.data.refuse_missing_inputs()?;
    ensure_writable_dir(out)?;
    {
        let _lock = lock_folder(out)?;
        let exe = std::env::current_exe()?;
        let children = (0..jobs)
            .map(|i| Ok(crate::runtime::child_process(&exe).args(worker(i)).spawn()?))
            .collect::<Result<Vec<_>>>()?;
        let failed: Vec<usize> = children
            .into_iter()
            .enumerate()
            .filter_map(|(i, mut c)| (!c.wait().is_ok_and(|s| s.success())).then_some(i))
            .collect();
        if !failed.is_empty() {
            anyhow::bail!(
                "study workers {failed:?} of {jobs} failed (their messages are above); finished runs are kept, rerun the \
                 same command to go on"
            );
        }
    }
    run(cfg, out, device)
}

/// results.csv, results.md, the efficiency plots and report.html of the finished `rows`.
pub fn write_results(out: &Path, rows: &[Row], methods: &[Method]) -> Result<()> {
    let tables = tables::write_tables(out, rows, methods)?;
    report::write_report(out, rows, methods, &tables)
}
