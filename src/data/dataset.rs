//! Finding, pairing, checking and loading 2-D image/mask datasets.
//!
//! Two layouts are understood: `images/` + `masks/` with matching stems (mask suffixes such as
//! `_mask` are stripped), and nnU-Net's raw layout (`imagesTr/{case}_0000.ext`, `labelsTr/{case}.ext`,
//! `dataset.json`).
use super::image_io::{self, has_image_extension};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Mask file suffixes stripped to find the image a mask belongs to.
pub const DEFAULT_MASK_SUFFIXES: &[&str] = &["_mask", "_segmentation", "_Segmentation", "_lesion", "_manual1"];

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Square side every image and mask is resized to.
    pub size: u32,
    /// 1 or 3; `None` takes the first image's (grey -> 1, colour -> 3).
    pub channels: Option<usize>,
    pub mask_suffixes: Vec<String>,
    /// Threshold masks with more than two values instead of refusing them.
    pub binarize: bool,
    /// How NIfTI volumes are brought to a training shape.
    pub volume: super::volume::VolumeOptions,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            size: 256,
            channels: None,
            mask_suffixes: DEFAULT_MASK_SUFFIXES.iter().map(|s| s.to_string()).collect(),
            binarize: false,
            volume: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Layout {
    ImagesMasks,
    NnUnetRaw,
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub file: PathBuf,
    pub message: String,
    /// Fatal problems make the set unusable; the rest are warnings.
    pub fatal: bool,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = if self.fatal { "error" } else { "warning" };
        write!(f, "{level}: {}: {}", self.file.display(), self.message)
    }
}

#[derive(Debug, Clone)]
pub struct CaseFiles {
    pub id: String,
    pub image: PathBuf,
    pub mask: PathBuf,
}

/// The files of a dataset folder, paired, with every problem found on the way.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub root: PathBuf,
    pub layout: Layout,
    pub cases: Vec<CaseFiles>,
    pub problems: Vec<Problem>,
}

fn list_files(dir: &Path, problems: &mut Vec<Problem>) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        let hidden = path.file_name().map(|n| n.to_string_lossy().starts_with('.')).unwrap_or(true);
        if hidden || path.is_dir() {
            continue;
        }
        if has_image_extension(&path) {
            files.push(path);
        } else {
            problems.push(Problem {
                file: path.clone(),
                message: format!(
                    "unknown extension; supported: {}. Convert the file or move it out of {}",
                    image_io::IMAGE_EXTENSIONS.join(", "),
                    dir.display()
                ),
                fatal: true,
            });
        }
    }
    files.sort();
    if files.is_empty() {
        problems.push(Problem {
            file: dir.to_path_buf(),
            message: "folder holds no images; put the image files here".into(),
            fatal: true,
        });
    }
    Ok(files)
}

fn stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default()
}

