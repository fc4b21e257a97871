//! Pairing, checking and loading 2-D image/mask datasets.
//!
//! Two layouts are understood ([`Folders`]): `images/` + `masks/` with matching stems (mask
//! suffixes such as `_mask` are stripped), and nnU-Net's raw layout (`imagesTr/{case}_0000.ext`,
//! `_0001.ext`... one grey image per input channel, `labelsTr/{case}.ext`, `dataset.json` with the
//! channel names, label names and file ending checked against the files).
use super::check::{CheckReport, ImageStats, Stats};
use super::files::{mask_case_id, pair_by_id, refuse_fatal, stem, unusable, Folders, Layout, Pair, Problem, Side};
use super::image_io::{self, has_image_extension};
use super::nnunet;
use super::set::{LoadOptions, SegDataset};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

#[derive(Debug, Clone)]
pub struct CaseFiles {
    pub id: String,
    /// One file per input channel (several only in nnU-Net's layout: `_0000`, `_0001`...).
    pub images: Vec<PathBuf>,
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
    list_files_but(dir, problems, &[])
}

/// [`list_files`] leaving out the files with the extensions `records` (what a tool writes beside
/// its masks: genseg predict's uncertainty.csv, nnU-Net's JSON).
fn list_files_but(dir: &Path, problems: &mut Vec<Problem>, records: &[&str]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        let hidden = crate::data::files::is_system_file(&path);
        let record = path.extension().is_some_and(|e| records.iter().any(|r| e.eq_ignore_ascii_case(r)));
        if hidden || record {
            continue;
        }
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => {}
            Err(e) => {
                problems.push(Problem::error(&path, format!("cannot read it ({e}); fix or remove the file")));
                continue;
            }
        }
        if has_image_extension(&path) {
            files.push(path);
        } else {
            let supported = image_io::IMAGE_EXTENSIONS.join(", ");
            let dicom = match image_io::extension(&path).as_deref() {
                Some("dcm" | "dicom") => " (DICOM: convert a series to NIfTI, e.g. with dcm2niix, or slices to PNG)",
                _ => "",
            };
            let message = format!(
                "unknown extension; supported: {supported}, and NIfTI volumes. Convert the file{dicom} or move it out \
                 of {}",
                dir.display()
            );
            problems.push(Problem::error(&path, message));
        }
    }
    files.sort();
    if files.is_empty() {
        problems.push(Problem::error(dir, "folder holds no images; put the image files here"));
    }
    Ok(files)
}

