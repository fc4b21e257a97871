//! The project's models. Each retrain is `genseg fit` in a child process (the page never waits
//! and a failed fit cannot take the server down) on a frozen snapshot of the annotated pairs:
//! PROJECT/models/vNNN/data/ (images linked, masks copied), fit/ (the fit folder: an ensemble of
//! fold models), fit.log, and scores.json once the model has scored every image. A version with
//! scores.json is ready; one without is resumed (fit resumes from its checkpoints).
use super::project::{Image, Project};
use super::queue::{self, Score};
use crate::data::image_io;
use crate::infer::ensemble::{self, Ensemble};
use crate::infer::{mask_at_size, PredictOptions};
use crate::runtime::{child_process, write_json};
use anyhow::{bail, Context, Result};
use image::GrayImage;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// How a retrain runs `genseg fit`.
#[derive(Debug, Clone)]
pub struct RetrainConfig {
    /// Wall-clock budget of one retrain, seconds.
    pub budget_s: f64,
    /// Fold models of each retrain (its ensemble, whose disagreement ranks the queue).
    pub folds: usize,
    pub seed: u64,
    /// The genseg binary that runs the fit.
    pub exe: PathBuf,
    /// `--device` and `--threads` for the fit.
    pub device: String,
    pub threads: usize,
}

/// A ready model: its ensemble and what it says about every image.
pub struct Model {
    pub version: u32,
    pub ensemble: Ensemble,
    /// The image ids it was trained on.
    pub trained_on: Vec<String>,
    pub scores: HashMap<String, Score>,
    pub features: HashMap<String, Vec<f32>>,
}

#[derive(Serialize, Deserialize)]
struct ScoresFile {
    trained_on: Vec<String>,
    scores: HashMap<String, Score>,
    features: HashMap<String, Vec<f32>>,
}

pub fn version_dir(root: &Path, version: u32) -> PathBuf {
    root.join("models").join(format!("v{version:03}"))
}

/// The newest ready version and the newest started one (a snapshot exists) in `root`.
pub fn versions_on_disk(root: &Path) -> (Option<u32>, Option<u32>) {
    let mut ready = None;
    let mut started = None;
    for entry in std::fs::read_dir(root.join("models")).into_iter().flatten().flatten() {
        let Some(v) = entry.file_name().to_string_lossy().strip_prefix('v').and_then(|v| v.parse::<u32>().ok()) else {
            continue;
        };
        if entry.path().join("data").is_dir() {
            started = started.max(Some(v));
        }
        if entry.path().join("scores.json").is_file() {
            ready = ready.max(Some(v));
        }
    }
    (ready, started)
}

/// The training data of `version`: every annotated image linked and its current mask copied
/// into vNNN/data/ (written beside and renamed, so a snapshot is whole or absent). An existing
/// snapshot (a resumed retrain) is kept. Returns the ids it holds.
pub fn snapshot(project: &Project, version: u32) -> Result<Vec<String>> {
    let dir = version_dir(&project.root, version);
    let data = dir.join("data");
    let ids_file = dir.join("trained_on.json");
    if data.is_dir() {
        let text = std::fs::read_to_string(&ids_file).with_context(|| format!("cannot read {}", ids_file.display()))?;
        return Ok(serde_json::from_str(&text)?);
    }
    let tmp = dir.join(".data-tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("images"))?;
    std::fs::create_dir_all(tmp.join("masks"))?;
    let mut ids = Vec::new();
    for i in project.annotated() {
        let im = &project.images[i];
        let mask = project.mask_file(i).expect("an annotated image has a mask");
        let ext = |p: &Path| p.extension().map(|e| e.to_string_lossy().to_string()).unwrap_or_default();
        let image_link = tmp.join("images").join(format!("{}.{}", im.key, ext(&im.file)));
        let absolute = std::path::absolute(&im.file)?;
        std::os::unix::fs::symlink(&absolute, &image_link)
            .with_context(|| format!("cannot link {}", image_link.display()))?;
        let mask_copy = tmp.join("masks").join(format!("{}.{}", im.key, ext(&mask)));
        std::fs::copy(&mask, &mask_copy).with_context(|| format!("cannot copy {}", mask.display()))?;
        ids.push(im.id.clone());
    }
    write_json(&ids_file, &ids)?;
    std::fs::rename(&tmp, &data).with_context(|| format!("cannot create {}", data.display()))?;
    Ok(ids)
}

/// Runs (or resumes) `genseg fit` on `version`'s snapshot, its output in vNNN/fit.log.
pub fn fit(root: &Path, version: u32, cfg: &RetrainConfig) -> Result<()> {
    let dir = version_dir(root, version);
    let log_file = dir.join("fit.log");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_file)?;
    let status = child_process(&cfg.exe)
        .args(["--device", &cfg.device, "--threads", &cfg.threads.to_string(), "fit"])
        .arg(dir.join("data"))
        .arg("--out")
        .arg(dir.join("fit"))
        .args(["--budget", &format!("{:.0}", cfg.budget_s.max(1.0))])
        .args(["--folds", &cfg.folds.to_string(), "--seed", &cfg.seed.to_string()])
        .args(["--candidates", "augment", "--no-onnx"])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("cannot start {}", cfg.exe.display()))?;
    if !status.success() {
        let text = std::fs::read_to_string(&log_file).unwrap_or_default();
        let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
        bail!("the retrain of model v{version} failed ({status}): {last} (all of it in {})", log_file.display());
    }
    Ok(())
}

