//! `genseg fit`: one command from a labelled folder to the best model the tool can make within a
//! time budget, after nnU-Net's answer to small data sets. A short run loop over named stages:
//! profile and [`plan`] (resolution, network, iterations, folds, candidates from the data and the
//! budget) -> [`cv`] (every candidate on every fold, each pair validating once) -> choose by
//! cross-validated Dice -> deliver the chosen candidate's fold models as an ensemble
//! (ensemble.json, read by predict and export), model.onnx and [`report`].html.
//!
//! A fit folder: plan.json (the plan, then the cross-validation table and the choice),
//! folds/ (the id lists), runs/CANDIDATE/foldK/ (ordinary run folders), ensemble.json,
//! model.onnx, report.html, overlays_val.png. A killed fit resumes: finished fold runs are kept,
//! an unfinished one resumes from its checkpoint, and the budget counts the time already spent.
pub mod budget;
pub mod cv;
pub mod plan;
pub mod profile;
pub mod report;
pub mod slurm;

use crate::data::fingerprint::Fingerprint;
use crate::data::set::LoadOptions;
use crate::infer::ensemble::{EnsembleFile, ENSEMBLE_FILE};
use crate::runtime::{ensure_writable_dir, lock_folder, write_json};
use crate::train::{Method, TrainConfig};
use anyhow::{Context, Result};
use cv::CvResult;
use plan::{Plan, PlanInput, Runs};
use profile::Profile;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Device;

/// The arms a fit may choose among, as small changes to `train`'s defaults.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Candidate {
    /// `train`'s default: classic (geometric) augmentation.
    Augment,
    /// Plus copy-paste of lesions between pairs (p 0.5): +0.029 [+0.010, +0.047] test Dice at
    /// N = 16 over four lesion sets (docs/RESULTS.md).
    CopyPaste,
    /// Semi-supervised after UniMatch, when unlabelled images are given.
    Semi,
    /// nnU-Net v2's augmentation preset (within noise of the geometric one at 64 px).
    AugmentNnunet,
    /// GenSeg end to end (its generator pretrained on each fold's training pairs), with semi's
    /// unlabelled loss when unlabelled images are given.
    Genseg,
}

impl Candidate {
    pub fn name(self) -> &'static str {
        match self {
            Candidate::Augment => "augment",
            Candidate::CopyPaste => "copy-paste",
            Candidate::Semi => "semi",
            Candidate::AugmentNnunet => "augment-nnunet",
            Candidate::Genseg => "genseg",
        }
    }

    /// Seconds per iteration relative to `augment`'s, before a fold run measures it (`genseg
    /// bench schedule` and `bench gan`, docs/RESULTS.md): semi 2.7x; genseg at the paper's
    /// schedule 9.4x, 11.7x with unlabelled images, plus one pretraining step of its generator
    /// per iteration at 2.9x.
    pub fn cost(self) -> f64 {
        match self {
            Candidate::Augment => 1.0,
            Candidate::CopyPaste => 1.05,
            Candidate::AugmentNnunet => 1.3,
            Candidate::Semi => 2.7,
            Candidate::Genseg => 15.0,
        }
    }

    /// `cfg` (the plan's `train` configuration) turned into this candidate's.
    pub fn apply(self, cfg: &mut TrainConfig, unlabelled: Option<&Path>) {
        match self {
            Candidate::Augment => {}
            Candidate::CopyPaste => cfg.copy_paste = 0.5,
            Candidate::AugmentNnunet => cfg.augment_preset = crate::data::nnaug::AugmentPreset::Nnunet,
            Candidate::Semi => {
                cfg.method = Method::Semi;
                cfg.data.unlabelled = unlabelled.map(Path::to_path_buf);
            }
            // GenSeg as its verdict ran it (the data-efficient generator as wide as the
            // segmenter, augmented real pairs), with semi's loss beside its synthetic pairs when
            // unlabelled images are given. The generator pretrains as many steps as the fold
            // trains: a fixed 1000 would overrun the budget that set the fold's iterations.
            Candidate::Genseg => {
                cfg.method = Method::Genseg;
                cfg.data.unlabelled = unlabelled.map(Path::to_path_buf);
                (cfg.gan, cfg.augment_real) = (crate::gan::GanConfig::data_efficient(cfg.width), true);
                cfg.pretrain_iters = cfg.iters;
            }
        }
    }
}