/// Pairs the files of a dataset folder; decoding is left to [`read_cases`].
pub fn scan(root: &Path, opts: &LoadOptions) -> Result<Inventory> {
    if !root.is_dir() {
        bail!("{}: not a folder; give a dataset folder with images/ and masks/", root.display());
    }
    let (layout, image_dir, mask_dir) = if root.join("images").is_dir() && root.join("masks").is_dir() {
        (Layout::ImagesMasks, root.join("images"), root.join("masks"))
    } else if root.join("imagesTr").is_dir() && root.join("labelsTr").is_dir() {
        (Layout::NnUnetRaw, root.join("imagesTr"), root.join("labelsTr"))
    } else {
        bail!(
            "{}: expected images/ and masks/ (or nnU-Net's imagesTr/ and labelsTr/) inside; create them and put matching files in",
            root.display()
        );
    };
    let mut problems = Vec::new();
    if layout == Layout::NnUnetRaw && !root.join("dataset.json").is_file() {
        problems.push(Problem {
            file: root.join("dataset.json"),
            message: "missing (nnU-Net layout); labels are assumed binary".into(),
            fatal: false,
        });
    }
    let images = list_files(&image_dir, &mut problems)?;
    let masks = list_files(&mask_dir, &mut problems)?;

    let mut by_id: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in images {
        let mut id = stem(&path);
        if layout == Layout::NnUnetRaw {
            match id.rsplit_once('_') {
                Some((case, "0000")) => id = case.to_string(),
                Some((_, ch)) if ch.len() == 4 && ch.chars().all(|c| c.is_ascii_digit()) => {
                    problems.push(Problem {
                        file: path.clone(),
                        message: "extra input channel ignored (2-D mode uses channel _0000)".into(),
                        fatal: false,
                    });
                    continue;
                }
                _ => {
                    problems.push(Problem {
                        file: path.clone(),
                        message: "nnU-Net images must be named {case}_0000.ext; rename it".into(),
                        fatal: true,
                    });
                    continue;
                }
            }
        }
        if let Some(previous) = by_id.insert(id.clone(), path.clone()) {
            problems.push(Problem {
                file: path,
                message: format!("same case id '{id}' as {}; keep one of them", previous.display()),
                fatal: true,
            });
        }
    }
    let mut mask_for: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in masks {
        let s = stem(&path);
        // The longest suffix whose removal names an existing image wins; else the plain stem.
        let id = opts
            .mask_suffixes
            .iter()
            .filter_map(|suf| s.strip_suffix(suf.as_str()).filter(|_| !suf.is_empty()))
            .filter(|id| by_id.contains_key(*id))
            .min_by_key(|id| id.len())
            .map(str::to_string)
            .unwrap_or(s);
        if !by_id.contains_key(&id) {
            problems.push(Problem { file: path, message: "mask without a matching image; ignored".into(), fatal: false });
            continue;
        }
        if let Some(previous) = mask_for.insert(id.clone(), path.clone()) {
            problems.push(Problem {
                file: path,
                message: format!("second mask for case '{id}' (first: {}); keep one", previous.display()),
                fatal: true,
            });
        }
    }
    let mut cases = Vec::new();
    for (id, image) in by_id {
        match mask_for.remove(&id) {
            Some(mask) => cases.push(CaseFiles { id, image, mask }),
            None => problems.push(Problem {
                file: image,
                message: format!(
                    "no mask in {} (looked for {id}.ext and {id}{{{}}}.ext); add the mask or remove the image",
                    mask_dir.display(),
                    opts.mask_suffixes.join(",")
                ),
                fatal: true,
            }),
        }
    }
    Ok(Inventory { root: root.to_path_buf(), layout, cases, problems })
}

/// One decoded case, resized to the working size.
pub struct LoadedCase {
    pub id: String,
    pub image: Vec<f32>,
    pub mask: Vec<f32>,
    pub original_size: (u32, u32),
    pub color: bool,
    pub mask_values: Vec<u16>,
}

fn read_case(case: &CaseFiles, channels: usize, opts: &LoadOptions) -> Result<(LoadedCase, Vec<Problem>)> {
    let img = image_io::decode(&case.image)?;
    let mask = image_io::decode_mask(&case.mask, opts.binarize)?;
    let (w, h) = (img.width(), img.height());
    if (mask.mask.width(), mask.mask.height()) != (w, h) {
        bail!(
            "{}: mask is {}x{} but its image {} is {w}x{h}; export the mask at the image's size",
            case.mask.display(),
            mask.mask.width(),
            mask.mask.height(),
            case.image.display()
        );
    }
    let mut problems = Vec::new();
    if mask.thresholded {
        problems.push(Problem {
            file: case.mask.clone(),
            message: format!("{} grey values (lossy file) thresholded at half range", mask.values.len()),
            fatal: false,
        });
    }
    let loaded = LoadedCase {
        id: case.id.clone(),
        image: image_io::image_to_chw(&img, channels, opts.size),
        mask: image_io::mask_to_hw(&mask.mask, opts.size),
        original_size: (w, h),
        color: image_io::is_color(&img),
        mask_values: mask.values,
    };
    Ok((loaded, problems))
}

/// Decodes every case in parallel; a case that fails becomes a fatal problem naming its file.
pub fn read_cases(inv: &Inventory, opts: &LoadOptions) -> Result<(Vec<LoadedCase>, Vec<Problem>, usize)> {
    let first = inv.cases.first().context("no usable image/mask pairs")?;
    let channels = match opts.channels {
        Some(c) => c,
        None => match image_io::decode(&first.image) {
            Ok(img) if image_io::is_color(&img) => 3,
            Ok(_) => 1,
            Err(_) => 3,
        },
    };
    let results: Vec<_> = inv.cases.par_iter().map(|c| (c, read_case(c, channels, opts))).collect();
    let mut cases = Vec::new();
    let mut problems = inv.problems.clone();
    for (case, result) in results {
        match result {
            Ok((loaded, p)) => {
                problems.extend(p);
                cases.push(loaded);
            }
            Err(e) => problems.push(Problem { file: case.image.clone(), message: format!("{e:#}"), fatal: true }),
        }
    }
    Ok((cases, problems, channels))
}

