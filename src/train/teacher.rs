//! Pseudo-labelled pairs for a run's generator (`--pseudo-labels`, issue 31): a teacher, an
//! `augment` run on the same split, labels the run's unlabelled images, and those it labels
//! confidently ([`crate::gan::pseudo`]) join the labelled pairs the generator is pretrained on,
//! so it sees more than the 8-40 labelled pairs. The teacher is an ordinary run folder beside the
//! generator's (GENERATOR-teacher), trained by [`super::segment::generator_pairs`], so a killed
//! run resumes it; its pseudo_labels.json lists what the filter kept.
use super::config::{Method, TrainConfig};
use crate::data::split::Splits;
use crate::data::SegDataset;
use crate::gan::pseudo::{confident_pairs, joined, PseudoRecord};
use crate::runtime::write_json;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use tch::Device;

/// Refuses `--pseudo-labels` where it cannot work, before anything is written.
pub fn check(cfg: &TrainConfig, splits: &Splits) -> Result<()> {
    if cfg.pseudo.is_none() {
        return Ok(());
    }
    if !cfg.method.uses_generator() {
        bail!(
            "--pseudo-labels: --method {} has no generator to pretrain; use --method separate or genseg",
            cfg.method.name()
        );
    }
    if let Some(dir) = &cfg.generator {
        bail!(
            "--pseudo-labels pretrains the generator, and --generator {} is already trained; drop one",
            dir.display()
        );
    }
    check_pool(splits)
}

/// The unlabelled images the teacher labels are there, and the masks binary.
pub fn check_pool(splits: &Splits) -> Result<()> {
    if splits.unlabelled.is_none() {
        bail!("--pseudo-labels needs unlabelled images: give --unlabelled DIR or --unlabelled-n U");
    }
    if splits.train.labels.len() > 1 {
        bail!("--pseudo-labels: the teacher's masks are binary; this set has labels {:?}", splits.train.labels);
    }
    Ok(())
}

/// The splits the teacher trains on: the run's, without its unlabelled or out-of-domain images.
pub fn teacher_splits(splits: &Splits) -> Splits {
    Splits {
        split: splits.split.clone(),
        train: splits.train.clone(),
        val: splits.val.clone(),
        test: splits.test.clone(),
        ood: None,
        unlabelled: None,
    }
}

/// The training pairs followed by the unlabelled images the finished teacher in `dir` labels
/// confidently under `cfg.pseudo`; pseudo_labels.json in `dir` records the choice.
pub fn with_confident_pairs(cfg: &TrainConfig, splits: &Splits, dir: &Path, device: Device) -> Result<SegDataset> {
    let filter = cfg.pseudo.as_ref().context("--pseudo-labels: no filter")?;
    let pool = splits.unlabelled.as_ref().context("--pseudo-labels needs unlabelled images")?;
    let (_vs, teacher, _spec) = crate::infer::load_model(dir, device)?;
    let probs = crate::infer::predict_probs(&teacher, &pool.images, device);
    let (pairs, record) = confident_pairs(pool, &probs, &splits.train.labels, filter);
    tracing::info!(
        "pseudo-labels: {} of {} unlabelled images labelled confidently join the generator's {} pairs",
        pairs.len(),
        pool.len(),
        splits.train.len()
    );
    write_json(&dir.join(PSEUDO_FILE), &record)?;
    Ok(joined(&splits.train, &pairs))
}

/// The ids of the pseudo-labelled pairs the generator in `gen_dir` learned from (none without
/// `--pseudo-labels`), for data_usage.json.
pub fn pseudo_ids(gen_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(teacher_dir(gen_dir).join(PSEUDO_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<PseudoRecord>(&t).ok())
        .map(|r| r.kept.into_iter().map(|(id, _)| id).collect())
        .unwrap_or_default()
}

const PSEUDO_FILE: &str = "pseudo_labels.json";

/// GENERATOR-teacher, beside the generator's folder.
pub fn teacher_dir(gen_dir: &Path) -> PathBuf {
    let name = gen_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "generator".into());
    gen_dir.with_file_name(format!("{name}-teacher"))
}

/// `cfg` as a plain `augment` run: no generator, no unlabelled images.
pub fn teacher_config(cfg: &TrainConfig) -> TrainConfig {
    let mut t = cfg.clone();
    t.method = Method::Augment;
    (t.pseudo, t.generator, t.generator_prior) = (None, None, None);
    t.data.unlabelled = None;
    t
}