/// What `genseg fit` is asked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FitConfig {
    pub data: PathBuf,
    /// How the data is read (its `size` is the plan's to choose).
    pub load: LoadOptions,
    pub unlabelled: Option<PathBuf>,
    /// Wall-clock budget, seconds.
    pub budget_s: f64,
    /// Folds asked for; `None`: 5, fewer for few pairs.
    pub folds: Option<usize>,
    /// Seed of the folds and of every run.
    pub seed: u64,
    /// Python with torch, onnx and onnxruntime for model.onnx; `None`: no ONNX file.
    pub python: Option<PathBuf>,
    /// The candidates to cross-validate, all of them whatever the budget (iterations are cut
    /// instead); `None`: the plan's choice.
    #[serde(default)]
    pub candidates: Option<Vec<Candidate>>,
}

/// plan.json: the plan, then what cross-validation measured and what was chosen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitRecord {
    pub config: FitConfig,
    pub plan: Plan,
    #[serde(default)]
    pub cv: Option<CvResult>,
    pub versions: crate::runtime::Versions,
}

/// Seconds spent on a fit across its sessions (clock.json holds those of earlier ones).
pub struct Clock {
    before: f64,
    started: Instant,
    file: PathBuf,
}

impl Clock {
    fn resume(out: &Path) -> Clock {
        let file = out.join("clock.json");
        let before = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["spent_s"].as_f64())
            .unwrap_or(0.0);
        Clock { before, started: Instant::now(), file }
    }

    pub fn spent(&self) -> f64 {
        self.before + self.started.elapsed().as_secs_f64()
    }

    /// Records the time spent so far (after each fold run), so that a killed fit resumes with it.
    pub fn save(&self) -> Result<()> {
        write_json(&self.file, &serde_json::json!({ "spent_s": self.spent() }))
    }
}

/// What `fit` reports when it ends.
pub struct FitSummary {
    pub chosen: Candidate,
    pub members: usize,
    pub cv_dice: f64,
    pub seconds: f64,
    pub onnx: Option<PathBuf>,
}

/// Runs (or resumes) the fit `cfg` into `out`.
pub fn run(cfg: &FitConfig, out: &Path, device: Device) -> Result<FitSummary> {
    let clock = Clock::resume(out);
    let (_lock, record) = prepare(cfg, out, Runs::OneAfterAnother, device)?;
    let (cv, scores) = cv::run(cfg, &record.plan, out, &clock, device)?;
    let chosen = cv.chosen;
    let members: Vec<PathBuf> = cv.members(chosen);
    write_json(
        &out.join(ENSEMBLE_FILE),
        &EnsembleFile { members: members.clone(), candidate: chosen.name().into(), weights: None },
    )?;
    let record = FitRecord { cv: Some(cv.clone()), ..record };
    write_json(&out.join("plan.json"), &record)?;
    let onnx = export_stage(cfg, out, device);
    report::write(out, &record, &cv, &scores, clock.spent())?;
    clock.save()?;
    tracing::info!("fit: done in {:.0} s of a {:.0} s budget", clock.spent(), cfg.budget_s);
    Ok(FitSummary {
        chosen,
        members: members.len(),
        cv_dice: cv.row(chosen).map(|r| r.mean).unwrap_or(f64::NAN),
        seconds: clock.spent(),
        onnx,
    })
}

