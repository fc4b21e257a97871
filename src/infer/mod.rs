//! Prediction with a trained run: masks at each input's original size (2-D PNG) or label maps in
//! each input volume's own geometry (NIfTI), plus overlay pictures. A fit folder predicts as an
//! [`ensemble`] of its fold models, with each image's disagreement in uncertainty.csv.
pub mod ensemble;

use crate::data::files::{is_nifti, stem};
use crate::data::images::{load_images, ImageBatch};
use crate::data::volume::{network_input, read_volume, write_volume, Volume};
use crate::models::segnet::{NetConfig, SegNet};
use crate::precision::{full_precision, Precision};
use crate::runtime::{all_finite, ensure_writable_dir, load_vars};
use crate::viz::{foreground, overlay, picture, save_png, tensor_to_rgb};
use anyhow::{bail, Context, Result};
use ensemble::Ensemble;
use image::GrayImage;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

/// model.json: what predict needs to rebuild a run's model and bring inputs to its shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelSpec {
    /// The network, under its name (`"unet": {...}`).
    #[serde(flatten)]
    pub net: NetConfig,
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
pub fn predict_probs(seg: &SegNet, images: &Tensor, device: Device) -> Tensor {
    predict_probs_with(seg, images, device, PredictOptions::default())
}

/// The data folders a run was trained and scored on (its config.json's data and out-of-domain
/// folders): predict never writes into them.
fn training_folders(run: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(run.join("config.json")) else { return vec![] };
    let Ok(config) = serde_json::from_str::<serde_json::Value>(&text) else { return vec![] };
    let data = &config["config"]["data"];
    [&data["data"], &data["ood"]].into_iter().filter_map(|v| v.as_str()).map(PathBuf::from).collect()
}

/// How [`predict_probs_with`] predicts.
#[derive(Debug, Clone, Copy, Default)]
pub struct PredictOptions {
    /// The mean over every mirroring of the spatial axes (nnU-Net's test-time augmentation: 4
    /// passes in 2-D, 8 in 3-D), each mirrored back before averaging.
    pub tta: bool,
    /// The forward passes' precision (probabilities come back in float32 either way).
    pub precision: Precision,
}

/// [`predict_probs`] with `options` (mirror TTA, bf16 forward passes).
pub fn predict_probs_with(seg: &SegNet, images: &Tensor, device: Device, options: PredictOptions) -> Tensor {
    let axes: Vec<i64> = (2..images.dim() as i64).collect();
    // Every subset of the spatial axes (as a bit mask); only the empty one without TTA.
    let mirrorings = if options.tta { 1u32 << axes.len() } else { 1 };
    let forward =
        |x: &Tensor| full_precision(&options.precision.autocast(device, || seg.forward_t(x, false))).sigmoid();
    tch::no_grad(|| {
        let n = images.size()[0];
        let chunks: Vec<Tensor> = (0..n)
            .step_by(8)
            .map(|s| {
                let x = images.narrow(0, s, (n - s).min(8)).to_device(device);
                let sum = (0..mirrorings)
                    .map(|bits| {
                        let flip: Vec<i64> =
                            axes.iter().enumerate().filter(|(i, _)| bits >> i & 1 == 1).map(|(_, &a)| a).collect();
                        if flip.is_empty() {
                            forward(&x)
                        } else {
                            forward(&x.flip(flip.as_slice())).flip(flip.as_slice())
                        }
                    })
                    .reduce(|a, b| a + b)
                    .unwrap();
                (sum / mirrorings as f64).to_device(Device::Cpu)
            })
            .collect();
        Tensor::cat(&chunks, 0)
    })
}

/// Loads the model of a run folder (model.safetensors).
pub fn load_model(run: &Path, device: Device) -> Result<(VarStore, SegNet, ModelSpec)> {
    load_model_weights(run, "model.safetensors", device)
}

