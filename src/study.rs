//! The low-data study: every (training-set size, seed, method) combination, one generator
//! pretrained per (size, seed) and shared by `separate` and `genseg`, finished runs skipped on
//! rerun; results.csv, results.md (with paired differences against `augment` and `separate`),
//! data-efficiency plots and report.html.
use crate::data::split::load_splits;
use crate::eval::metrics::aggregate;
use crate::eval::stats::{mean_interval, Interval};
use crate::runtime::{ensure_writable_dir, lock_folder, write_atomic};
use crate::train::gan::{pretrain, GanSpec};
use crate::train::{segment, Method, RunSummary, TrainConfig};
use anyhow::Result;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
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

/// One cell of the study (N, seed): where its generator lives and each method's run.
struct Cell {
    n: usize,
    seed: u64,
    /// The configuration shared by the cell's runs (method unset).
    base: TrainConfig,
    generator: Option<PathBuf>,
    runs: Vec<(TrainConfig, PathBuf)>,
}

/// The study's cells in order, seeds outermost (an interrupted study still has whole
/// data-efficiency curves), with `shard`'s share only.
fn cells(cfg: &StudyConfig, out: &Path) -> Vec<Cell> {
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
                    (c, out.join("runs").join(format!("{}-n{n}-s{seed}", method.name())))
                })
                .collect();
            Cell { n, seed, base, generator, runs }
        })
        .collect()
}

