//! What `fit` reads off the data before planning (nnU-Net's fingerprint): dimensionality,
//! channels, pairs, image side and foreground share.
use crate::data::files::Folders;
use crate::data::SegDataset;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::Kind;

/// What the plan reads off the data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    /// 2 (images) or 3 (volumes).
    pub dims: usize,
    pub channels: usize,
    pub pairs: usize,
    /// The pairs' case ids (what the folds split).
    pub ids: Vec<String>,
    /// The median of each image's shorter side, in pixels (2-D).
    pub median_side: Option<u32>,
    /// Foreground share of a mask: median and smallest non-empty, over the pairs.
    pub foreground_median: f64,
    pub foreground_min: f64,
    pub empty_masks: usize,
}

impl Profile {
    /// The profile of `set`, loaded from `data`.
    pub fn of(data: &Path, set: &SegDataset) -> Result<Profile> {
        let area: f64 = set.shape.iter().product::<i64>() as f64;
        let shares: Vec<f64> = (0..set.len() as i64)
            .map(|i| f64::try_from(set.masks.get(i).gt(0.5).sum(Kind::Float)).unwrap_or(0.0) / area)
            .collect();
        let filled: Vec<f64> = shares.iter().copied().filter(|&s| s > 0.0).collect();
        let median_side = match set.dims() {
            2 => {
                let folders = Folders::of(data)?;
                let sides: Vec<f64> = std::fs::read_dir(&folders.images)?
                    .flatten()
                    .filter_map(|e| image::image_dimensions(e.path()).ok())
                    .map(|(w, h)| w.min(h) as f64)
                    .collect();
                Some(crate::eval::stats::median(&sides) as u32).filter(|&s| s > 0)
            }
            _ => None,
        };
        Ok(Profile {
            dims: set.dims(),
            channels: set.channels,
            pairs: set.len(),
            ids: set.ids.clone(),
            median_side,
            foreground_median: crate::eval::stats::median(&shares),
            foreground_min: filled.iter().copied().fold(f64::NAN, f64::min),
            empty_masks: shares.len() - filled.len(),
        })
    }
}
