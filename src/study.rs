//! The low-data study: every (training-set size, seed, method) combination, one generator
//! pretrained per (size, seed) and shared by `separate` and `genseg`, finished runs skipped on
//! rerun; results.csv, results.md and data-efficiency plots.
use crate::data::split::load_splits;
use crate::eval::metrics::aggregate;
use crate::runtime::{ensure_writable_dir, lock_folder, write_atomic};
use crate::train::gan::{pretrain, GanSpec, PretrainConfig};
use crate::train::{segment, Method, RunSummary, TrainConfig};
use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;
use tch::Device;

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

pub fn run(cfg: &StudyConfig, out: &Path, device: Device) -> Result<Vec<Row>> {
    ensure_writable_dir(out)?;
    let _lock = if cfg.shard.is_none() { Some(lock_folder(out)?) } else { None };
    let mut rows = Vec::new();
    // Seeds outermost: an interrupted study still has whole data-efficiency curves.
    let cells = cfg.seeds.iter().flat_map(|&seed| cfg.ns.iter().map(move |&n| (seed, n)));
    for (index, (seed, n)) in cells.enumerate() {
        if cfg.shard.is_some_and(|(i, k)| index % k != i) {
            continue;
        }
        let mut run_cfg = cfg.base.clone();
        run_cfg.data.n = n;
        run_cfg.seed = seed;
        if cfg.methods.iter().any(|m| m.uses_generator()) {
            let gen_dir = out.join("generators").join(format!("n{n}-s{seed}"));
            if !gen_dir.join("gan.json").is_file() {
                let splits = load_splits(&run_cfg.data, seed)?;
                let spec = GanSpec::for_data(run_cfg.gan.clone(), &splits.train);
                let pcfg = PretrainConfig::new(run_cfg.pretrain_iters, run_cfg.batch_size, seed);
                pretrain(&spec, &pcfg, &splits.train, &gen_dir, device)?;
            }
            run_cfg.generator = Some(gen_dir);
        }
        for &method in &cfg.methods {
            let mut c = run_cfg.clone();
            c.method = method;
            if !method.uses_generator() {
                c.generator = None;
            }
            let dir = out.join("runs").join(format!("{}-n{n}-s{seed}", method.name()));
            let summary = segment::run(&c, &dir, device)?;
            rows.push(Row { n, seed, summary });
            if cfg.shard.is_none() {
                write_results(out, &rows, &cfg.methods)?;
            }
        }
    }
    Ok(rows)
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
    ensure_writable_dir(out)?;
    {
        let _lock = lock_folder(out)?;
        let exe = std::env::current_exe()?;
        let children = (0..jobs)
            .map(|i| Ok(std::process::Command::new(&exe).args(worker(i)).spawn()?))
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

fn fmt(mean: f64, sd: f64) -> String {
    if mean.is_nan() {
        "-".into()
    } else {
        format!("{:.3} ± {:.3}", mean, sd)
    }
}

/// One table's score, read off a run's summary.
type MetricOf = Box<dyn Fn(&RunSummary) -> f64>;

/// Test Dice of one label of a multi-label run (NaN when the run has no such label).
fn label_dice(s: &RunSummary, label: u32) -> f64 {
    s.labels.iter().find(|l| l.label == label).map(|l| l.test.dice.mean).unwrap_or(f64::NAN)
}

/// results.csv (one line per run), results.md (mean ± sd over seeds) and the plots. Multi-label
/// (3-D) studies get a test Dice column and table per label.
pub fn write_results(out: &Path, rows: &[Row], methods: &[Method]) -> Result<()> {
    let mut labels: Vec<u32> = rows.iter().flat_map(|r| r.summary.labels.iter().map(|l| l.label)).collect();
    labels.sort_unstable();
    labels.dedup();
    let mut csv = String::from(
        "method,n,seed,test_dice,test_iou,test_cases,ood_dice,ood_iou,ood_cases,best_iter,stopped_iter,iters,seconds_per_iter",
    );
    for l in &labels {
        write!(csv, ",test_dice_label{l}")?;
    }
    csv.push('\n');
    for r in rows {
        let s = &r.summary;
        let (od, oi, on) =
            s.ood.as_ref().map(|o| (o.dice.mean, o.iou.mean, o.cases)).unwrap_or((f64::NAN, f64::NAN, 0));
        write!(
            csv,
            "{},{},{},{:.5},{:.5},{},{:.5},{:.5},{},{},{},{},{:.4}",
            s.method.name(),
            r.n,
            r.seed,
            s.test.dice.mean,
            s.test.iou.mean,
            s.test.cases,
            od,
            oi,
            on,
            s.best_iter,
            s.stopped_iter,
            s.iters,
            s.seconds_per_iter
        )?;
        for &l in &labels {
            write!(csv, ",{:.5}", label_dice(s, l))?;
        }
        csv.push('\n');
    }
    write_atomic(&out.join("results.csv"), csv.as_bytes())?;

    let mut ns: Vec<usize> = rows.iter().map(|r| r.n).collect();
    ns.sort_unstable();
    ns.dedup();
    let cell = |m: Method, n: usize, f: &dyn Fn(&RunSummary) -> f64| {
        let a = aggregate(rows.iter().filter(|r| r.summary.method == m && r.n == n).map(|r| f(&r.summary)));
        (a, fmt(a.mean, a.sd))
    };
    let mut metrics: Vec<(String, MetricOf)> = vec![
        ("In-domain test Dice".into(), Box::new(|s| s.test.dice.mean)),
        ("In-domain test IoU".into(), Box::new(|s| s.test.iou.mean)),
        ("Out-of-domain Dice".into(), Box::new(|s| s.ood.as_ref().map(|o| o.dice.mean).unwrap_or(f64::NAN))),
        ("Out-of-domain IoU".into(), Box::new(|s| s.ood.as_ref().map(|o| o.iou.mean).unwrap_or(f64::NAN))),
    ];
    for &l in &labels {
        metrics.push((format!("In-domain test Dice, label {l}"), Box::new(move |s| label_dice(s, l))));
    }
    let mut md = String::from("Mean ± sd over seeds of each run's mean per-case score (seeds per cell in brackets).\n");
    for (title, f) in &metrics {
        // No table for what no run measured (out-of-domain scores without an out-of-domain set).
        if !rows.iter().any(|r| f(&r.summary).is_finite()) {
            continue;
        }
        writeln!(md, "\n### {title}\n")?;
        writeln!(md, "| N | {} |", methods.iter().map(|m| m.name()).collect::<Vec<_>>().join(" | "))?;
        writeln!(md, "|---|{}", "---|".repeat(methods.len()))?;
        for &n in &ns {
            let cells: Vec<String> = methods
                .iter()
                .map(|&m| {
                    let (a, s) = cell(m, n, f.as_ref());
                    format!("{s} [{}]", a.n)
                })
                .collect();
            writeln!(md, "| {n} | {} |", cells.join(" | "))?;
        }
    }
    write_atomic(&out.join("results.md"), md.as_bytes())?;

    for (file, title, f) in [
        ("efficiency.png", "In-domain test Dice vs training images", metrics[0].1.as_ref()),
        ("efficiency_ood.png", "Out-of-domain Dice vs training images", metrics[2].1.as_ref()),
    ] {
        let series: Vec<crate::viz::Series> = methods
            .iter()
            .map(|&m| {
                let pts: Vec<(f64, f64, f64)> = ns
                    .iter()
                    .map(|&n| {
                        let (a, _) = cell(m, n, f);
                        (n as f64, a.mean, a.sd)
                    })
                    .filter(|p| p.1.is_finite())
                    .collect();
                crate::viz::Series {
                    label: m.name().into(),
                    points: pts.iter().map(|p| (p.0, p.1)).collect(),
                    errors: pts.iter().map(|p| p.2).collect(),
                }
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if !series.is_empty() {
            crate::viz::line_chart(
                &out.join(file),
                title,
                "labelled training images (N)",
                "Dice",
                &series,
                ns.len() > 1,
            )?;
        }
    }
    Ok(())
}