/// A loaded dataset: images `[N, C, spatial...]` in [0, 1] and masks `[N, L, spatial...]` in
/// {0, 1}, one channel per foreground label (2-D: one, `[N, 1, S, S]`; 3-D: `[N, L, D, H, W]`).
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

impl SegDataset {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// From stacked tensors; shape, channels and labels are read off them.
    pub fn new(ids: Vec<String>, images: Tensor, masks: Tensor, labels: Vec<u32>) -> SegDataset {
        let size = images.size();
        SegDataset { ids, channels: size[1] as usize, shape: size[2..].to_vec(), labels, images, masks }
    }

    pub fn from_cases(cases: Vec<LoadedCase>, channels: usize, size: u32) -> SegDataset {
        let s = size as i64;
        let n = cases.len() as i64;
        let image_data: Vec<f32> = cases.iter().flat_map(|c| c.image.iter().copied()).collect();
        let mask_data: Vec<f32> = cases.iter().flat_map(|c| c.mask.iter().copied()).collect();
        SegDataset::new(
            cases.iter().map(|c| c.id.clone()).collect(),
            Tensor::from_slice(&image_data).view([n, channels as i64, s, s]),
            Tensor::from_slice(&mask_data).view([n, 1, s, s]),
            vec![1],
        )
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
                self.ids.iter().position(|x| x == id).map(|i| i as i64).with_context(|| format!("case '{id}' not in the dataset"))
            })
            .collect::<Result<_>>()?;
        let idx = Tensor::from_slice(&index);
        Ok(SegDataset::new(ids.to_vec(), self.images.index_select(0, &idx), self.masks.index_select(0, &idx), self.labels.clone()))
    }
}

/// Scans, decodes and stacks a dataset; any fatal problem aborts with the full list. A folder
/// of NIfTI volumes is loaded as a 3-D set ([`super::volume::load_dataset`]).
pub fn load(root: &Path, opts: &LoadOptions) -> Result<SegDataset> {
    if super::volume::is_volume_dataset(root) {
        return super::volume::load_dataset(root, &opts.volume);
    }
    let inv = scan(root, opts)?;
    let fatal: Vec<String> = inv.problems.iter().filter(|p| p.fatal).map(|p| p.to_string()).collect();
    if !fatal.is_empty() {
        bail!("{} cannot be used ({} problems; `genseg check` lists them all):\n{}", root.display(), fatal.len(), fatal.join("\n"));
    }
    let (cases, problems, channels) = read_cases(&inv, opts)?;
    let fatal: Vec<String> = problems.iter().filter(|p| p.fatal).map(|p| p.to_string()).collect();
    if !fatal.is_empty() {
        bail!("{} cannot be used ({} problems):\n{}", root.display(), fatal.len(), fatal.join("\n"));
    }
    Ok(SegDataset::from_cases(cases, channels, opts.size))
}

/// What `genseg check` prints.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub root: PathBuf,
    pub layout: Layout,
    pub pairs: usize,
    pub usable_pairs: usize,
    pub channels: usize,
    pub color_images: usize,
    pub width_range: (u32, u32),
    pub height_range: (u32, u32),
    pub mask_value_sets: BTreeMap<String, usize>,
    pub empty_masks: usize,
    pub mean_foreground_fraction: f64,
    pub problems: Vec<Problem>,
}

impl CheckReport {
    pub fn usable(&self) -> bool {
        self.usable_pairs > 0 && !self.problems.iter().any(|p| p.fatal)
    }
}

