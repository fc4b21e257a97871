//! 3-D volumes: NIfTI read/write that keeps the geometry (affine, spacing), and the centred
//! crop/pad to a fixed training shape with its exact inverse.
use crate::runtime::write_atomic_with;
use anyhow::{anyhow, bail, Result};
use nifti::{IntoNdArray, NiftiHeader, NiftiObject, ReaderOptions};
use std::path::Path;

pub struct Volume {
    /// Voxels in logical (row-major) order of `shape` = NIfTI axes (i, j, k).
    pub data: Vec<f32>,
    pub shape: [usize; 3],
    /// The file's header: affine (sform/qform), pixdim and codes travel with the volume.
    pub header: NiftiHeader,
}

impl Volume {
    pub fn spacing(&self) -> [f64; 3] {
        [1, 2, 3].map(|i| self.header.pixdim[i].abs() as f64)
    }
}

pub fn read_volume(path: &Path) -> Result<Volume> {
    let obj = ReaderOptions::new()
        .read_file(path)
        .map_err(|e| anyhow!("{}: cannot read NIfTI ({e}); re-export it as .nii.gz", path.display()))?;
    let header = obj.header().clone();
    let array = obj.into_volume().into_ndarray::<f32>().map_err(|e| anyhow!("{}: cannot decode voxels ({e})", path.display()))?;
    let s = array.shape().to_vec();
    if s.len() != 3 {
        bail!("{}: {}-D image; genseg's 3-D mode takes single-channel 3-D volumes", path.display(), s.len());
    }
    Ok(Volume { data: array.iter().copied().collect(), shape: [s[0], s[1], s[2]], header })
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

/// A label map: voxel values must be non-negative integers.
pub fn read_labels(path: &Path) -> Result<(Vec<u32>, Volume)> {
    let v = read_volume(path)?;
    let labels = v
        .data
        .iter()
        .map(|&x| {
            if x < 0.0 || x.fract() != 0.0 {
                bail!("{}: voxel value {x} is not a label (non-negative integer); give a label map", path.display());
            }
            Ok(x as u32)
        })
        .collect::<Result<Vec<u32>>>()?;
    Ok((labels, v))
}

/// Writes `data` (logical order of `shape`) with `reference`'s geometry, through a temp file.
pub fn write_volume(path: &Path, data: &[f32], shape: [usize; 3], reference: &NiftiHeader) -> Result<()> {
    let array = ndarray::Array::from_shape_vec(ndarray::IxDyn(&shape), data.to_vec())?;
    write_atomic_with(path, |tmp| {
        nifti::writer::WriterOptions::new(tmp)
            .reference_header(reference)
            .write_nifti(&array)
            .map_err(|e| anyhow!("cannot write {}: {e}", tmp.display()))
    })
}

/// Centred crop/pad from `original` to `target`; `offsets[a]` is where the original's first
/// voxel lands in the target (negative when cropping).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CropPad {
    pub original: [usize; 3],
    pub target: [usize; 3],
    pub offsets: [i64; 3],
}

impl CropPad {
    pub fn centered(original: [usize; 3], target: [usize; 3]) -> CropPad {
        let offsets = [0, 1, 2].map(|a| (target[a] as i64 - original[a] as i64).div_euclid(2));
        CropPad { original, target, offsets }
    }

    fn copy(data: &[f32], from: [usize; 3], to: [usize; 3], shift: [i64; 3]) -> Vec<f32> {
        let mut out = vec![0.0; to.iter().product()];
        for i in 0..from[0] {
            let ti = i as i64 + shift[0];
            if ti < 0 || ti >= to[0] as i64 {
                continue;
            }
            for j in 0..from[1] {
                let tj = j as i64 + shift[1];
                if tj < 0 || tj >= to[1] as i64 {
                    continue;
                }
                for k in 0..from[2] {
                    let tk = k as i64 + shift[2];
                    if tk >= 0 && tk < to[2] as i64 {
                        out[(ti as usize * to[1] + tj as usize) * to[2] + tk as usize] = data[(i * from[1] + j) * from[2] + k];
                    }
                }
            }
        }
        out
    }

    /// original -> target (padding with 0).
    pub fn apply(&self, data: &[f32]) -> Vec<f32> {
        Self::copy(data, self.original, self.target, self.offsets)
    }

    /// target -> original geometry; voxels cropped away by `apply` come back as 0.
    pub fn invert(&self, data: &[f32]) -> Vec<f32> {
        Self::copy(data, self.target, self.original, self.offsets.map(|o| -o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_then_invert_is_exact_and_crop_keeps_the_centre() {
        let shape = [5, 7, 4];
        let data: Vec<f32> = (0..140).map(|v| v as f32 + 1.0).collect();
        let grow = CropPad::centered(shape, [8, 8, 8]);
        assert_eq!(grow.invert(&grow.apply(&data)), data);
        let shrink = CropPad::centered(shape, [3, 7, 2]);
        let back = shrink.invert(&shrink.apply(&data));
        // Kept voxels are unchanged, cropped ones are 0, and exactly 3*7*2 survive.
        assert_eq!(back.iter().filter(|&&v| v != 0.0).count(), 42);
        assert!(back.iter().zip(&data).all(|(b, d)| *b == 0.0 || b == d));
    }
}