/// Pairs the files of a dataset folder; decoding is left to [`read_cases`].
pub fn scan(root: &Path, opts: &LoadOptions) -> Result<Inventory> {
    let folders = Folders::of(root)?;
    let layout = folders.layout;
    let mut problems = Vec::new();
    let dataset_json = root.join("dataset.json");
    let described = match layout {
        Layout::ImagesMasks => None,
        Layout::NnUnetRaw => match nnunet::read(root) {
            Ok(None) => {
                problems.push(Problem::warning(&dataset_json, "missing (nnU-Net layout); labels are assumed binary"));
                None
            }
            Ok(Some(d)) => Some(d),
            Err(e) => {
                problems.push(Problem::from_error(&[&dataset_json], &e));
                None
            }
        },
    };
    let images = list_files(&folders.images, &mut problems)?;
    let masks = list_files(&folders.masks, &mut problems)?;

    // Case id -> channel index -> file.
    let mut by_id: BTreeMap<String, BTreeMap<usize, PathBuf>> = BTreeMap::new();
    for path in images {
        let mut id = stem(&path);
        let mut channel = 0;
        if layout == Layout::NnUnetRaw {
            if let Some(ending) = described.as_ref().and_then(|d| d.file_ending.as_deref()) {
                if !path.to_string_lossy().ends_with(ending) {
                    let message =
                        format!("dataset.json's file_ending is {ending}; convert the file or fix file_ending");
                    problems.push(Problem::error(&path, message));
                    continue;
                }
            }
            match id.rsplit_once('_').map(|(case, ch)| (case, ch.parse::<usize>())) {
                Some((case, Ok(ch))) if id.len() - case.len() == 5 => {
                    channel = ch;
                    id = case.to_string();
                }
                _ => {
                    problems.push(Problem::error(&path, "nnU-Net images must be named {case}_0000.ext; rename it"));
                    continue;
                }
            }
        }
        if let Some(previous) = by_id.entry(id.clone()).or_default().insert(channel, path.clone()) {
            problems.push(Problem::error(
                &path,
                format!("same case id '{id}' as {}; keep one of them", previous.display()),
            ));
        }
    }
    // Every case has the channels dataset.json names (or, without it, as many as the first case).
    let expected = described.as_ref().map(|d| d.channels.len()).or_else(|| by_id.values().next().map(|c| c.len()));
    let mut by_id: BTreeMap<String, Vec<PathBuf>> = by_id
        .into_iter()
        .filter_map(|(id, channels)| {
            let want = expected.unwrap_or(1);
            if channels.keys().copied().eq(0..want) || natural_colour_image(&channels, want) {
                return Some((id, channels.into_values().collect()));
            }
            let (_, first) = channels.first_key_value().expect("a case has a file");
            let source = if described.is_some() { "dataset.json lists" } else { "the first case has" };
            let message = format!(
                "case '{id}' has input channels {:?}, {source} {want} ({}); add or remove {id}_XXXX files",
                channels.keys().collect::<Vec<_>>(),
                (0..want).map(|c| format!("_{c:04}")).collect::<Vec<_>>().join(", ")
            );
            problems.push(Problem::error(first, message));
            None
        })
        .collect();
    let mut mask_for: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in masks {
        let id = mask_case_id(&stem(&path), &opts.mask_suffixes, |id| by_id.contains_key(id));
        if let Some(previous) = mask_for.insert(id.clone(), path.clone()) {
            problems.push(Problem::error(
                &path,
                format!("second mask for case '{id}' (first: {}); keep one", previous.display()),
            ));
        }
    }
    let suffixes = opts.mask_suffixes.join(",");
    let mask_dir = folders.masks.display();
    let firsts: BTreeMap<String, PathBuf> = by_id.iter().map(|(id, files)| (id.clone(), files[0].clone())).collect();
    let (pairs, orphans) = pair_by_id(firsts, mask_for, |side, id| {
        match side {
        Side::First => (
            format!("no mask in {mask_dir} (looked for {id}.ext and {id}{{{suffixes}}}.ext); add the mask or remove the image"),
            true,
        ),
        Side::Second => ("mask without a matching image; ignored".into(), false),
    }
    });
    problems.extend(orphans);
    let cases = pairs
        .into_iter()
        .map(|Pair { id, second, .. }| CaseFiles {
            images: by_id.remove(&id).expect("paired ids are image ids"),
            id,
            mask: second,
        })
        .collect();
    Ok(Inventory { root: root.to_path_buf(), layout, cases, problems })
}

/// nnU-Net's natural-image convention: one 2-D image file (`_0000.png`) holds a case's three
/// colour channels, which dataset.json names one by one ("R", "G", "B").
fn natural_colour_image(channels: &BTreeMap<usize, PathBuf>, want: usize) -> bool {
    let natural = |p: &PathBuf| {
        let ext = p.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
        ["png", "jpg", "jpeg", "bmp", "tif", "tiff"].contains(&ext.as_str())
    };
    want == 3 && channels.len() == 1 && channels.get(&0).is_some_and(natural)
}

/// One decoded case, resized to the working size.
pub struct LoadedCase {
    pub id: String,
    pub image: Vec<f32>,
    pub mask: Vec<f32>,
    pub original_size: (u32, u32),
    pub color: bool,
    /// Stored with 16 bits a channel (scaled to 8 by its maximum).
    pub sixteen_bit: bool,
    pub mask_values: Vec<u16>,
}

