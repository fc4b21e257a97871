//! NIfTI label volumes (.nii / .nii.gz) for evaluation: voxel labels, shape and spacing.
use anyhow::{anyhow, Result};
use nifti::{IntoNdArray, NiftiObject, ReaderOptions};
use std::path::Path;

pub struct LabelVolume {
    /// Labels in logical (row-major) order of `shape`.
    pub labels: Vec<u32>,
    /// NIfTI axis order (i, j, k).
    pub shape: Vec<usize>,
    /// Voxel size in mm along each axis (pixdim).
    pub spacing: Vec<f64>,
}

pub fn is_nifti(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    name.ends_with(".nii") || name.ends_with(".nii.gz")
}

/// Case id of a NIfTI file: the name without .nii or .nii.gz.
pub fn stem(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    name.strip_suffix(".gz").unwrap_or(&name).strip_suffix(".nii").unwrap_or(&name).to_string()
}

pub fn read_labels(path: &Path) -> Result<LabelVolume> {
    let obj = ReaderOptions::new()
        .read_file(path)
        .map_err(|e| anyhow!("{}: cannot read NIfTI ({e}); re-export it as .nii.gz", path.display()))?;
    let header = obj.header().clone();
    let array = obj.into_volume().into_ndarray::<f32>().map_err(|e| anyhow!("{}: cannot decode voxels ({e})", path.display()))?;
    let shape = array.shape().to_vec();
    let mut labels = Vec::with_capacity(array.len());
    for &v in array.iter() {
        if v < 0.0 || v.fract() != 0.0 {
            return Err(anyhow!("{}: voxel value {v} is not a label (non-negative integer); give a label map", path.display()));
        }
        labels.push(v as u32);
    }
    let spacing = (1..=shape.len()).map(|i| header.pixdim[i].abs() as f64).map(|s| if s > 0.0 { s } else { 1.0 }).collect();
    Ok(LabelVolume { labels, shape, spacing })
}
