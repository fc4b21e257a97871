//! The records a run folder holds beside its weights: config.json, metrics.jsonl, the
//! checkpoint's loop state, data_usage.json and summary.json.
use super::config::{Method, TrainConfig};
use crate::eval::report::Summary;
use crate::runtime::Versions;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// config.json: the configuration and the versions it ran with.
#[derive(Serialize)]
pub struct ConfigFile<'a> {
    pub config: &'a TrainConfig,
    pub versions: Versions,
}

/// Test (and out-of-domain) metrics of one label of a multi-label model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabelSummary {
    pub label: u32,
    pub test: Summary,
    pub ood: Option<Summary>,
}

/// summary.json: what a finished run scored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub method: Method,
    pub seed: u64,
    pub train_n: usize,
    pub best_iter: usize,
    #[serde(with = "crate::runtime::json_f64")]
    pub best_val_dice: f64,
    /// Over every (case, label) pair.
    pub test: Summary,
    pub ood: Option<Summary>,
    /// Per label, when the model segments several.
    #[serde(default)]
    pub labels: Vec<LabelSummary>,
    /// softmax(alpha) rows at the end (generator methods).
    pub alpha: Option<Vec<Vec<f64>>>,
    pub seconds: f64,
    pub seconds_per_iter: f64,
}

/// The loop's position, saved with each checkpoint.
#[derive(Serialize, Deserialize)]
pub struct LoopState {
    pub iter: usize,
    #[serde(with = "crate::runtime::json_f64")]
    pub best_val_dice: f64,
    pub best_iter: usize,
    pub rng_word_pos: u128,
    pub seconds: f64,
    pub seg_optimizer_ids: BTreeSet<String>,
}

impl LoopState {
    pub fn start() -> LoopState {
        LoopState {
            iter: 0,
            best_val_dice: f64::NEG_INFINITY,
            best_iter: 0,
            rng_word_pos: 0,
            seconds: 0.0,
            seg_optimizer_ids: BTreeSet::new(),
        }
    }
}

/// Which cases reached which optimiser: the audit trail for "validation never trains".
#[derive(Debug, Serialize, Deserialize)]
pub struct DataUsage {
    pub seg_optimizer_ids: BTreeSet<String>,
    pub generator_ids: Vec<String>,
    pub val_ids: Vec<String>,
    pub test_ids: Vec<String>,
}

/// One line of metrics.jsonl, written at each validation.
#[derive(Serialize, Deserialize)]
pub struct MetricsLine {
    pub iter: usize,
    #[serde(with = "crate::runtime::json_f64")]
    pub loss: f64,
    #[serde(with = "crate::runtime::json_f64")]
    pub val_dice: f64,
    #[serde(with = "crate::runtime::json_f64")]
    pub val_iou: f64,
    pub d_loss: Option<f64>,
    pub g_l1: Option<f64>,
    pub hypergrad_norm: Option<f64>,
    pub alpha: Option<Vec<Vec<f64>>>,
    pub seconds: f64,
}
