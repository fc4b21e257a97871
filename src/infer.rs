//! Prediction with a trained run: masks at each input's original size plus overlay pictures.
use crate::data::dataset::load_images;
use crate::models::unet::UNet;
use crate::runtime::ensure_writable_dir;
use crate::train::checkpoint::load_vars;
use crate::train::segment::{predict_probs, ModelSpec};
use anyhow::{Context, Result};
use image::GrayImage;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::Device;

/// Loads the best model of a run folder.
pub fn load_model(run: &Path, device: Device) -> Result<(VarStore, UNet, ModelSpec)> {
    let spec_path = run.join("model.json");
    let text = std::fs::read_to_string(&spec_path)
        .with_context(|| format!("{} not found: --run must be a folder written by `genseg train`", spec_path.display()))?;
    let spec: ModelSpec = serde_json::from_str(&text).with_context(|| format!("{} is corrupt", spec_path.display()))?;
    let mut vs = VarStore::new(device);
    let unet = UNet::new(&vs.root(), &spec.unet);
    load_vars(&mut vs, &run.join("model.safetensors"))?;
    Ok((vs, unet, spec))
}

/// Writes OUT/{stem}.png (0/255 masks at the original size) and OUT/overlays/{stem}.png.
pub fn predict(run: &Path, input: &Path, out: &Path, device: Device) -> Result<Vec<PathBuf>> {
    let (_vs, unet, spec) = load_model(run, device)?;
    ensure_writable_dir(out)?;
    let overlays = out.join("overlays");
    ensure_writable_dir(&overlays)?;
    let (files, images, sizes) = load_images(input, spec.channels, spec.size)?;
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
