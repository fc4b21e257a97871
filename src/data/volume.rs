//! 3-D volumes: NIfTI read/write that keeps the geometry (affine, spacing), per-volume intensity
//! normalisation, the centred crop/pad to a fixed training shape with its exact inverse, and
//! loading a folder of image/label volumes as a [`SegDataset`].
use super::check::{CheckReport, Stats, VolumeStats};
use super::files::{nifti_files, pair_by_id, refuse_fatal, unusable, Folders, Pair, Problem, Side};
use super::set::{LoadOptions, SegDataset};
use crate::runtime::write_atomic_with;
use anyhow::{anyhow, bail, Context, Result};
use nifti::{IntoNdArray, NiftiHeader, NiftiObject, ReaderOptions};
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::path::Path;
use tch::Tensor;

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

    /// How many voxels are NaN or infinite, named as a problem when any is.
    pub fn non_finite(&self) -> Option<String> {
        let bad = self.data.iter().filter(|v| !v.is_finite()).count();
        (bad > 0).then(|| format!("{bad} voxels are NaN or infinite; fix the export"))
    }

    /// Where this volume's grid differs from `other`'s beyond rounding: the voxel spacing, or
    /// the voxel-to-world transform of a code both headers set (sform rows, or qform
    /// quaternion and offset). `None` when they agree.
    pub fn geometry_differs(&self, other: &Volume) -> Option<String> {
        let (a, b) = (&self.header, &other.header);
        let close =
            |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| (p - q).abs() <= 1e-3 + 1e-4 * p.abs().max(q.abs()));
        if !close(&a.pixdim[1..4], &b.pixdim[1..4]) {
            return Some(format!("spacing {:?} vs {:?} mm", &a.pixdim[1..4], &b.pixdim[1..4]));
        }
        let rows = |h: &NiftiHeader| [h.srow_x, h.srow_y, h.srow_z].concat();
        if a.sform_code > 0 && b.sform_code > 0 && !close(&rows(a), &rows(b)) {
            return Some(format!("sform {:?} vs {:?}", rows(a), rows(b)));
        }
        let quatern = |h: &NiftiHeader| [h.quatern_b, h.quatern_c, h.quatern_d, h.quatern_x, h.quatern_y, h.quatern_z];
        if a.qform_code > 0 && b.qform_code > 0 && !close(&quatern(a), &quatern(b)) {
            return Some(format!("qform (b, c, d, offset) {:?} vs {:?}", quatern(a), quatern(b)));
        }
        None
    }
}

/// Reads a NIfTI volume; errors name the file.
pub fn read_volume(path: &Path) -> Result<Volume> {
    decode_volume(path).with_context(|| path.display().to_string())
}

fn decode_volume(path: &Path) -> Result<Volume> {
    let obj = ReaderOptions::new()
        .read_file(path)
        .map_err(|e| anyhow!("cannot read NIfTI ({e}); re-export it as .nii.gz"))?;
    let header = obj.header().clone();
    let array = obj.into_volume().into_ndarray::<f32>().map_err(|e| anyhow!("cannot decode voxels ({e})"))?;
    let s = array.shape().to_vec();
    if s.len() != 3 {
        bail!("{}-D image; genseg's 3-D mode takes single-channel 3-D volumes", s.len());
    }
    Ok(Volume { data: array.iter().copied().collect(), shape: [s[0], s[1], s[2]], header })
}

/// A label map: voxel values must be non-negative integers. Errors name the file.
pub fn read_labels(path: &Path) -> Result<(Vec<u32>, Volume)> {
    decode_labels(path).with_context(|| path.display().to_string())
}

