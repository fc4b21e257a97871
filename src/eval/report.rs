//! Report files: per-case CSV and summary JSON, written atomically.
use super::metrics::{aggregate, Aggregate, CaseMetrics};
use crate::runtime::write_atomic;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Summary {
    pub dice: Aggregate,
    pub iou: Aggregate,
    pub sensitivity: Aggregate,
    pub precision: Aggregate,
    #[serde(default)]
    pub hd95: Option<Aggregate>,
    #[serde(default)]
    pub assd: Option<Aggregate>,
    #[serde(default)]
    pub nsd: Option<Aggregate>,
    pub cases: usize,
}

pub fn summarize(cases: &[CaseMetrics]) -> Summary {
    Summary {
        dice: aggregate(cases.iter().map(|c| c.dice)),
        iou: aggregate(cases.iter().map(|c| c.iou)),
        sensitivity: aggregate(cases.iter().map(|c| c.sensitivity)),
        precision: aggregate(cases.iter().map(|c| c.precision)),
        hd95: Some(aggregate(cases.iter().map(|c| c.surface.hd95))),
        assd: Some(aggregate(cases.iter().map(|c| c.surface.assd))),
        nsd: Some(aggregate(cases.iter().map(|c| c.surface.nsd))),
        cases: cases.len(),
    }
}

/// One line per case, through a CSV writer (RFC 4180: an id with a comma, quote or line break is
/// quoted), numbers as Rust prints them.
pub fn write_cases_csv(path: &Path, cases: &[CaseMetrics]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "id",
        "dice",
        "iou",
        "sensitivity",
        "precision",
        "hd",
        "hd95",
        "assd",
        "masd",
        "nsd",
        "tp",
        "fp",
        "fn",
        "n_pred",
        "n_ref",
    ])?;
    for c in cases {
        let s = &c.surface;
        let numbers =
            [c.dice, c.iou, c.sensitivity, c.precision, s.hd, s.hd95, s.assd, s.masd, s.nsd].map(|v| v.to_string());
        let counts = [c.tp, c.fp, c.fn_, c.n_pred, c.n_ref].map(|v| v.to_string());
        w.write_record(std::iter::once(c.id.clone()).chain(numbers).chain(counts))?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    write_atomic(path, &bytes)
}