pub fn check(root: &Path, opts: &LoadOptions) -> Result<CheckReport> {
    let inv = scan(root, opts)?;
    let pairs = inv.cases.len();
    let (cases, mut problems, channels) = if pairs > 0 { read_cases(&inv, opts)? } else { (vec![], inv.problems.clone(), 0) };
    let originally_empty = |c: &LoadedCase| c.mask_values == [0];
    for c in &cases {
        if !originally_empty(c) && c.mask.iter().all(|&v| v == 0.0) {
            let files = inv.cases.iter().find(|f| f.id == c.id).expect("decoded cases come from the inventory");
            problems.push(Problem {
                file: files.mask.clone(),
                message: format!("foreground vanishes when resized to {0}x{0}; raise --size", opts.size),
                fatal: false,
            });
        }
    }
    let mut mask_value_sets = BTreeMap::new();
    for c in &cases {
        *mask_value_sets.entry(format!("{:?}", c.mask_values)).or_insert(0) += 1;
    }
    let fg: Vec<f64> = cases.iter().map(|c| c.mask.iter().map(|&v| v as f64).sum::<f64>() / c.mask.len() as f64).collect();
    let range = |f: fn(&LoadedCase) -> u32| {
        (cases.iter().map(f).min().unwrap_or(0), cases.iter().map(f).max().unwrap_or(0))
    };
    Ok(CheckReport {
        root: root.to_path_buf(),
        layout: inv.layout,
        pairs,
        usable_pairs: cases.len(),
        channels,
        color_images: cases.iter().filter(|c| c.color).count(),
        width_range: range(|c| c.original_size.0),
        height_range: range(|c| c.original_size.1),
        mask_value_sets,
        empty_masks: cases.iter().filter(|c| originally_empty(c)).count(),
        mean_foreground_fraction: if fg.is_empty() { 0.0 } else { fg.iter().sum::<f64>() / fg.len() as f64 },
        problems,
    })
}

/// Images of a folder (or one file) for prediction, with their original sizes.
pub fn load_images(input: &Path, channels: usize, size: u32) -> Result<(Vec<PathBuf>, Tensor, Vec<(u32, u32)>)> {
    let files: Vec<PathBuf> = if input.is_dir() {
        let mut problems = Vec::new();
        let files = list_files(input, &mut problems)?;
        if let Some(p) = problems.iter().find(|p| p.fatal) {
            bail!("{p}");
        }
        files
    } else if input.is_file() {
        vec![input.to_path_buf()]
    } else {
        bail!("{}: no such file or folder; give an image or a folder of images", input.display());
    };
    let decoded: Vec<Result<(Vec<f32>, (u32, u32))>> = files
        .par_iter()
        .map(|f| {
            let img = image_io::decode(f)?;
            Ok((image_io::image_to_chw(&img, channels, size), (img.width(), img.height())))
        })
        .collect();
    let mut data = Vec::new();
    let mut sizes = Vec::new();
    for d in decoded {
        let (pixels, wh) = d?;
        data.extend(pixels);
        sizes.push(wh);
    }
    let n = files.len() as i64;
    let t = Tensor::from_slice(&data).view([n, channels as i64, size as i64, size as i64]);
    Ok((files, t, sizes))
}

/// Pairs two folders of masks (predictions and references) by case id; every unmatched file is
/// an error naming it, so an evaluation never silently skips a case.
pub fn pair_mask_folders(pred: &Path, reference: &Path, suffixes: &[String]) -> Result<Vec<(String, PathBuf, PathBuf)>> {
    let mut problems = Vec::new();
    for dir in [pred, reference] {
        if !dir.is_dir() {
            bail!("{}: not a folder of masks", dir.display());
        }
    }
    let strip = |p: &Path| {
        let s = stem(p);
        suffixes.iter().filter_map(|suf| s.strip_suffix(suf.as_str())).min_by_key(|id| id.len()).map(str::to_string).unwrap_or(s)
    };
    let preds: BTreeMap<String, PathBuf> = list_files(pred, &mut problems)?.into_iter().map(|p| (strip(&p), p)).collect();
    let refs: BTreeMap<String, PathBuf> = list_files(reference, &mut problems)?.into_iter().map(|p| (strip(&p), p)).collect();
    for (id, p) in &preds {
        if !refs.contains_key(id) {
            problems.push(Problem { file: p.clone(), message: format!("no reference mask for case '{id}' in {}", reference.display()), fatal: true });
        }
    }
    for (id, r) in &refs {
        if !preds.contains_key(id) {
            problems.push(Problem { file: r.clone(), message: format!("no predicted mask for case '{id}' in {}", pred.display()), fatal: true });
        }
    }
    if let Some(p) = problems.iter().find(|p| p.fatal) {
        let all: Vec<String> = problems.iter().filter(|p| p.fatal).map(|p| p.to_string()).collect();
        bail!("{} problem(s) pairing masks, first: {p}\n{}", all.len(), all.join("\n"));
    }
    Ok(preds.into_iter().map(|(id, p)| { let r = refs[&id].clone(); (id, p, r) }).collect())
}
