//! The records a run folder holds beside its weights: config.json, metrics.jsonl, the
//! checkpoint's loop state, data_usage.json and summary.json.
use super::config::{Method, TrainConfig};
use crate::eval::report::Summary;
use crate::runtime::Versions;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

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
    /// Validation cases (0 in summaries written before the field existed).
    #[serde(default)]
    pub val_n: usize,
    pub best_iter: usize,
    /// The last iteration trained: the budget, or where early stopping ended the run.
    #[serde(default)]
    pub stopped_iter: usize,
    /// The budget (`--iters`).
    #[serde(default)]
    pub iters: usize,
    #[serde(with = "crate::runtime::json_f64")]
    pub best_val_dice: f64,
    /// Over every (case, label) pair.
    pub test: Summary,
    pub ood: Option<Summary>,
    /// Per label, when the model segments several.
    #[serde(default)]
    pub labels: Vec<LabelSummary>,
    /// Names of the segmented label values from the dataset's dataset.json (nnU-Net/MSD layout).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub label_names: BTreeMap<u32, String>,
    /// softmax(alpha) rows at the end (generator methods).
    pub alpha: Option<Vec<Vec<f64>>>,
    pub seconds: f64,
    pub seconds_per_iter: f64,
}

impl RunSummary {
    /// The test (and out-of-domain) scores, as `train` prints them.
    pub fn headline(&self) -> String {
        let line = |what: &str, s: &Summary| {
            format!("{what} Dice {:.4} ± {:.4} (n={}), IoU {:.4}", s.dice.mean, s.dice.sd, s.dice.n, s.iou.mean)
        };
        let mut text = match self.test.cases {
            0 => "no test score: every labelled pair trained or validated (no test split)".to_string(),
            _ => line("test", &self.test),
        };
        if let Some(o) = &self.ood {
            text += &format!("\n{}", line("out-of-domain", o));
        }
        text
    }
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
    /// Set when early stopping ended the run (a resumed run does not train on).
    #[serde(default)]
    pub stopped: bool,
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
            stopped: false,
        }
    }

    /// Early stopping: `patience` validations without a better Dice, at or after `min_iters`,
    /// unless the segmenter finds no lesion at all on validation now (`val_dice` 0): small
    /// lesions are first learned as none, and such a run has not started, whatever its best
    /// (a TSTR segmenter on fuseg was stopped so at 300 iterations, its training loss still
    /// falling; docs/history §18).
    pub fn plateaued(&self, patience: usize, val_every: usize, min_iters: usize, val_dice: f64) -> bool {
        patience > 0 && self.iter >= min_iters && self.iter - self.best_iter >= patience * val_every && val_dice != 0.0
    }
}

/// Which cases reached which optimiser: the audit trail for "validation never trains".
#[derive(Debug, Serialize, Deserialize)]
pub struct DataUsage {
    pub seg_optimizer_ids: BTreeSet<String>,
    pub generator_ids: Vec<String>,
    pub val_ids: Vec<String>,
    pub test_ids: Vec<String>,
    /// The unlabelled images a `semi` run drew from (ids: file stems of `--unlabelled`, or cases
    /// of the set set aside by `--unlabelled-n`).
    #[serde(default)]
    pub unlabelled_ids: Vec<String>,
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
    /// `semi`: share of unlabelled voxels whose pseudo-label counted, at the last step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confident: Option<f64>,
    pub alpha: Option<Vec<Vec<f64>>>,
    pub seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_stopping_waits_for_the_minimum_and_a_plateau() {
        let state = |iter, best_iter| LoopState { iter, best_iter, ..LoopState::start() };
        // patience 3 validations of 10 iterations, minimum 100.
        assert!(!state(60, 20).plateaued(3, 10, 100, 0.3), "stopped before the minimum");
        assert!(!state(120, 100).plateaued(3, 10, 100, 0.3), "stopped while still improving");
        assert!(state(130, 100).plateaued(3, 10, 100, 0.3));
        assert!(!state(500, 0).plateaued(0, 10, 100, 0.3), "patience 0 never stops");
        assert!(!state(300, 50).plateaued(3, 10, 100, 0.0), "stopped a run that finds no lesion yet");
        // Without validation cases the Dice is NaN and the last model is kept.
        assert!(state(130, 100).plateaued(3, 10, 100, f64::NAN));
    }
}