/// The stages before training, with the fit folder locked: inputs never overwritten, the data
/// the same as when the fit began, and plan.json (made now, or kept from the first session).
fn prepare(cfg: &FitConfig, out: &Path, runs: Runs, device: Device) -> Result<(crate::runtime::FolderLock, FitRecord)> {
    let mut inputs = vec![("the data folder", cfg.data.as_path())];
    inputs.extend(cfg.unlabelled.as_deref().map(|p| ("--unlabelled", p)));
    crate::runtime::refuse_overlap("--out", out, &inputs)?;
    let created = !out.exists();
    ensure_writable_dir(out)?;
    let lock = lock_folder(out)?;
    let mut fingerprint = Fingerprint::of(&cfg.data)?;
    if let Some(dir) = &cfg.unlabelled {
        fingerprint.unlabelled = Some(Box::new(Fingerprint::of_files(dir, &crate::data::unlabelled::files(dir)?)?));
    }
    fingerprint.refuse_changed(out, &cfg.data)?;
    // Data or settings refused before a plan exists leave no folder this call created.
    let record = match plan_stage(cfg, out, runs, device) {
        Ok(record) => record,
        Err(e) => {
            drop(lock);
            if created {
                let _ = std::fs::remove_dir_all(out);
            }
            return Err(e);
        }
    };
    write_json(&out.join("data_fingerprint.json"), &fingerprint)?;
    Ok((lock, record))
}

/// plan.json's plan: the one made when the fit started (a resumed fit keeps it), or a new one.
fn plan_stage(cfg: &FitConfig, out: &Path, runs: Runs, device: Device) -> Result<FitRecord> {
    let path = out.join("plan.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let record: FitRecord =
            serde_json::from_str(&text).with_context(|| format!("{} is corrupt", path.display()))?;
        if record.config != *cfg {
            anyhow::bail!(
                "{} holds a fit with other settings (data, budget, folds, seed or --unlabelled); choose another --out or \
                 delete that folder",
                out.display()
            );
        }
        tracing::info!("fit: resuming with the plan in {}", path.display());
        return Ok(record);
    }
    tracing::info!("fit: profiling {} and measuring training steps", cfg.data.display());
    let set = crate::data::load(&cfg.data, &cfg.load)?;
    if let Some(dir) = &cfg.unlabelled {
        // Every labelled pair validates in some fold: none may come back as an unlabelled image.
        let pool = crate::data::unlabelled::load(dir, &set, &cfg.load)?;
        crate::data::unlabelled::refuse_held_out(
            &pool,
            &format!("--unlabelled {}", dir.display()),
            &[("validation", &set)],
        )?;
    }
    let profile = Profile::of(&cfg.data, &set)?;
    let dims = profile.dims;
    let folds = plan::fold_count(profile.pairs, cfg.folds)?;
    let (required, optional, droppable) = match &cfg.candidates {
        Some(given) => {
            if given.contains(&Candidate::Semi) {
                Method::Semi.check_unlabelled(cfg.unlabelled.is_some())?;
            }
            (given.clone(), vec![], false)
        }
        None => {
            let mut required = vec![Candidate::Augment, Candidate::CopyPaste];
            if cfg.unlabelled.is_some() {
                required.insert(1, Candidate::Semi);
            }
            (required, vec![Candidate::AugmentNnunet, Candidate::Genseg], true)
        }
    };
    let input = PlanInput {
        profile,
        load: &cfg.load,
        budget_s: cfg.budget_s,
        folds,
        required,
        optional,
        runs,
        droppable,
        // export handles 2-D U-Nets: a 3-D fit keeps no time back for it.
        exports: cfg.python.is_some() && dims == 2,
    };
    let plan = plan::plan(input, device)?;
    for reason in &plan.reasons {
        tracing::info!("plan: {reason}");
    }
    let record = FitRecord { config: cfg.clone(), plan, cv: None, versions: crate::runtime::versions(device) };
    write_json(&path, &record)?;
    Ok(record)
}

/// model.onnx of the ensemble, checked in onnxruntime; a fit without Python or with a network
/// export does not handle keeps its ensemble for predict and says why there is no ONNX file.
fn export_stage(cfg: &FitConfig, out: &Path, device: Device) -> Option<PathBuf> {
    let python = cfg.python.as_deref()?;
    let file = out.join("model.onnx");
    tracing::info!("fit: exporting the ensemble to {}", file.display());
    match crate::export::export(out, &file, crate::export::Format::Onnx, python, device) {
        Ok(checked) => {
            tracing::info!(
                "fit: model.onnx matches the ensemble's prediction within {:.1e} on {} images",
                checked.max_difference,
                checked.images
            );
            Some(file)
        }
        Err(e) => {
            tracing::warn!("fit: no model.onnx ({e:#}); predict with `genseg predict --run {}`", out.display());
            None
        }
    }
}
