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
    pub cases: usize,
}

pub fn summarize(cases: &[CaseMetrics]) -> Summary {
    Summary {
        dice: aggregate(cases.iter().map(|c| c.dice)),
        iou: aggregate(cases.iter().map(|c| c.iou)),
        sensitivity: aggregate(cases.iter().map(|c| c.sensitivity)),
        precision: aggregate(cases.iter().map(|c| c.precision)),
        cases: cases.len(),
    }
}

pub fn write_cases_csv(path: &Path, cases: &[CaseMetrics]) -> Result<()> {
    let mut text = String::from("id,dice,iou,sensitivity,precision,tp,fp,fn,n_pred,n_ref\n");
    for c in cases {
        text.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            c.id, c.dice, c.iou, c.sensitivity, c.precision, c.tp, c.fp, c.fn_, c.n_pred, c.n_ref
        ));
    }
    write_atomic(path, text.as_bytes())
}
