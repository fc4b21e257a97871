//! `genseg export`: a run's segmenter as a TorchScript or ONNX file for the PyTorch world (a
//! script, MONAI, 3D Slicer, onnxruntime). scripts/export.py rebuilds the network in PyTorch with
//! the venv's torch and exports it; the file is put in place only after its output matched
//! genseg's own prediction on the run's test images (TorchScript run by genseg's libtorch, ONNX
//! by onnxruntime).
use crate::data::split::load_splits;
use crate::infer::{load_model, predict_probs};
use crate::models::segnet::NetConfig;
use crate::runtime::write_atomic_with;
use crate::train::TrainConfig;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Largest allowed difference between the exported model's probabilities and genseg's.
pub const TOLERANCE: f64 = 1e-4;

/// The Python of the venv whose libtorch genseg was built against (it has the same torch).
pub fn default_python() -> PathBuf {
    // .../.venv/lib/pythonX.Y/site-packages/torch/lib -> .../.venv/bin/python
    let lib = Path::new(env!("GENSEG_LIBTORCH_LIB"));
    lib.ancestors().nth(5).map(|venv| venv.join("bin").join("python")).unwrap_or_else(|| "python3".into())
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
                "ONNX, checked in onnxruntime; preprocessing and outputs in the model's metadata property genseg"
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

/// Exports `run` to `out` with `python`; returns the largest probability difference found on
/// the check images and how many there were.
pub fn export(run: &Path, out: &Path, format: Format, python: &Path, device: Device) -> Result<(f64, usize)> {
    if out.is_dir() {
        bail!("--out {} is a folder; give the model file, e.g. {}", out.display(), out.join("model.onnx").display());
    }
    let files = ["model.safetensors", "model.json", "config.json"].map(|f| run.join(f));
    crate::runtime::refuse_overlap(
        "--out",
        out,
        &files.iter().map(|f| ("a file of --run", f.as_path())).collect::<Vec<_>>(),
    )?;
    let (_vs, net, spec) = load_model(run, device)?;
    if spec.volume_shape.is_some() {
        bail!("{}: a 3-D model; export handles 2-D U-Nets", run.display());
    }
    if !matches!(spec.net, NetConfig::Unet(_)) {
        bail!("{}: not a U-Net; export rebuilds 2-D U-Nets only (train with --model unet to export)", run.display());
    }
    let images = check_images(run, spec.channels as i64, spec.size as i64)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join("export.py");
    let mut diff = f64::NAN;
    // onnxruntime's check goes through two files beside the output, removed whatever happens.
    let images_npy = out.with_extension("check-images.npy");
    let probs_npy = out.with_extension("check-probs.npy");
    crate::runtime::remove_dead_temporaries(out)?;
    let written = write_atomic_with(out, |tmp| {
        let mut command = crate::runtime::child_process(python);
        command.arg(&script).arg(run).arg(tmp).arg(format.name());
        if format == Format::Onnx {
            images.write_npy(&images_npy)?;
            command.arg(&images_npy).arg(&probs_npy);
        }
        let status = command.status().with_context(|| {
            format!(
                "cannot run {}; give --python with a torch (and, for ONNX, onnx + onnxruntime) installation",
                python.display()
            )
        })?;
        if !status.success() {
            bail!("{} {} failed (its message is above)", python.display(), script.display());
        }
        let theirs = match format {
            Format::Torchscript => {
                let module = tch::CModule::load_on_device(tmp, device)
                    .with_context(|| format!("{}: not a TorchScript file", tmp.display()))?;
                tch::no_grad(|| module.forward_ts(&[images.to_device(device)]))?.sigmoid().to_device(Device::Cpu)
            }
            Format::Onnx => Tensor::read_npy(&probs_npy)
                .with_context(|| format!("onnxruntime's output {} is missing", probs_npy.display()))?,
        };
        let ours = predict_probs(&net, &images, device).to_kind(Kind::Double);
        if ours.size() != theirs.size() {
            bail!(
                "the exported model's output has shape {:?}, genseg's {:?}; nothing written",
                theirs.size(),
                ours.size()
            );
        }
        diff = f64::try_from((ours - theirs.to_kind(Kind::Double)).abs().max())?;
        if diff.is_nan() || diff >= TOLERANCE {
            bail!("the exported model differs from genseg's prediction by {diff:.2e} (tolerance {TOLERANCE:.0e}); nothing written");
        }
        Ok(())
    });
    for f in [&images_npy, &probs_npy] {
        let _ = std::fs::remove_file(f);
    }
    written?;
    Ok((diff, images.size()[0] as usize))
}

/// Up to 4 test images of the run's own split, or random images when its data is not here.
fn check_images(run: &Path, channels: i64, size: i64) -> Result<Tensor> {
    let text = std::fs::read_to_string(run.join("config.json")).with_context(|| {
        format!("{}: no config.json; --run must be a folder written by `genseg train`", run.display())
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)?;
    let cfg: TrainConfig = serde_json::from_value(value["config"].clone())
        .with_context(|| format!("{}/config.json is not a training configuration", run.display()))?;
    match load_splits(&cfg.data, cfg.seed) {
        Ok(splits) if !splits.test.is_empty() => Ok(splits.test.images.narrow(0, 0, splits.test.len().min(4) as i64)),
        _ => {
            tracing::warn!("{} is not readable here: checking the export on random images", cfg.data.data.display());
            Ok(Tensor::rand([4, channels, size, size], (Kind::Float, Device::Cpu)))
        }
    }
}
