//! results.csv and results.md: per-arm means and paired differences with bootstrap intervals.
use super::*;

pub(super) fn fmt(mean: f64, sd: f64) -> String {
    if mean.is_nan() {
        "-".into()
    } else {
        format!("{:.3} ± {:.3}", mean, sd)
    }
}

/// One table's score, read off a run's summary.
pub(super) type MetricOf = Box<dyn Fn(&RunSummary) -> f64>;

/// Test Dice of one label of a multi-label run (NaN when the run has no such label).
pub(super) fn label_dice(s: &RunSummary, label: u32) -> f64 {
    s.labels.iter().find(|l| l.label == label).map(|l| l.test.dice.mean).unwrap_or(f64::NAN)
}

/// results.csv (one line per run), results.md (mean ± sd over seeds) and the plots. Multi-label
/// (3-D) studies get a test Dice column and table per label.
pub(super) fn write_tables(out: &Path, rows: &[Row], methods: &[Method]) -> Result<Vec<Table>> {
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
    Ok(tables)
}

/// One table of results.md and report.html.
pub(super) struct Table {
    pub(super) title: String,
    pub(super) caption: Option<String>,
    pub(super) header: Vec<String>,
    pub(super) rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn markdown(&self) -> String {
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

    pub(super) fn html(&self) -> String {
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

pub(super) use crate::viz::escape_html as escape;

/// Each method minus `augment` and minus `separate` (those the study has), paired by (N, seed):
/// mean difference and 95 % bootstrap interval per N and pooled over N, for validation, test and
/// out-of-domain Dice.
pub(super) fn paired_tables(
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
pub(super) const PAIRED_METRICS: [&str; 3] = ["Best validation Dice", "In-domain test Dice", "Out-of-domain Dice"];

/// An arm's paired difference to its base in the cell (N, seed), when both have a score there.
pub(super) type Difference<'a> = Box<dyn Fn(usize, u64) -> Option<f64> + 'a>;

/// One row per arm: its mean paired difference [95 % bootstrap interval] (cells) per N and
/// pooled over N, and the verdict of the pooled interval.
pub(super) fn difference_table(
    title: String,
    ns: &[usize],
    seeds: &[u64],
    arms: &[(String, Difference)],
    what: &str,
) -> Table {
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
            // One seed is one split per N: no verdict, whatever the number of N.
            let verdict = match pooled {
                _ if seeds.len() < 2 => "too few seeds",
                Some(p) => p.verdict(),
                None => "-",
            };
            row.push(verdict.to_string());
            row
        })
        .collect();
    Table {
        title,
        caption: Some(
            "Mean paired difference (same N, same seed) [95 % bootstrap interval] (cells); within noise when the \
             interval crosses 0; no verdict from one seed or fewer than 3 cells."
                .into(),
        ),
        header,
        rows,
    }
}
