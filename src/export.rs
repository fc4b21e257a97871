//! `genseg export`: a run's segmenter as an ONNX or TorchScript file for the PyTorch world (a
//! script, MONAI, 3D Slicer, onnxruntime). scripts/export.py rebuilds the network in PyTorch with
//! the venv's torch and exports it; the file is put in place only after its output matched
//! genseg's own prediction. ONNX is `genseg predict` end to end (pixels of any size in, masks at
//! that size out), checked in onnxruntime on the run's test images at their own sizes;
//! TorchScript is the network alone, checked by genseg's libtorch on resized images.
use crate::data::files::stem;
use crate::data::image_io::{decode_image, image_to_chw, to_channels};
use crate::data::split::load_splits;

use crate::models::segnet::NetConfig;
use crate::runtime::write_atomic_with;
use crate::train::TrainConfig;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Largest allowed difference between the exported network's probabilities and genseg's.
pub const TOLERANCE: f64 = 1e-4;

/// The same for the ONNX graph end to end. Its resize sums in another order than the image
/// crate's, so a resized value a hair from a half grey level can round the other way: one grey
/// level (1/255) in a few input pixels moves a probability by up to a few thousandths (measured
/// on cvc_clinicdb: masks differ only where the probability is within 0.0025 of 0.5).
pub const END_TO_END_TOLERANCE: f64 = 1e-2;

/// The Python of the venv whose libtorch genseg was built against (it has the same torch).
pub fn default_python() -> PathBuf {
    // .../.venv/lib/pythonX.Y/site-packages/torch/lib -> .../.venv/bin/python
    let lib = Path::new(env!("GENSEG_LIBTORCH_LIB"));
    lib.ancestors().nth(5).map(|venv| venv.join("bin").join("python")).unwrap_or_else(|| "python3".into())
}

/// What `genseg export` did: the largest probability difference to genseg on the check images,
/// how many there were, and (ONNX) the share of mask pixels that agree with `predict`'s.
pub struct Checked {
    pub max_difference: f64,
    pub images: usize,
    pub mask_agreement: Option<f64>,
}

/// What `genseg export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Format {
    Torchscript,
    Onnx,
}

impl Format {
    /// `.onnx` means ONNX, anything else TorchScript.
    pub fn of_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("onnx") => Format::Onnx,
            _ => Format::Torchscript,
        }
    }

    /// What the file is and where its preprocessing is described, as `export` prints it.
    pub fn describe(self) -> &'static str {
        match self {
            Format::Torchscript => "TorchScript; preprocessing and outputs in the file's extra file genseg.json",
            Format::Onnx => {
                "ONNX, end to end (pixels of any size in, masks out), checked in onnxruntime; inputs and outputs in \
                 the model's metadata property genseg"
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Torchscript => "torchscript",
            Format::Onnx => "onnx",
        }
    }
}

