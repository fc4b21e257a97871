//! Evaluation: per-case overlap metrics, aggregation and report files.
pub mod distance;
pub mod metrics;
pub mod report;
pub mod stats;

use crate::data::files::{nifti_files, pair_by_id, refuse_fatal, Pair, Side};
use crate::data::image_io::decode_mask;
use crate::data::images::pair_mask_folders;
use crate::data::volume::read_labels;
use crate::data::SegDataset;
use crate::infer::predict_probs;
use crate::models::segnet::SegNet;
use crate::runtime::{ensure_writable_dir, write_json};
use anyhow::{bail, Result};
use metrics::{batch_metrics, CaseMetrics, EmptyPolicy, MetricOptions};
use rayon::prelude::*;
use std::path::Path;
use tch::{Device, Tensor};

/// A model's per-case (and per-label) metrics on a loaded dataset, and its probabilities.
pub fn evaluate(seg: &SegNet, data: &SegDataset, device: Device, policy: EmptyPolicy) -> (Vec<CaseMetrics>, Tensor) {
    let probs = predict_probs(seg, &data.images, device);
    (batch_metrics(&data.ids, &probs, &data.masks, &data.labels, &MetricOptions::pixels(policy, data.dims())), probs)
}

/// Cases of one label out of multi-label metrics (ids `{case}/{label}`).
pub fn label_cases(cases: &[CaseMetrics], label: u32) -> Vec<CaseMetrics> {
    let suffix = format!("/{label}");
    cases.iter().filter(|c| c.id.ends_with(&suffix)).cloned().collect()
}

/// Compares a folder of predicted masks with a folder of reference masks at the reference's
/// size; writes OUT/cases.csv and OUT/summary.json.
pub fn evaluate_folders(
    pred: &Path,
    reference: &Path,
    suffixes: &[String],
    opts: &MetricOptions,
    out: &Path,
) -> Result<report::Summary> {
    crate::runtime::refuse_overlap("--out", out, &[("the predictions", pred), ("the references", reference)])?;
    let pairs = pair_mask_folders(pred, reference, suffixes)?;
    ensure_writable_dir(out)?;
    let cases: Vec<Result<CaseMetrics>> = pairs
        .par_iter()
        .map(|Pair { id, first: p, second: r }| {
            let pm = decode_mask(p, false)?.mask;
            let rm = decode_mask(r, false)?.mask;
            if pm.dimensions() != rm.dimensions() {
                bail!(
                    "{}: prediction is {:?} but reference {} is {:?}; predict at the original size",
                    p.display(),
                    pm.dimensions(),
                    r.display(),
                    rm.dimensions()
                );
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

/// Compares NIfTI label maps per label (`labels`, e.g. 1,2; `None`: every label of the reference
/// volumes, as training segments every label found), with each reference's own voxel spacing;
/// writes OUT/cases.csv (id = case/label) and OUT/summary.json (one summary per label).
pub fn evaluate_nifti_folders(
    pred: &Path,
    reference: &Path,
    labels: Option<&[u32]>,
    opts: &MetricOptions,
    out: &Path,
) -> Result<Vec<(u32, report::Summary)>> {
    crate::runtime::refuse_overlap("--out", out, &[("the predictions", pred), ("the references", reference)])?;
    let (pairs, problems) = pair_by_id(nifti_files(pred)?, nifti_files(reference)?, |side, id| match side {
        Side::First => (format!("no reference volume for case '{id}' in {}", reference.display()), true),
        Side::Second => (format!("no predicted volume for case '{id}' in {}", pred.display()), true),
    });
    refuse_fatal(format_args!("cannot pair {} with {}", pred.display(), reference.display()), &problems)?;
    let labels = match labels {
        Some(given) => given.to_vec(),
        None => reference_labels(&pairs)?,
    };
    ensure_writable_dir(out)?;
    let cases: Vec<Result<Vec<(u32, CaseMetrics)>>> = pairs
        .par_iter()
        .map(|Pair { id, first: p, second: r }| {
            let ((pl, pv), (rl, rv)) = (read_labels(p)?, read_labels(r)?);
            if let Some(how) = pv.geometry_differs(&rv) {
                bail!(
                    "{}: prediction's geometry differs from the reference's ({how}); predict on the reference's grid",
                    p.display()
                );
            }
            if pv.shape != rv.shape {
                bail!(
                    "{}: prediction shape {:?} differs from the reference's {:?}; predict in the reference geometry",
                    p.display(),
                    pv.shape,
                    rv.shape
                );
            }
            let case_opts = MetricOptions { spacing: rv.spacing().to_vec(), ..opts.clone() };
            Ok(labels
                .iter()
                .map(|&l| {
                    let a: Vec<bool> = pl.iter().map(|&v| v == l).collect();
                    let b: Vec<bool> = rl.iter().map(|&v| v == l).collect();
                    (l, CaseMetrics::compute(&format!("{id}/label{l}"), &a, &b, &rv.shape, &case_opts))
                })
                .collect())
        })
        .collect();
    let cases: Vec<(u32, CaseMetrics)> = cases.into_iter().collect::<Result<Vec<_>>>()?.into_iter().flatten().collect();
    report::write_cases_csv(&out.join("cases.csv"), &cases.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>())?;
    let per_label: Vec<(u32, report::Summary)> = labels
        .iter()
        .map(|&l| {
            (l, report::summarize(&cases.iter().filter(|(k, _)| *k == l).map(|(_, c)| c.clone()).collect::<Vec<_>>()))
        })
        .collect();
    let json: serde_json::Map<String, serde_json::Value> =
        per_label.iter().map(|(l, s)| (l.to_string(), serde_json::to_value(s).unwrap())).collect();
    write_json(
        &out.join("summary.json"),
        &serde_json::json!({"options": opts, "spacing": "from each reference header", "labels": json}),
    )?;
    Ok(per_label)
}

/// Every label above 0 in the reference volumes of `pairs` (1 when all of them are empty). A pass
/// of its own over the references: keeping every volume in memory for the scoring pass would not
/// scale to CT-sized sets.
fn reference_labels(pairs: &[Pair]) -> Result<Vec<u32>> {
    let found: Vec<std::collections::BTreeSet<u32>> = pairs
        .par_iter()
        .map(|pair| Ok(read_labels(&pair.second)?.0.into_iter().filter(|&v| v > 0).collect()))
        .collect::<Result<_>>()?;
    let labels: Vec<u32> =
        found.into_iter().flatten().collect::<std::collections::BTreeSet<u32>>().into_iter().collect();
    Ok(if labels.is_empty() { vec![1] } else { labels })
}