pub fn run(cfg: &StudyConfig, out: &Path, device: Device) -> Result<Vec<Row>> {
    ensure_writable_dir(out)?;
    let _lock = if cfg.shard.is_none() { Some(lock_folder(out)?) } else { None };
    let mut rows = Vec::new();
    for cell in cells(cfg, out) {
        if let Some(gen_dir) = cell.generator.as_ref().filter(|g| !g.join("gan.json").is_file()) {
            let splits = load_splits(&cell.base.data, cell.seed)?;
            let spec = GanSpec::for_data(cell.base.gan.clone(), &splits.train);
            pretrain(&spec, &cell.base.pretrain_config(cell.seed), &splits.train, &splits.val, gen_dir, device)?;
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
        "method,n,seed,test_dice,test_iou,test_cases,ood_dice,ood_iou,ood_cases,best_iter,stopped_iter,iters,seconds_per_iter,best_val_dice",
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
            "{},{},{},{:.5},{:.5},{},{:.5},{:.5},{},{},{},{},{:.4},{:.5}",
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
            s.seconds_per_iter,
            s.best_val_dice
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
    let values = |m: Method, n: Option<usize>, f: &dyn Fn(&RunSummary) -> f64| -> Vec<f64> {
        rows.iter().filter(|r| r.summary.method == m && n.is_none_or(|n| r.n == n)).map(|r| f(&r.summary)).collect()
    };
    let mut metrics: Vec<(String, MetricOf)> = vec![
        ("In-domain test Dice".into(), Box::new(|s| s.test.dice.mean)),
        ("In-domain test IoU".into(), Box::new(|s| s.test.iou.mean)),
        ("Out-of-domain Dice".into(), Box::new(|s| s.ood.as_ref().map(|o| o.dice.mean).unwrap_or(f64::NAN))),
        ("Out-of-domain IoU".into(), Box::new(|s| s.ood.as_ref().map(|o| o.iou.mean).unwrap_or(f64::NAN))),
        ("Best validation Dice".into(), Box::new(|s| s.best_val_dice)),
    ];
    for &l in &labels {
        let name =
            rows.iter().find_map(|r| r.summary.label_names.get(&l)).map(|n| format!(" ({n})")).unwrap_or_default();
        metrics.push((format!("In-domain test Dice, label {l}{name}"), Box::new(move |s| label_dice(s, l))));
    }
    // No table for what no run measured (out-of-domain scores without an out-of-domain set).
    let measured = |f: &MetricOf| rows.iter().any(|r| f(&r.summary).is_finite());
    let mut tables = Vec::new();
    for (title, f) in metrics.iter().filter(|(_, f)| measured(f)) {
        let mut header = vec!["N".to_string()];
        header.extend(methods.iter().map(|m| m.name().to_string()));
        let rows = ns
            .iter()
            .map(|&n| {
                let mut row = vec![n.to_string()];
                row.extend(methods.iter().map(|&m| {
                    let a = aggregate(values(m, Some(n), f.as_ref()));
                    format!("{} [{}]", fmt(a.mean, a.sd), a.n)
                }));
                row
            })
            .collect();
        tables.push(Table { title: title.clone(), caption: None, header, rows });
    }
    tables.extend(paired_tables(rows, methods, &ns, &metrics, measured));
    let mut md = String::from("Mean ± sd over seeds of each run's mean per-case score (seeds per cell in brackets).\n");
    for t in &tables {
        md.push_str(&t.markdown());
    }
    write_atomic(&out.join("results.md"), md.as_bytes())?;

    for (file, title, f) in [
        ("efficiency.png", "In-domain test Dice vs labelled images (95 % CI)", metrics[0].1.as_ref()),
        ("efficiency_ood.png", "Out-of-domain Dice vs labelled images (95 % CI)", metrics[2].1.as_ref()),
    ] {
        let series: Vec<crate::viz::Series> = methods
            .iter()
            .map(|&m| {
                let cis: Vec<(f64, Interval)> =
                    ns.iter().filter_map(|&n| Some((n as f64, mean_interval(&values(m, Some(n), f))?))).collect();
                crate::viz::Series {
                    label: m.name().into(),
                    points: cis.iter().map(|(n, c)| (*n, c.mean)).collect(),
                    intervals: cis.iter().map(|(_, c)| (c.lo, c.hi)).collect(),
                }
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if !series.is_empty() {
            crate::viz::line_chart(&out.join(file), title, "labelled images (N)", "Dice", &series, ns.len() > 1)?;
        }
    }
    write_report(out, rows, methods, &tables)?;
    Ok(())
}

/// One table of results.md and report.html.
struct Table {
    title: String,
    caption: Option<String>,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn markdown(&self) -> String {
        let mut md = format!("\n### {}\n\n", self.title);
        if let Some(c) = &self.caption {
            md.push_str(&format!("{c}\n\n"));
        }
        md.push_str(&format!("| {} |\n|{}\n", self.header.join(" | "), "---|".repeat(self.header.len())));
        for r in &self.rows {
            md.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        md
    }

    fn html(&self) -> String {
        let cells =
            |tag: &str, row: &[String]| row.iter().map(|c| format!("<{tag}>{}</{tag}>", escape(c))).collect::<String>();
        let mut h = format!("<h3>{}</h3>\n", escape(&self.title));
        if let Some(c) = &self.caption {
            h.push_str(&format!("<p>{}</p>\n", escape(c)));
        }
        h.push_str(&format!("<table>\n<tr>{}</tr>\n", cells("th", &self.header)));
        for r in &self.rows {
            h.push_str(&format!("<tr>{}</tr>\n", cells("td", r)));
        }
        h + "</table>\n"
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Each method minus `augment` and minus `separate` (those the study has), paired by (N, seed):
/// mean difference and 95 % bootstrap interval per N and pooled over N, for validation, test and
/// out-of-domain Dice.
fn paired_tables(
    rows: &[Row],
    methods: &[Method],
    ns: &[usize],
    metrics: &[(String, MetricOf)],
    measured: impl Fn(&MetricOf) -> bool,
) -> Vec<Table> {
    let score = |m: Method, n: usize, seed: u64, f: &MetricOf| {
        rows.iter().find(|r| r.summary.method == m && r.n == n && r.seed == seed).map(|r| f(&r.summary))
    };
    let mut seeds: Vec<u64> = rows.iter().map(|r| r.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let mut tables = Vec::new();
    for base in [Method::Augment, Method::Separate].into_iter().filter(|b| methods.contains(b)) {
        let others: Vec<Method> = methods.iter().copied().filter(|&m| m != base).collect();
        if others.is_empty() {
            continue;
        }
        for (title, f) in metrics.iter().filter(|(t, f)| PAIRED_METRICS.contains(&t.as_str()) && measured(f)) {
            let arms: Vec<(String, Difference)> = others
                .iter()
                .map(|&m| {
                    let d: Difference = Box::new(move |n, s| Some(score(m, n, s, f)? - score(base, n, s, f)?));
                    (m.name().to_string(), d)
                })
                .collect();
            tables.push(difference_table(
                format!("{title}: each method minus {}", base.name()),
                ns,
                &seeds,
                &arms,
                "method",
            ));
        }
    }
    tables
}

/// The metrics that get paired tables.
const PAIRED_METRICS: [&str; 3] = ["Best validation Dice", "In-domain test Dice", "Out-of-domain Dice"];

/// An arm's paired difference to its base in the cell (N, seed), when both have a score there.
type Difference<'a> = Box<dyn Fn(usize, u64) -> Option<f64> + 'a>;

/// One row per arm: its mean paired difference [95 % bootstrap interval] (cells) per N and
/// pooled over N, and the verdict of the pooled interval.
fn difference_table(title: String, ns: &[usize], seeds: &[u64], arms: &[(String, Difference)], what: &str) -> Table {
    let cell = |i: Option<Interval>| i.map(|i| format!("{} ({})", i.signed(), i.n)).unwrap_or_else(|| "-".into());
    let mut header = vec![what.to_string()];
    header.extend(ns.iter().map(|n| format!("N = {n}")));
    header.extend(["pooled".to_string(), "verdict".to_string()]);
    let rows = arms
        .iter()
        .map(|(label, diff)| {
            let diffs = |only: Option<usize>| -> Vec<f64> {
                ns.iter()
                    .filter(|&&n| only.is_none_or(|o| o == n))
                    .flat_map(|&n| seeds.iter().filter_map(move |&s| diff(n, s)))
                    .collect()
            };
            let mut row = vec![label.clone()];
            row.extend(ns.iter().map(|&n| cell(mean_interval(&diffs(Some(n))))));
            let pooled = mean_interval(&diffs(None));
            row.push(cell(pooled));
            row.push(pooled.map(|p| p.verdict()).unwrap_or("-").to_string());
            row
        })
        .collect();
    Table {
        title,
        caption: Some(
            "Mean paired difference (same N, same seed) [95 % bootstrap interval] (cells); within noise when the \
             interval crosses 0."
                .into(),
        ),
        header,
        rows,
    }
}

/// One arm of `genseg compare`: a method of a study folder.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyArm {
    pub study: PathBuf,
    pub method: String,
}

impl std::str::FromStr for StudyArm {
    type Err = String;

    /// `STUDY_DIR:METHOD`.
    fn from_str(text: &str) -> std::result::Result<StudyArm, String> {
        match text.rsplit_once(':') {
            Some((study, method)) if !study.is_empty() && !method.is_empty() => {
                Ok(StudyArm { study: study.into(), method: method.into() })
            }
            _ => Err(format!("'{text}' is not STUDY_DIR:METHOD (e.g. studies/kvasir:augment)")),
        }
    }
}

impl std::fmt::Display for StudyArm {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let name = self.study.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        write!(f, "{name}:{}", self.method)
    }
}

/// `genseg compare`: arms of different studies (a variant study against the one it varies)
/// paired by (N, seed) with `base`, as results.md pairs the methods of one study: a markdown
/// table per paired metric, from each study's results.csv.
pub fn compare(base: &StudyArm, arms: &[StudyArm]) -> Result<String> {
    let base_scores = arm_scores(base)?;
    let arm_scores: Vec<Scores> = arms.iter().map(arm_scores).collect::<Result<_>>()?;
    let mut ns: Vec<usize> = arm_scores.iter().flat_map(|s| s.keys().map(|k| k.0)).collect();
    ns.sort_unstable();
    ns.dedup();
    let mut seeds: Vec<u64> = arm_scores.iter().flat_map(|s| s.keys().map(|k| k.1)).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let mut md = String::new();
    for (i, title) in PAIRED_METRICS.iter().enumerate() {
        let rows: Vec<(String, Difference)> = arms
            .iter()
            .zip(&arm_scores)
            .map(|(arm, scores)| {
                let base_scores = &base_scores;
                let d: Difference = Box::new(move |n, s| {
                    let (a, b) = (scores.get(&(n, s))?[i], base_scores.get(&(n, s))?[i]);
                    (a - b).is_finite().then_some(a - b)
                });
                (arm.to_string(), d)
            })
            .collect();
        let table = difference_table(format!("{title}: each arm minus {base}"), &ns, &seeds, &rows, "arm");
        if table.rows.iter().any(|r| r.iter().skip(1).any(|c| c != "-")) {
            md.push_str(&table.markdown());
        }
    }
    Ok(md)
}

/// (N, seed) -> [best validation, test, out-of-domain Dice] of one arm, from results.csv.
type Scores = std::collections::BTreeMap<(usize, u64), [f64; 3]>;

fn arm_scores(arm: &StudyArm) -> Result<Scores> {
    let path = arm.study.join("results.csv");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; give a study folder (run `genseg study ... --tables-only` on it to write its tables)",
            path.display()
        )
    })?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| {
        header.iter().position(|h| *h == name).ok_or_else(|| anyhow::anyhow!("{} has no column {name}", path.display()))
    };
    let cols = [column("method")?, column("n")?, column("seed")?];
    let metrics = [column("best_val_dice")?, column("test_dice")?, column("ood_dice")?];
    let mut scores = Scores::new();
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        let bad = || anyhow::anyhow!("{} line {}: cannot read '{line}'", path.display(), i + 2);
        if cells.get(cols[0]) != Some(&arm.method.as_str()) {
            continue;
        }
        let n = cells.get(cols[1]).and_then(|c| c.parse().ok()).ok_or_else(bad)?;
        let seed = cells.get(cols[2]).and_then(|c| c.parse().ok()).ok_or_else(bad)?;
        let mut values = [f64::NAN; 3];
        for (v, &c) in values.iter_mut().zip(&metrics) {
            *v = cells.get(c).and_then(|c| c.parse().ok()).ok_or_else(bad)?;
        }
        scores.insert((n, seed), values);
    }
    if scores.is_empty() {
        anyhow::bail!("{} has no finished run of method '{}'", path.display(), arm.method);
    }
    Ok(scores)
}

/// report.html: one page with the tables, the efficiency plots and, per method, the overlays,
/// curves and generator samples of its run at the largest N and first seed (relative links, so
/// the page travels with the study folder).
fn write_report(out: &Path, rows: &[Row], methods: &[Method], tables: &[Table]) -> Result<()> {
    let name = out.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>genseg study {0}</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 2em; max-width: 1200px; }}\n\
         table {{ border-collapse: collapse; margin-bottom: 1em; }}\n\
         th, td {{ border: 1px solid #bbb; padding: 4px 8px; text-align: right; }}\n\
         th {{ background: #eee; }}\n img {{ max-width: 100%; border: 1px solid #ddd; }}\n\
         .pair {{ display: flex; gap: 1em; }} .pair > * {{ flex: 1; min-width: 0; margin: 0; }}\n</style></head><body>\n\
         <h1>genseg study: {0}</h1>\n<p>{1} runs; methods {2}. Files: <a href=\"results.csv\">results.csv</a>, \
         <a href=\"results.md\">results.md</a>.</p>\n",
        escape(&name),
        rows.len(),
        escape(&methods.iter().map(|m| m.name()).collect::<Vec<_>>().join(", "))
    );
    h.push_str("<h2>Data efficiency</h2>\n<div class=\"pair\">");
    for png in ["efficiency.png", "efficiency_ood.png"].iter().filter(|p| out.join(p).is_file()) {
        h.push_str(&format!("<img src=\"{png}\" alt=\"{png}\">"));
    }
    h.push_str("</div>\n<h2>Tables</h2>\n");
    for t in tables {
        h.push_str(&t.html());
    }
    h.push_str("<h2>Examples per method</h2>\n");
    let n = rows.iter().map(|r| r.n).max();
    for &m in methods {
        let Some(row) = rows.iter().filter(|r| r.summary.method == m && Some(r.n) == n).min_by_key(|r| r.seed) else {
            continue;
        };
        let dir = format!("runs/{}-n{}-s{}", m.name(), row.n, row.seed);
        h.push_str(&format!(
            "<h3>{} (N = {}, seed {}): test Dice {:.3}</h3>\n<div class=\"pair\">",
            m.name(),
            row.n,
            row.seed,
            row.summary.test.dice.mean
        ));
        for (file, what) in [
            ("overlays_test.png", "test overlays"),
            ("overlays_ood.png", "out-of-domain overlays"),
            ("curves.png", "training curves"),
            ("samples.png", "generator samples"),
        ] {
            if out.join(&dir).join(file).is_file() {
                h.push_str(&format!(
                    "<figure><img src=\"{dir}/{file}\" alt=\"{what}\"><figcaption>{what}</figcaption></figure>"
                ));
            }
        }
        h.push_str("</div>\n");
    }
    h.push_str("</body></html>\n");
    write_atomic(&out.join("report.html"), h.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn study(dir: &Path, rows: &[&str]) {
        std::fs::create_dir_all(dir).unwrap();
        let header = "method,n,seed,test_dice,test_iou,test_cases,ood_dice,ood_iou,ood_cases,best_iter,stopped_iter,iters,seconds_per_iter,best_val_dice";
        std::fs::write(dir.join("results.csv"), format!("{header}\n{}\n", rows.join("\n"))).unwrap();
    }

    #[test]
    fn compare_pairs_arms_of_two_studies_by_cell() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("base"), tmp.path().join("variant"));
        study(&a, &["augment,8,1,0.5,0,1,NaN,NaN,0,1,1,1,0,0.4", "augment,8,2,0.6,0,1,NaN,NaN,0,1,1,1,0,0.5"]);
        // Seed 3 has no base run: it is left out of the pairs.
        study(
            &b,
            &[
                "separate,8,1,0.6,0,1,NaN,NaN,0,1,1,1,0,0.5",
                "separate,8,2,0.8,0,1,NaN,NaN,0,1,1,1,0,0.6",
                "separate,8,3,0.9,0,1,NaN,NaN,0,1,1,1,0,0.9",
            ],
        );
        let arm = |d: &Path, m: &str| format!("{}:{m}", d.display()).parse::<StudyArm>().unwrap();
        let md = compare(&arm(&a, "augment"), &[arm(&b, "separate")]).unwrap();
        assert!(
            md.contains("| variant:separate | +0.100 [+0.100, +0.100] (2) | +0.100 [+0.100, +0.100] (2) | better |"),
            "{md}"
        );
        assert!(md.contains("| variant:separate | +0.150 [+0.100, +0.200] (2) |"), "{md}");
        assert!(!md.contains("Out-of-domain"), "no table without out-of-domain scores: {md}");
        let missing = compare(&arm(&a, "genseg"), &[arm(&b, "separate")]).unwrap_err().to_string();
        assert!(missing.contains("no finished run of method 'genseg'"), "{missing}");
        let no_file = compare(&arm(&tmp.path().join("nowhere"), "augment"), &[arm(&b, "separate")]).unwrap_err();
        assert!(no_file.to_string().contains("nowhere/results.csv"), "{no_file}");
        assert!("no-colon".parse::<StudyArm>().is_err());
    }
}