/// Exports `run` (a run folder, or a fit folder: one ONNX graph averaging its models) to `out`
/// with `python`, checked against genseg's own prediction.
pub fn export(run: &Path, out: &Path, format: Format, python: &Path, device: Device) -> Result<Checked> {
    if out.is_dir() {
        bail!("--out {} is a folder; give the model file, e.g. {}", out.display(), out.join("model.onnx").display());
    }
    let members = crate::infer::ensemble::members(run)?;
    if members.len() > 1 && format == Format::Torchscript {
        bail!(
            "{}: a fit folder of {} models exports as ONNX (one graph averaging them); give --out FILE.onnx",
            run.display(),
            members.len()
        );
    }
    let files: Vec<PathBuf> =
        members.iter().flat_map(|m| ["model.safetensors", "model.json", "config.json"].map(|f| m.join(f))).collect();
    let inputs: Vec<(&str, &Path)> = files.iter().map(|f| ("a file of --run", f.as_path())).collect();
    crate::runtime::refuse_overlap("--out", out, &inputs)?;
    let model = crate::infer::ensemble::Ensemble::load(run, device)?;
    let spec = &model.spec;
    if spec.volume_shape.is_some() {
        bail!("{}: a 3-D model; export handles 2-D U-Nets", run.display());
    }
    if !matches!(spec.net, NetConfig::Unet(_)) {
        bail!("{}: not a U-Net; export rebuilds 2-D U-Nets only (train with --model unet to export)", run.display());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join("export.py");
    crate::runtime::remove_dead_temporaries(out)?;
    let mut checked = None;
    write_atomic_with(out, |tmp| {
        let mut command = crate::runtime::child_process(python);
        command.arg(&script).arg(run).arg(tmp).arg(format.name());
        checked = Some(match format {
            Format::Torchscript => {
                // A fit folder of one model exports it; its member run knows the data.
                let images = check_images(&members[0], spec.channels as i64, spec.size as i64)?;
                run_python(&mut command, python, &script)?;
                let module = tch::CModule::load_on_device(tmp, device)
                    .with_context(|| format!("{}: not a TorchScript file", tmp.display()))?;
                let theirs = tch::no_grad(|| module.forward_ts(&[images.to_device(device)]))?.sigmoid();
                let ours = model.probs(&images, device, Default::default());
                Checked {
                    max_difference: max_difference(&ours, &theirs)?,
                    images: images.size()[0] as usize,
                    mask_agreement: None,
                }
            }
            Format::Onnx => {
                let pictures = check_pictures(&members[0], spec.channels, spec.size)?;
                let folder = out.with_extension("check");
                std::fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
                let result = check_onnx(&mut command, (python, &script), &folder, &pictures, |pixels, img| {
                    let x = Tensor::from_slice(&image_to_chw(img, spec.channels, spec.size));
                    let x = x.view([1, spec.channels as i64, spec.size as i64, spec.size as i64]);
                    let (h, w) = (pixels.size()[2], pixels.size()[3]);
                    model.probs(&x, device, Default::default()).upsample_bilinear2d([h, w], false, None, None)
                });
                let _ = std::fs::remove_dir_all(&folder);
                result?
            }
        });
        Ok(())
    })?;
    checked.context("the export was not checked")
}

fn run_python(command: &mut std::process::Command, python: &Path, script: &Path) -> Result<()> {
    let status = command.status().with_context(|| {
        format!(
            "cannot run {}; give --python with a torch (and, for ONNX, onnx + onnxruntime) installation",
            python.display()
        )
    })?;
    if !status.success() {
        bail!("{} {} failed (its message is above)", python.display(), script.display());
    }
    Ok(())
}

fn max_difference(ours: &Tensor, theirs: &Tensor) -> Result<f64> {
    let (ours, theirs) =
        (ours.to_device(Device::Cpu).to_kind(Kind::Double), theirs.to_device(Device::Cpu).to_kind(Kind::Double));
    if ours.size() != theirs.size() {
        bail!("the exported model's output has shape {:?}, genseg's {:?}; nothing written", theirs.size(), ours.size());
    }
    let diff = f64::try_from((ours - theirs).abs().max())?;
    if diff.is_nan() || diff >= TOLERANCE {
        bail!("the exported model differs from genseg's prediction by {diff:.2e} (tolerance {TOLERANCE:.0e}); nothing written");
    }
    Ok(diff)
}

/// Runs the ONNX graph in onnxruntime on each picture's pixels (one .npy each in `folder`) and
/// compares its probabilities and masks at the picture's own size with `ours` (genseg's
/// prediction): within [`END_TO_END_TOLERANCE`], and masks equal wherever genseg's probability
/// is further than that from the threshold.
fn check_onnx(
    command: &mut std::process::Command,
    (python, script): (&Path, &Path),
    folder: &Path,
    pictures: &[image::DynamicImage],
    ours: impl Fn(&Tensor, &image::DynamicImage) -> Tensor,
) -> Result<Checked> {
    let mut pixels = Vec::new();
    for (i, img) in pictures.iter().enumerate() {
        let (w, h, c) = (img.width() as i64, img.height() as i64, if img.color().has_color() { 3 } else { 1 });
        let t = Tensor::from_slice(img.as_bytes()).view([h, w, c]).permute([2, 0, 1]).unsqueeze(0).contiguous();
        let file = folder.join(format!("pixels{i}.npy"));
        t.write_npy(&file)?;
        command.arg(&file);
        pixels.push((file, t));
    }
    run_python(command, python, script)?;
    let (mut max_difference, mut differing, mut total) = (0f64, 0i64, 0i64);
    for ((file, t), img) in pixels.iter().zip(pictures) {
        let probs = folder.join(format!("{}.probs.npy", stem(file)));
        let theirs =
            Tensor::read_npy(&probs).with_context(|| format!("onnxruntime's output {} is missing", probs.display()))?;
        let ours = ours(t, img).to_device(Device::Cpu).to_kind(Kind::Double);
        let theirs = theirs.to_kind(Kind::Double);
        if ours.size() != theirs.size() {
            bail!(
                "the exported model's output has shape {:?}, genseg's {:?}; nothing written",
                theirs.size(),
                ours.size()
            );
        }
        max_difference = max_difference.max(f64::try_from((&ours - &theirs).abs().max())?);
        let disagree = ours.gt(0.5).logical_xor(&theirs.gt(0.5));
        // A pixel whose probability is that close to the threshold may fall either way.
        let unexplained = disagree.logical_and(&(&ours - 0.5).abs().gt(END_TO_END_TOLERANCE));
        differing += i64::try_from(disagree.sum(Kind::Int64))?;
        total += ours.numel() as i64;
        if i64::try_from(unexplained.sum(Kind::Int64))? > 0
            || max_difference.is_nan()
            || max_difference >= END_TO_END_TOLERANCE
        {
            bail!(
                "the exported model's masks differ from genseg predict's ({differing} pixels; largest probability \
                 difference {max_difference:.2e}); nothing written"
            );
        }
    }
    Ok(Checked {
        max_difference,
        images: pictures.len(),
        mask_agreement: Some(100.0 * (1.0 - differing as f64 / total.max(1) as f64)),
    })
}

/// Up to 4 test images of the run's own split (validation images when it has no test split, as a
/// fit's fold runs) at their own sizes, in the model's channels, or random images of other sizes
/// when its data is not here.
fn check_pictures(run: &Path, channels: usize, size: u32) -> Result<Vec<image::DynamicImage>> {
    let found = run_config(run).ok().and_then(|cfg| {
        let split = load_splits(&cfg.data, cfg.seed).ok()?;
        let folders = crate::data::files::Folders::of(&cfg.data.data).ok()?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(&folders.images).ok()?.flatten().map(|e| e.path()).collect();
        files.sort();
        let held_out = if split.split.test.is_empty() { &split.split.val } else { &split.split.test };
        let test: Vec<PathBuf> = files.into_iter().filter(|f| held_out.contains(&stem(f))).take(4).collect();
        test.iter().map(|f| decode_image(f).ok().map(|img| to_channels(&img, channels))).collect::<Option<Vec<_>>>()
    });
    match found {
        Some(pictures) if !pictures.is_empty() => Ok(pictures),
        _ => {
            tracing::warn!(
                "{}: the run's test images are not readable here: checking the export on random images",
                run.display()
            );
            let noise = |w: u32, h: u32| {
                let rgb = image::RgbImage::from_fn(w, h, |x, y| {
                    image::Rgb([(x * 7 + y * 3) as u8, (x * y) as u8, (x + 5 * y) as u8])
                });
                to_channels(&image::DynamicImage::ImageRgb8(rgb), channels)
            };
            Ok(vec![noise(size + 7, size + 3), noise(size / 2 + 1, 2 * size), noise(size, size)])
        }
    }
}

fn run_config(run: &Path) -> Result<TrainConfig> {
    let text = std::fs::read_to_string(run.join("config.json")).with_context(|| {
        format!("{}: no config.json; --run must be a folder written by `genseg train`", run.display())
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)?;
    serde_json::from_value(value["config"].clone())
        .with_context(|| format!("{}/config.json is not a training configuration", run.display()))
}

/// Up to 4 test images of the run's own split, resized, or random images when its data is not here.
fn check_images(run: &Path, channels: i64, size: i64) -> Result<Tensor> {
    let cfg = run_config(run)?;
    match load_splits(&cfg.data, cfg.seed) {
        Ok(splits) if !splits.test.is_empty() => Ok(splits.test.images.narrow(0, 0, splits.test.len().min(4) as i64)),
        _ => {
            tracing::warn!("{} is not readable here: checking the export on random images", cfg.data.data.display());
            Ok(Tensor::rand([4, channels, size, size], (Kind::Float, Device::Cpu)))
        }
    }
}
