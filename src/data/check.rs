//! What `genseg check` reports, for 2-D and 3-D sets alike: one report type, one printer.
use super::files::{Layout, Problem};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub root: PathBuf,
    /// Cases with both an image and a mask.
    pub pairs: usize,
    /// Pairs that decoded.
    pub usable_pairs: usize,
    pub stats: Stats,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Serialize)]
pub enum Stats {
    Images(ImageStats),
    Volumes(VolumeStats),
}

#[derive(Debug, Serialize)]
pub struct ImageStats {
    pub layout: Layout,
    pub channels: usize,
    pub color_images: usize,
    /// Images with 16 bits a channel, each scaled to 8 bits by its brightest value.
    pub sixteen_bit_images: usize,
    pub width_range: (u32, u32),
    pub height_range: (u32, u32),
    /// Distinct mask values (before binarisation) -> number of masks with them.
    pub mask_value_sets: BTreeMap<String, usize>,
    pub empty_masks: usize,
    pub mean_foreground_fraction: f64,
}

#[derive(Debug, Serialize)]
pub struct VolumeStats {
    pub shape_min: [usize; 3],
    pub shape_max: [usize; 3],
    pub spacing_min: [f64; 3],
    pub spacing_max: [f64; 3],
    pub labels: BTreeSet<u32>,
    /// The shape volumes are cropped/padded to for training.
    pub training_shape: [usize; 3],
    /// Foreground voxels outside the training shape, as a fraction of all foreground.
    pub cropped_foreground: f64,
}

impl CheckReport {
    pub fn usable(&self) -> bool {
        self.usable_pairs > 0 && !self.problems.iter().any(|p| p.fatal)
    }

    pub fn image_stats(&self) -> Option<&ImageStats> {
        match &self.stats {
            Stats::Images(s) => Some(s),
            Stats::Volumes(_) => None,
        }
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.stats {
            Stats::Images(s) => format!("{:?}", s.layout),
            Stats::Volumes(_) => "NIfTI volumes".into(),
        };
        writeln!(f, "dataset {} ({kind})", self.root.display())?;
        writeln!(f, "pairs: {} found, {} decoded", self.pairs, self.usable_pairs)?;
        match &self.stats {
            Stats::Images(s) => {
                writeln!(f, "channels used: {} ({} colour images)", s.channels, s.color_images)?;
                if s.sixteen_bit_images > 0 {
                    writeln!(
                        f,
                        "16-bit images: {} (each scaled to 8 bits by its brightest value)",
                        s.sixteen_bit_images
                    )?;
                }
                let (w, h) = (s.width_range, s.height_range);
                writeln!(f, "widths {}..{}, heights {}..{}", w.0, w.1, h.0, h.1)?;
                writeln!(f, "mask values (before binarisation): {:?}", s.mask_value_sets)?;
                writeln!(
                    f,
                    "empty masks: {}, mean foreground fraction {:.3}",
                    s.empty_masks, s.mean_foreground_fraction
                )?;
            }
            Stats::Volumes(s) => {
                writeln!(
                    f,
                    "shapes {:?}..{:?} voxels, spacing {:?}..{:?} mm",
                    s.shape_min, s.shape_max, s.spacing_min, s.spacing_max
                )?;
                writeln!(f, "labels found: {:?}", s.labels)?;
                let lost = 100.0 * s.cropped_foreground;
                writeln!(
                    f,
                    "training shape {:?}: {lost:.3} % of foreground voxels fall outside the centred crop",
                    s.training_shape
                )?;
            }
        }
        for p in &self.problems {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}
