//! Evaluation: per-case overlap metrics, aggregation and report files.
pub mod metrics;
pub mod report;

use crate::data::dataset::pair_mask_folders;
use crate::data::image_io::decode_mask;
use crate::runtime::{ensure_writable_dir, write_json};
use anyhow::{bail, Result};
use metrics::{CaseMetrics, EmptyPolicy};
use rayon::prelude::*;
use std::path::Path;

/// Compares a folder of predicted masks with a folder of reference masks at the reference's
/// size; writes OUT/cases.csv and OUT/summary.json.
pub fn evaluate_folders(pred: &Path, reference: &Path, suffixes: &[String], policy: EmptyPolicy, out: &Path) -> Result<report::Summary> {
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
            let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
            for (a, b) in pm.pixels().zip(rm.pixels()) {
                match (a.0[0] > 127, b.0[0] > 127) {
                    (true, true) => tp += 1,
                    (true, false) => fp += 1,
                    (false, true) => fn_ += 1,
                    _ => {}
                }
            }
            Ok(CaseMetrics::from_counts(id, tp, fp, fn_, policy))
        })
        .collect();
    let cases: Vec<CaseMetrics> = cases.into_iter().collect::<Result<_>>()?;
    report::write_cases_csv(&out.join("cases.csv"), &cases)?;
    let summary = report::summarize(&cases);
    write_json(&out.join("summary.json"), &serde_json::json!({"policy_both_empty": policy, "summary": &summary}))?;
    Ok(summary)
}
