//! Evaluation: per-case overlap metrics, aggregation and report files.
pub mod distance;
pub mod metrics;
pub mod report;

use crate::data::dataset::pair_mask_folders;
use crate::data::image_io::decode_mask;
use crate::runtime::{ensure_writable_dir, write_json};
use anyhow::{bail, Result};
use metrics::{CaseMetrics, MetricOptions};
use rayon::prelude::*;
use std::path::Path;

/// Compares a folder of predicted masks with a folder of reference masks at the reference's
/// size; writes OUT/cases.csv and OUT/summary.json.
pub fn evaluate_folders(pred: &Path, reference: &Path, suffixes: &[String], opts: &MetricOptions, out: &Path) -> Result<report::Summary> {
    let pairs = pair_mask_folders(pred, reference, suffixes)?;
    ensure_writable_dir(out)?;
    let cases: Vec<Result<CaseMetrics>> = pairs
        .par_iter()
        .map(|(id, p, r)| {
            let pm = decode_mask(p, false)?.mask;
            let rm = decode_mask(r, false)?.mask;
            if pm.dimensions() != rm.dimensions() {
                bail!("{}: prediction is {:?} but reference {} is {:?}; predict at the original size", p.display(), pm.dimensions(), r.display(), rm.dimensions());
            }
            let bits = |m: &image::GrayImage| m.pixels().map(|v| v.0[0] > 127).collect::<Vec<bool>>();
            let shape = [rm.height() as usize, rm.width() as usize];
            Ok(CaseMetrics::compute(id, &bits(&pm), &bits(&rm), &shape, opts))
        })
        .collect();
    let cases: Vec<CaseMetrics> = cases.into_iter().collect::<Result<_>>()?;
    report::write_cases_csv(&out.join("cases.csv"), &cases)?;
    let summary = report::summarize(&cases);
    write_json(&out.join("summary.json"), &serde_json::json!({"options": opts, "summary": &summary}))?;
    Ok(summary)
}