fn read_case(case: &CaseFiles, channels: usize, opts: &LoadOptions) -> Result<(LoadedCase, Vec<Problem>)> {
    let raw: Vec<_> = case.images.iter().map(|p| image_io::decode(p)).collect::<Result<_>>()?;
    let sixteen_bit = raw.iter().any(image_io::is_16bit);
    let decoded: Vec<_> = raw.into_iter().map(image_io::to_8bit).collect();
    let img = &decoded[0];
    let mask = image_io::decode_mask(&case.mask, opts.binarize)?;
    let (w, h) = (img.width(), img.height());
    if (mask.mask.width(), mask.mask.height()) != (w, h) {
        bail!(
            "{}: mask is {}x{} but its image {} is {w}x{h}; export the mask at the image's size",
            case.mask.display(),
            mask.mask.width(),
            mask.mask.height(),
            case.images[0].display()
        );
    }
    let image = if decoded.len() == 1 {
        image_io::image_to_chw(img, channels, opts.size)
    } else {
        // nnU-Net's multi-channel cases: one grey image per channel, stacked in channel order.
        let mut stacked = Vec::new();
        for (path, channel) in case.images.iter().zip(&decoded) {
            if image_io::is_color(channel) || (channel.width(), channel.height()) != (w, h) {
                bail!(
                    "{}: each input channel must be a grey image of its case's size ({w}x{h}); re-save it",
                    path.display()
                );
            }
            stacked.extend(image_io::image_to_chw(channel, 1, opts.size));
        }
        stacked
    };
    let mut problems = Vec::new();
    if mask.thresholded {
        problems.push(Problem::warning(
            &case.mask,
            format!("{} grey values (lossy file) thresholded at half range", mask.values.len()),
        ));
    }
    let loaded = LoadedCase {
        id: case.id.clone(),
        image,
        mask: image_io::mask_to_hw(&mask.mask, opts.size),
        original_size: (w, h),
        color: decoded.len() == 1 && image_io::is_color(img),
        sixteen_bit,
        mask_values: mask.values,
    };
    Ok((loaded, problems))
}

/// Decodes every case in parallel; a case that fails becomes a fatal problem naming its file.
pub fn read_cases(inv: &Inventory, opts: &LoadOptions) -> Result<(Vec<LoadedCase>, Vec<Problem>, usize)> {
    let first = inv.cases.first().context("no usable image/mask pairs")?;
    let channels = match (opts.channels, first.images.len()) {
        (Some(c), 1) => c,
        (Some(c), files) if c != files => {
            bail!("{}: the cases have {files} input channels; leave out --channels {c}", inv.root.display())
        }
        (_, files) if files > 1 => files,
        _ => match image_io::decode(&first.images[0]) {
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
            Err(e) => {
                let files: Vec<&Path> = case.images.iter().chain([&case.mask]).map(PathBuf::as_path).collect();
                problems.push(Problem::from_error(&files, &e))
            }
        }
    }
    if !opts.allow_empty && !cases.is_empty() && cases.iter().all(|c| c.mask_values == [0]) {
        let message = "every mask is empty: there is nothing to segment; check the mask export, or pass \
                       --allow-empty-masks if that is intended";
        problems.push(Problem::error(&inv.root, message));
    }
    Ok((cases, problems, channels))
}

