//! Prediction with a trained run: masks at each input's original size (2-D PNG) or label maps in
//! each input volume's own geometry (NIfTI), plus overlay pictures.
use crate::data::files::{is_nifti, stem};
use crate::data::images::{load_images, ImageBatch};
use crate::data::volume::{network_input, read_volume, write_volume, Volume};
use crate::models::unet::{UNet, UNetConfig};
use crate::runtime::{all_finite, ensure_writable_dir, load_vars};
use crate::viz::{foreground, overlay, picture, save_png, tensor_to_rgb};
use anyhow::{bail, Context, Result};
use image::GrayImage;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

/// model.json: what predict needs to rebuild a run's model and bring inputs to its shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelSpec {
    pub unet: UNetConfig,
    pub size: u32,
    pub channels: usize,
    /// Label value of each output channel.
    #[serde(default = "one_label")]
    pub labels: Vec<u32>,
    /// Set for models of 3-D volumes.
    #[serde(default)]
    pub volume_shape: Option<[usize; 3]>,
}

fn one_label() -> Vec<u32> {
    vec![1]
}

/// Probabilities in eval mode, in batches of 8, on `device`; returns CPU tensors.
pub fn predict_probs(seg: &UNet, images: &Tensor, device: Device) -> Tensor {
    tch::no_grad(|| {
        let n = images.size()[0];
        let chunks: Vec<Tensor> = (0..n)
            .step_by(8)
            .map(|s| {
                seg.forward_t(&images.narrow(0, s, (n - s).min(8)).to_device(device), false)
                    .sigmoid()
                    .to_device(Device::Cpu)
            })
            .collect();
        Tensor::cat(&chunks, 0)
    })
}

/// Loads the best model of a run folder.
pub fn load_model(run: &Path, device: Device) -> Result<(VarStore, UNet, ModelSpec)> {
    let spec_path = run.join("model.json");
    let text = std::fs::read_to_string(&spec_path).with_context(|| {
        format!("{} not found: --run must be a folder written by `genseg train`", spec_path.display())
    })?;
    let spec: ModelSpec = serde_json::from_str(&text).with_context(|| format!("{} is corrupt", spec_path.display()))?;
    let mut vs = VarStore::new(device);
    let unet = UNet::new(&vs.root(), &spec.unet);
    load_vars(&mut vs, &run.join("model.safetensors"))?;
    if !all_finite(&vs) {
        bail!("{}: the model's weights are not finite (a diverged run); retrain it with a lower --lr", run.display());
    }
    Ok((vs, unet, spec))
}

/// Writes OUT/{stem}.png (0/255 masks at the original size) or OUT/{stem}.nii.gz (label maps)
/// and OUT/overlays/{stem}.png.
pub fn predict(run: &Path, input: &Path, out: &Path, device: Device) -> Result<Vec<PathBuf>> {
    let (_vs, unet, spec) = load_model(run, device)?;
    if let Some(shape) = spec.volume_shape {
        return predict_volumes(&unet, &spec, shape, input, out, device);
    }
    // Every input is decoded before the first output is written.
    let ImageBatch { files, images, sizes } = load_images(input, spec.channels, spec.size)?;
    let overlays = output_folders(out)?;
    let probs = predict_probs(&unet, &images, device);
    let mut written = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let (w, h) = sizes[i];
        // Upsample probabilities, then threshold: smoother outlines than resizing a binary mask.
        let p = probs.get(i as i64).unsqueeze(0).upsample_bilinear2d([h as i64, w as i64], false, None, None);
        let bits = crate::viz::mask_to_bools(&p);
        let mask = GrayImage::from_fn(w, h, |x, y| image::Luma([if bits[(y * w + x) as usize] { 255 } else { 0 }]));
        let stem = file.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| format!("case{i}"));
        let path = out.join(format!("{stem}.png"));
        crate::runtime::write_atomic_with(&path, |tmp| Ok(mask.save_with_format(tmp, image::ImageFormat::Png)?))?;
        let original = crate::data::image_io::decode(file)?.to_rgb8();
        crate::viz::save_png(&overlays.join(format!("{stem}.png")), &crate::viz::overlay(&original, &bits, None))?;
        written.push(path);
    }
    Ok(written)
}

/// OUT and OUT/overlays, created and proven writable; returns the overlays folder.
fn output_folders(out: &Path) -> Result<PathBuf> {
    let overlays = out.join("overlays");
    ensure_writable_dir(out)?;
    ensure_writable_dir(&overlays)?;
    Ok(overlays)
}

fn volume_files(input: &Path) -> Result<Vec<PathBuf>> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    let entries = std::fs::read_dir(input).with_context(|| {
        format!("{}: no such file or folder; give a NIfTI volume or a folder of them", input.display())
    })?;
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| is_nifti(p)).collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: holds no .nii/.nii.gz volumes; this model segments 3-D volumes", input.display());
    }
    Ok(files)
}

/// Each volume: normalised and cropped/padded as in training, segmented, then put back into its
/// own grid (the crop undone) and written with its own header, so affine and spacing match the
/// input. A voxel gets the label of its most probable channel when that probability passes 0.5.
fn predict_volumes(
    unet: &UNet,
    spec: &ModelSpec,
    shape: [usize; 3],
    input: &Path,
    out: &Path,
    device: Device,
) -> Result<Vec<PathBuf>> {
    // Every input is read and checked before the first output is written.
    let volumes: Vec<(PathBuf, Volume)> = volume_files(input)?
        .into_iter()
        .map(|file| {
            let volume = read_volume(&file)?;
            if let Some(problem) = volume.non_finite() {
                bail!("{}: {problem}", file.display());
            }
            Ok((file, volume))
        })
        .collect::<Result<_>>()?;
    let overlays = output_folders(out)?;
    let mut written = Vec::new();
    for (file, volume) in volumes {
        let (crop, image) = network_input(&volume, shape);
        let [d, h, w] = shape.map(|s| s as i64);
        let x = Tensor::from_slice(&image).view([1, 1, d, h, w]);
        let probs = predict_probs(unet, &x, device).get(0);
        let (best, channel) = probs.max_dim(0, false);
        let label_of = Tensor::from_slice(&spec.labels.iter().map(|&l| l as f32).collect::<Vec<_>>());
        let labels = label_of.index_select(0, &channel.view(-1)).view([d, h, w]) * best.gt(0.5).to_kind(Kind::Float);
        let labels = Vec::<f32>::try_from(labels.contiguous().view(-1))?;
        let id = stem(&file);
        let path = out.join(format!("{id}.nii.gz"));
        write_volume(&path, &crop.invert(&labels), volume.shape, &volume.header)?;
        let overlay = overlay(&tensor_to_rgb(&picture(&x.get(0))), &foreground(&probs), None);
        save_png(&overlays.join(format!("{id}.png")), &overlay)?;
        written.push(path);
    }
    Ok(written)
}