/// [`load_model`] with the weights of another file of the run (model_best.safetensors).
pub fn load_model_weights(run: &Path, weights: &str, device: Device) -> Result<(VarStore, SegNet, ModelSpec)> {
    let spec_path = run.join("model.json");
    let text = std::fs::read_to_string(&spec_path).with_context(|| {
        format!("{} not found: --run must be a folder written by `genseg train`", spec_path.display())
    })?;
    let spec: ModelSpec = serde_json::from_str(&text).with_context(|| format!("{} is corrupt", spec_path.display()))?;
    if !run.join("summary.json").is_file() {
        tracing::warn!("{}: the run has not finished (no summary.json); this is its best model so far", run.display());
    }
    let mut vs = VarStore::new(device);
    let net = SegNet::new(&vs.root(), &spec.net);
    load_vars(&mut vs, &run.join(weights))?;
    if !all_finite(&vs) {
        bail!("{}: the model's weights are not finite (a diverged run); retrain it with a lower --lr", run.display());
    }
    Ok((vs, net, spec))
}

/// Writes OUT/{stem}.png (0/255 masks at the original size) or OUT/{stem}.nii.gz (label maps)
/// and OUT/overlays/{stem}.png; with a fit folder (several models) also OUT/uncertainty.csv.
pub fn predict(run: &Path, input: &Path, out: &Path, options: PredictOptions, device: Device) -> Result<Vec<PathBuf>> {
    options.precision.check(device)?;
    let model = Ensemble::load(run, device)?;
    let spec = &model.spec;
    let members = ensemble::members(run)?;
    let trained_on: Vec<PathBuf> = members.iter().flat_map(|m| training_folders(m)).collect();
    let mut inputs = vec![("the input", input), ("--run", run)];
    inputs.extend(trained_on.iter().map(|d| ("the run's training data", d.as_path())));
    crate::runtime::refuse_overlap("--out", out, &inputs)?;
    if let Some(shape) = spec.volume_shape {
        return predict_volumes(&model, shape, input, out, options, device);
    }
    if ![1, 3].contains(&spec.channels) {
        bail!(
            "{}: the model takes {} input channels (an nnU-Net multi-channel set); predict reads one grey or RGB \
             image per case, so it cannot feed this model",
            run.display(),
            spec.channels
        );
    }
    // Every input is decoded before the first output is written.
    let ImageBatch { files, images, sizes } = load_images(input, spec.channels, spec.size)?;
    let overlays = output_folders(out)?;
    let member_probs = model.member_probs(&images, device, options);
    let probs = ensemble::mean(&member_probs);
    let mut written = Vec::new();
    let mut stems = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let (w, h) = sizes[i];
        let (mask, bits) = mask_at_size(&probs.get(i as i64), (w, h));
        let stem = file.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| format!("case{i}"));
        let path = out.join(format!("{stem}.png"));
        crate::runtime::write_atomic_with(&path, |tmp| Ok(mask.save_with_format(tmp, image::ImageFormat::Png)?))?;
        let original = crate::data::image_io::decode_image(file)?.to_rgb8();
        crate::viz::save_png(&overlays.join(format!("{stem}.png")), &crate::viz::overlay(&original, &bits, None))?;
        written.push(path);
        stems.push(stem);
    }
    write_uncertainty(out, &stems, &member_probs, &probs)?;
    Ok(written)
}

/// One image's probabilities `[1, s, s]` at the network's side as a 0/255 mask of (width,
/// height), and its pixels as booleans. Probabilities are upsampled, then thresholded: smoother
/// outlines than resizing a binary mask.
pub fn mask_at_size(probs: &Tensor, (w, h): (u32, u32)) -> (GrayImage, Vec<bool>) {
    let p = probs.unsqueeze(0).upsample_bilinear2d([h as i64, w as i64], false, None, None);
    let bits = crate::viz::mask_to_bools(&p);
    let mask = GrayImage::from_fn(w, h, |x, y| image::Luma([if bits[(y * w + x) as usize] { 255 } else { 0 }]));
    (mask, bits)
}