/// Stacks decoded cases into one dataset (one mask channel, label 1).
fn stack(cases: Vec<LoadedCase>, channels: usize, size: u32) -> SegDataset {
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

/// Scans, decodes and stacks a dataset; any fatal problem aborts with the full list.
pub fn load(root: &Path, opts: &LoadOptions) -> Result<SegDataset> {
    let inv = scan(root, opts)?;
    refuse_fatal(unusable(root), &inv.problems)?;
    let (cases, problems, channels) = read_cases(&inv, opts)?;
    refuse_fatal(unusable(root), &problems)?;
    Ok(stack(cases, channels, opts.size))
}

/// Decodes every pair and reports sizes, channels, mask values and every problem by file.
pub fn check(root: &Path, opts: &LoadOptions) -> Result<CheckReport> {
    let inv = scan(root, opts)?;
    let pairs = inv.cases.len();
    let (cases, mut problems, channels) =
        if pairs > 0 { read_cases(&inv, opts)? } else { (vec![], inv.problems.clone(), 0) };
    let originally_empty = |c: &LoadedCase| c.mask_values == [0];
    for c in &cases {
        if !originally_empty(c) && c.mask.iter().all(|&v| v == 0.0) {
            let files = inv.cases.iter().find(|f| f.id == c.id).expect("decoded cases come from the inventory");
            problems.push(Problem::warning(
                &files.mask,
                format!("foreground vanishes when resized to {0}x{0}; raise --size", opts.size),
            ));
        }
    }
    let mut mask_value_sets = BTreeMap::new();
    for c in &cases {
        *mask_value_sets.entry(format!("{:?}", c.mask_values)).or_insert(0) += 1;
    }
    let fg: Vec<f64> =
        cases.iter().map(|c| c.mask.iter().map(|&v| v as f64).sum::<f64>() / c.mask.len() as f64).collect();
    let range =
        |f: fn(&LoadedCase) -> u32| (cases.iter().map(f).min().unwrap_or(0), cases.iter().map(f).max().unwrap_or(0));
    let stats = ImageStats {
        layout: inv.layout,
        channels,
        color_images: cases.iter().filter(|c| c.color).count(),
        sixteen_bit_images: cases.iter().filter(|c| c.sixteen_bit).count(),
        width_range: range(|c| c.original_size.0),
        height_range: range(|c| c.original_size.1),
        mask_value_sets,
        empty_masks: cases.iter().filter(|c| originally_empty(c)).count(),
        mean_foreground_fraction: if fg.is_empty() { 0.0 } else { fg.iter().sum::<f64>() / fg.len() as f64 },
    };
    Ok(CheckReport {
        root: root.to_path_buf(),
        pairs,
        usable_pairs: cases.len(),
        stats: Stats::Images(stats),
        problems,
    })
}

/// Images for prediction, resized to the network's input, with the files they came from.
pub struct ImageBatch {
    pub files: Vec<PathBuf>,
    /// `[N, channels, size, size]` in [0, 1].
    pub images: Tensor,
    /// Each file's original (width, height).
    pub sizes: Vec<(u32, u32)>,
}

/// Images of a folder (or one file) for prediction, with their original sizes.
pub fn load_images(input: &Path, channels: usize, size: u32) -> Result<ImageBatch> {
    let files: Vec<PathBuf> = if input.is_dir() {
        let mut problems = Vec::new();
        let files = list_files(input, &mut problems)?;
        if let Some(p) = problems.iter().find(|p| p.fatal) {
            bail!("{}: {}", p.file.display(), p.message);
        }
        files
    } else if input.is_file() {
        vec![input.to_path_buf()]
    } else {
        bail!("{}: no such file or folder; give an image or a folder of images", input.display());
    };
    let decoded: Vec<Result<_>> = files
        .par_iter()
        .map(|f| {
            let img = image_io::decode_image(f)?;
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
    let images = Tensor::from_slice(&data).view([n, channels as i64, size as i64, size as i64]);
    Ok(ImageBatch { files, images, sizes })
}

/// Pairs two folders of 2-D masks (predictions and references) by case id; every unmatched
/// file is an error naming it, so an evaluation never silently skips a case.
pub fn pair_mask_folders(pred: &Path, reference: &Path, suffixes: &[String]) -> Result<Vec<Pair>> {
    let mut problems = Vec::new();
    for dir in [pred, reference] {
        if !dir.is_dir() {
            bail!("{}: not a folder of masks", dir.display());
        }
    }
    let strip = |p: &Path| {
        let s = stem(p);
        suffixes
            .iter()
            .filter_map(|suf| s.strip_suffix(suf.as_str()))
            .min_by_key(|id| id.len())
            .map(str::to_string)
            .unwrap_or(s)
    };
    // A dataset folder's masks are its masks/ (or labelsTr/).
    let reference = &match super::files::Folders::of(reference) {
        Ok(f) if f.masks != reference => f.masks,
        _ => reference.to_path_buf(),
    };
    let preds: BTreeMap<String, PathBuf> =
        list_files_but(pred, &mut problems, &["csv", "json"])?.into_iter().map(|p| (strip(&p), p)).collect();
    let refs: BTreeMap<String, PathBuf> =
        list_files(reference, &mut problems)?.into_iter().map(|p| (strip(&p), p)).collect();
    let (pairs, orphans) = pair_by_id(preds, refs, |side, id| match side {
        Side::First => (format!("no reference mask for case '{id}' in {}", reference.display()), true),
        Side::Second => (format!("no predicted mask for case '{id}' in {}", pred.display()), true),
    });
    problems.extend(orphans);
    refuse_fatal(format_args!("cannot pair {} with {}", pred.display(), reference.display()), &problems)?;
    Ok(pairs)
}