fn decode_labels(path: &Path) -> Result<(Vec<u32>, Volume)> {
    let v = decode_volume(path)?;
    let labels = v
        .data
        .iter()
        .map(|&x| {
            if x < 0.0 || x.fract() != 0.0 {
                bail!("voxel value {x} is not a label (non-negative integer); give a label map");
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

/// Intensities scaled to [0, 1] between the volume's 0.5th and 99.5th percentiles (clipped), so
/// scanners and sequences with different ranges look alike to the networks.
pub fn normalize_intensity(data: &[f32]) -> Vec<f32> {
    let mut sorted: Vec<f32> = data.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return vec![0.0; data.len()];
    }
    sorted.sort_by(f32::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    let (lo, hi) = (at(0.005), at(0.995));
    let range = if hi > lo { hi - lo } else { 1.0 };
    data.iter().map(|&v| if v.is_finite() { ((v - lo) / range).clamp(0.0, 1.0) } else { 0.0 }).collect()
}

/// Image/label-map pairs by case id; an image without a label map (or the reverse) is a
/// problem naming the file.
pub fn pair_volumes(root: &Path) -> Result<(Vec<Pair>, Vec<Problem>)> {
    let folders = Folders::of(root)?;
    let (images, labels) = (nifti_files(&folders.images)?, nifti_files(&folders.masks)?);
    if images.is_empty() {
        bail!("{}: no NIfTI volumes found; put images/*.nii.gz and masks/*.nii.gz there", root.display());
    }
    Ok(pair_by_id(images, labels, |side, id| match side {
        Side::First => (format!("no label volume for case '{id}'; add masks/{id}.nii.gz or move the image out"), true),
        Side::Second => {
            (format!("no image volume for case '{id}'; add images/{id}.nii.gz or move the label map out"), true)
        }
    }))
}

struct LoadedVolume {
    image: Vec<f32>,
    labels: Vec<u32>,
}

/// An image and its label map, refused (naming the label file) unless they share a grid.
fn read_pair(pair: &Pair) -> std::result::Result<(Volume, Vec<u32>), Problem> {
    let img = decode_volume(&pair.first).map_err(|e| Problem::error(&pair.first, format!("{e:#}")))?;
    let (labels, lab) = decode_labels(&pair.second).map_err(|e| Problem::error(&pair.second, format!("{e:#}")))?;
    if let Some(problem) = img.non_finite() {
        return Err(Problem::error(&pair.first, problem));
    }
    if img.shape != lab.shape {
        let message = format!(
            "label map is {:?} but its image {} is {:?}; export both on the same grid",
            lab.shape,
            pair.first.display(),
            img.shape
        );
        return Err(Problem::error(&pair.second, message));
    }
    if let Some(how) = lab.geometry_differs(&img) {
        let message =
            format!("label map's geometry differs from its image's ({how}); resample it onto the image's grid");
        return Err(Problem::error(&pair.second, message));
    }
    Ok((img, labels))
}

/// The network's view of a volume, the same in training and prediction: intensities normalised,
/// then centre-cropped/padded to `shape`; the crop is returned to undo it.
pub fn network_input(volume: &Volume, shape: [usize; 3]) -> (CropPad, Vec<f32>) {
    let crop = CropPad::centered(volume.shape, shape);
    let image = crop.apply(&normalize_intensity(&volume.data));
    (crop, image)
}

fn load_pair(pair: &Pair, shape: [usize; 3]) -> std::result::Result<LoadedVolume, Problem> {
    let (img, labels) = read_pair(pair)?;
    let (crop, image) = network_input(&img, shape);
    let labels: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
    Ok(LoadedVolume { image, labels: crop.apply(&labels).iter().map(|&l| l as u32).collect() })
}

/// Reads every pair and reports shapes, spacings, labels and what the crop to the training shape
/// loses.
pub fn check(root: &Path, opts: &LoadOptions) -> Result<CheckReport> {
    let (pairs, mut problems) = pair_volumes(root)?;
    let shape = opts.volume.shape;
    let results: Vec<_> = pairs.par_iter().map(read_pair).collect();
    let mut stats = VolumeStats {
        shape_min: [usize::MAX; 3],
        shape_max: [0; 3],
        spacing_min: [f64::INFINITY; 3],
        spacing_max: [0.0; 3],
        labels: BTreeSet::new(),
        training_shape: shape,
        cropped_foreground: 0.0,
    };
    let (mut usable, mut fg, mut kept) = (0, 0usize, 0usize);
    for r in results {
        match r {
            Ok((img, labels)) => {
                usable += 1;
                let spacing = img.spacing();
                for (a, (&side, &step)) in img.shape.iter().zip(&spacing).enumerate() {
                    stats.shape_min[a] = stats.shape_min[a].min(side);
                    stats.shape_max[a] = stats.shape_max[a].max(side);
                    stats.spacing_min[a] = stats.spacing_min[a].min(step);
                    stats.spacing_max[a] = stats.spacing_max[a].max(step);
                }
                stats.labels.extend(labels.iter().copied().filter(|&l| l > 0));
                let fgv: Vec<f32> = labels.iter().map(|&l| (l > 0) as u8 as f32).collect();
                fg += fgv.iter().filter(|&&v| v > 0.0).count();
                kept += CropPad::centered(img.shape, shape).apply(&fgv).iter().filter(|&&v| v > 0.0).count();
            }
            Err(p) => problems.push(p),
        }
    }
    stats.cropped_foreground = if fg == 0 { 0.0 } else { 1.0 - kept as f64 / fg as f64 };
    if usable > 0 && stats.labels.is_empty() {
        problems.push(Problem::error(root, "every label map is empty: there is nothing to segment; check the export"));
    }
    Ok(CheckReport {
        root: root.to_path_buf(),
        pairs: pairs.len(),
        usable_pairs: usable,
        stats: Stats::Volumes(stats),
        problems,
    })
}

/// Loads every image/label pair: intensities normalised per volume, centred crop/pad to the
/// training shape, labels split into one binary channel each (or merged with `binarize`).
pub fn load_dataset(root: &Path, opts: &LoadOptions) -> Result<SegDataset> {
    let (pairs, problems) = pair_volumes(root)?;
    refuse_fatal(unusable(root), &problems)?;
    let (shape, binarize) = (opts.volume.shape, opts.binarize);
    let loaded: Vec<std::result::Result<LoadedVolume, Problem>> =
        pairs.par_iter().map(|p| load_pair(p, shape)).collect();
    let problems: Vec<Problem> = loaded.iter().filter_map(|r| r.as_ref().err().cloned()).collect();
    refuse_fatal(unusable(root), &problems)?;
    let loaded: Vec<LoadedVolume> = loaded.into_iter().flatten().collect();
    let found: BTreeSet<u32> = loaded.iter().flat_map(|v| v.labels.iter().copied()).filter(|&l| l > 0).collect();
    let labels = if binarize {
        vec![1]
    } else {
        match &opts.volume.labels {
            Some(wanted) => {
                if let Some(missing) = wanted.iter().find(|l| !found.contains(l)) {
                    bail!("{}: label {missing} occurs in no label map (found {found:?}); fix --labels", root.display());
                }
                wanted.clone()
            }
            None => found.into_iter().collect(),
        }
    };
    if labels.is_empty() {
        bail!("{}: every label map is empty; nothing to segment", root.display());
    }
    let voxels: usize = shape.iter().product();
    let mut masks = Vec::with_capacity(loaded.len() * labels.len() * voxels);
    for v in &loaded {
        for &l in &labels {
            masks.extend(
                v.labels.iter().map(|&x| if (binarize && x > 0) || (!binarize && x == l) { 1.0f32 } else { 0.0 }),
            );
        }
    }
    let [d, h, w] = shape.map(|s| s as i64);
    let n = loaded.len() as i64;
    let images: Vec<f32> = loaded.iter().flat_map(|v| v.image.iter().copied()).collect();
    Ok(SegDataset::new(
        pairs.into_iter().map(|p| p.id).collect(),
        Tensor::from_slice(&images).view([n, 1, d, h, w]),
        Tensor::from_slice(&masks).view([n, labels.len() as i64, d, h, w]),
        labels,
    ))
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
                        out[(ti as usize * to[1] + tj as usize) * to[2] + tk as usize] =
                            data[(i * from[1] + j) * from[2] + k];
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