/// Loads a fitted `version` of the project in `root`, scoring every image with it unless
/// scores.json already holds the scores.
pub fn load(root: &Path, images: &[Image], version: u32, device: Device) -> Result<Model> {
    let dir = version_dir(root, version);
    let ensemble = Ensemble::load(&dir.join("fit"), device)?;
    let file = dir.join("scores.json");
    let scores: ScoresFile = match std::fs::read_to_string(&file) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("{} is corrupt", file.display()))?,
        Err(_) => {
            let trained_on: Vec<String> = serde_json::from_str(&std::fs::read_to_string(dir.join("trained_on.json"))?)?;
            let (scores, features) = score(images, &ensemble, device)?;
            let s = ScoresFile { trained_on, scores, features };
            write_json(&file, &s)?;
            s
        }
    };
    Ok(Model { version, ensemble, trained_on: scores.trained_on, scores: scores.scores, features: scores.features })
}

/// Per image id: its uncertainty under a model, and its appearance features.
type Scores = (HashMap<String, Score>, HashMap<String, Vec<f32>>);

/// Every image's uncertainty under `ensemble` and its appearance features, in batches.
fn score(images: &[Image], ensemble: &Ensemble, device: Device) -> Result<Scores> {
    let spec = &ensemble.spec;
    let (channels, side) = (spec.channels, spec.size as usize);
    let mut scores = HashMap::new();
    let mut features = HashMap::new();
    for chunk in images.chunks(32) {
        let mut pixels = Vec::new();
        for im in chunk {
            let img = image_io::decode_image(&im.file)?;
            let chw = image_io::image_to_chw(&img, channels, spec.size);
            features.insert(im.id.clone(), queue::features(&chw, channels, side));
            pixels.extend(chw);
        }
        let images = Tensor::from_slice(&pixels).view([chunk.len() as i64, channels as i64, side as i64, side as i64]);
        let members = ensemble.member_probs(&images, device, PredictOptions::default());
        let mean = ensemble::mean(&members);
        let disagreement = ensemble::disagreement(&members, &mean);
        let p = mean.clamp(1e-6, 1.0 - 1e-6);
        let q: Tensor = 1.0 - &p;
        let h = -(&p * p.log2() + &q * q.log2());
        let entropy = Vec::<f64>::try_from(h.flatten(1, -1).mean_dim(1, false, Kind::Double))?;
        for (k, im) in chunk.iter().enumerate() {
            scores.insert(im.id.clone(), Score { disagreement: disagreement[k], entropy: entropy[k] });
        }
    }
    Ok((scores, features))
}

/// The model's mask for the image `file` at the image's own size.
pub fn proposal(model: &Model, file: &Path, device: Device) -> Result<GrayImage> {
    let spec = &model.ensemble.spec;
    let img = image_io::decode_image(file)?;
    let chw = image_io::image_to_chw(&img, spec.channels, spec.size);
    let s = spec.size as i64;
    let x = Tensor::from_slice(&chw).view([1, spec.channels as i64, s, s]);
    let probs = model.ensemble.probs(&x, device, PredictOptions::default());
    Ok(mask_at_size(&probs.get(0), (img.width(), img.height())).0)
}

/// How many images `version`'s snapshot holds (0 when it has none).
pub fn snapshot_len(root: &Path, version: u32) -> usize {
    std::fs::read_to_string(version_dir(root, version).join("trained_on.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Vec<String>>(&t).ok())
        .map_or(0, |ids| ids.len())
}