/// OUT/uncertainty.csv: each case's disagreement between the ensemble's members (a fit folder's
/// fold models), highest first; nothing for a single model.
fn write_uncertainty(out: &Path, stems: &[String], member_probs: &[Tensor], probs: &Tensor) -> Result<()> {
    if member_probs.len() < 2 {
        return Ok(());
    }
    let scores = ensemble::disagreement(member_probs, probs);
    let mut rows: Vec<(&String, f64)> = stems.iter().zip(scores).collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["case", "disagreement"])?;
    for (stem, d) in rows {
        w.write_record([stem.clone(), format!("{d:.4}")])?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::runtime::write_atomic(&out.join("uncertainty.csv"), &bytes)
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
    model: &Ensemble,
    shape: [usize; 3],
    input: &Path,
    out: &Path,
    options: PredictOptions,
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
    let spec = &model.spec;
    let (mut written, mut stems, mut all_members, mut all_probs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (file, volume) in volumes {
        let (crop, image) = network_input(&volume, shape);
        let [d, h, w] = shape.map(|s| s as i64);
        let x = Tensor::from_slice(&image).view([1, 1, d, h, w]);
        let member_probs = model.member_probs(&x, device, options);
        let probs = ensemble::mean(&member_probs).get(0);
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
        all_probs.push(probs.unsqueeze(0));
        all_members.push(member_probs);
        stems.push(id);
    }
    if let Some(first) = all_members.first() {
        let per_member: Vec<Tensor> = (0..first.len())
            .map(|m| Tensor::cat(&all_members.iter().map(|v| v[m].shallow_clone()).collect::<Vec<_>>(), 0))
            .collect();
        write_uncertainty(out, &stems, &per_member, &Tensor::cat(&all_probs, 0))?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::unet::UNetConfig;

    fn net() -> (VarStore, SegNet, Tensor) {
        tch::manual_seed(9);
        let vs = VarStore::new(Device::Cpu);
        let cfg = UNetConfig { in_channels: 3, width: 4, depth: 3, ..UNetConfig::reference() };
        let net = SegNet::new(&vs.root(), &NetConfig::Unet(cfg));
        let x = Tensor::rand([10, 3, 16, 16], (Kind::Float, Device::Cpu));
        (vs, net, x)
    }

    /// Batches of 8 (and a last one of 2) give what one image at a time gives.
    #[test]
    fn batched_prediction_equals_one_image_at_a_time() {
        let (_vs, net, x) = net();
        let batched = predict_probs(&net, &x, Device::Cpu);
        for i in 0..10 {
            let alone = predict_probs(&net, &x.narrow(0, i, 1), Device::Cpu);
            let diff = f64::try_from((batched.narrow(0, i, 1) - alone).abs().max()).unwrap();
            assert!(diff < 1e-5, "image {i}: {diff}");
        }
    }

    /// bf16 prediction gives float32 probabilities within bf16's rounding of float32's.
    #[test]
    fn bf16_prediction_is_close_to_float32() {
        let (_vs, net, x) = net();
        let exact = predict_probs(&net, &x, Device::Cpu);
        let options = PredictOptions { precision: Precision::Bf16, ..Default::default() };
        let bf16 = predict_probs_with(&net, &x, Device::Cpu, options);
        assert_eq!(bf16.kind(), Kind::Float);
        let err = f64::try_from((&bf16 - &exact).abs().max()).unwrap();
        assert!(err > 0.0 && err < 0.05, "largest probability difference {err}");
    }

    /// Mirror TTA is the mean of the four mirrored predictions, each mirrored back.
    #[test]
    fn mirror_tta_averages_the_four_mirrorings() {
        let (_vs, net, x) = net();
        let tta = predict_probs_with(&net, &x, Device::Cpu, PredictOptions { tta: true, ..Default::default() });
        let p = |flip: &[i64]| {
            if flip.is_empty() {
                predict_probs(&net, &x, Device::Cpu)
            } else {
                predict_probs(&net, &x.flip(flip), Device::Cpu).flip(flip)
            }
        };
        let want = (p(&[]) + p(&[2]) + p(&[3]) + p(&[2, 3])) / 4.0;
        assert!(f64::try_from((&tta - want).abs().max()).unwrap() < 1e-6);
        assert!(f64::try_from((tta - p(&[])).abs().max()).unwrap() > 1e-4, "TTA changed nothing");
    }
}
