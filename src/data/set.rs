//! The loaded dataset and the options that shape it, shared by the 2-D and 3-D loaders.
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Mask file suffixes stripped to find the image a mask belongs to.
pub const DEFAULT_MASK_SUFFIXES: &[&str] = &["_mask", "_segmentation", "_Segmentation", "_lesion", "_manual1"];

pub fn default_mask_suffixes() -> Vec<String> {
    DEFAULT_MASK_SUFFIXES.iter().map(|s| s.to_string()).collect()
}

/// How files become training tensors. Serialised flat inside a run's data configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadOptions {
    /// Square side every 2-D image and mask is resized to.
    pub size: u32,
    /// 1 or 3; `None` takes the first image's (grey -> 1, colour -> 3).
    pub channels: Option<usize>,
    pub mask_suffixes: Vec<String>,
    /// Threshold masks with more than two values instead of refusing them; for label maps,
    /// merge every foreground label into one.
    pub binarize: bool,
    /// Shape and labels of NIfTI volume sets (unused for 2-D images).
    #[serde(default)]
    pub volume: VolumeOptions,
    /// Accept a set whose every mask is empty (refused by default: nothing to learn).
    #[serde(default)]
    pub allow_empty: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            // The studies' size (docs/RESULTS.md): minutes per run on a CPU.
            size: 64,
            channels: None,
            mask_suffixes: default_mask_suffixes(),
            binarize: false,
            volume: Default::default(),
            allow_empty: false,
        }
    }
}

/// How volumes become training tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeOptions {
    /// Every volume is centre-cropped/padded to this shape (NIfTI axis order).
    pub shape: [usize; 3],
    /// Foreground labels to segment, one output channel each; `None` takes every label found.
    pub labels: Option<Vec<u32>>,
}

impl Default for VolumeOptions {
    /// 32x48x32 holds MSD hippocampus volumes (31-43 x 40-59 x 24-47 voxels) losing 0.05 % of
    /// their foreground voxels, and halves four times.
    fn default() -> Self {
        VolumeOptions { shape: [32, 48, 32], labels: None }
    }
}

/// A loaded dataset: images `[N, C, spatial...]` in [0, 1] and masks `[N, L, spatial...]` in
/// {0, 1}, one channel per foreground label (2-D: one, `[N, 1, S, S]`; 3-D: `[N, L, D, H, W]`).
/// Clones share the tensors, which nothing modifies in place.
#[derive(Debug)]
pub struct SegDataset {
    pub ids: Vec<String>,
    pub images: Tensor,
    pub masks: Tensor,
    pub channels: usize,
    /// Spatial shape at the working resolution: `[S, S]` or `[D, H, W]`.
    pub shape: Vec<i64>,
    /// The label value each mask channel stands for.
    pub labels: Vec<u32>,
}

impl Clone for SegDataset {
    fn clone(&self) -> Self {
        SegDataset {
            ids: self.ids.clone(),
            images: self.images.shallow_clone(),
            masks: self.masks.shallow_clone(),
            channels: self.channels,
            shape: self.shape.clone(),
            labels: self.labels.clone(),
        }
    }
}

impl SegDataset {
    /// From stacked tensors; shape, channels and labels are read off them.
    pub fn new(ids: Vec<String>, images: Tensor, masks: Tensor, labels: Vec<u32>) -> SegDataset {
        let size = images.size();
        SegDataset { ids, channels: size[1] as usize, shape: size[2..].to_vec(), labels, images, masks }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Spatial axes: 2 or 3.
    pub fn dims(&self) -> usize {
        self.shape.len()
    }

    /// The cases with the given ids, in that order.
    pub fn select(&self, ids: &[String]) -> Result<SegDataset> {
        let index: Vec<i64> = ids
            .iter()
            .map(|id| {
                self.ids
                    .iter()
                    .position(|x| x == id)
                    .map(|i| i as i64)
                    .with_context(|| format!("case '{id}' not in the dataset"))
            })
            .collect::<Result<_>>()?;
        let idx = Tensor::from_slice(&index);
        Ok(SegDataset::new(
            ids.to_vec(),
            self.images.index_select(0, &idx),
            self.masks.index_select(0, &idx),
            self.labels.clone(),
        ))
    }
}
