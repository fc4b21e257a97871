//! The annotation loop with a simulated annotator: a labelled set's true masks stand in for the
//! expert. Its pool images (outside a held-out test split) form a serve project with no masks;
//! the first images are drawn from scratch, then in rounds the project retrains (the server's own
//! loop, [`App`]), the strategy orders the queue, and the annotator corrects the next images'
//! proposals to their true masks. Measured per round: test Dice of the model, and the pixels the
//! annotator changed against the pixels of drawing each mask from scratch.
//!
//! OUT/rounds.csv and OUT/effort.csv grow as rounds finish; rerunning the same command resumes
//! (annotations and models are on disk; finished rounds are not redone).
use super::app::{lock, App, LoopConfig};
use super::model::{self, RetrainConfig};
use super::project::{list_images, Image};
use super::queue::Strategy;
use crate::data::image_io::decode_mask;
use crate::eval::metrics::{CaseMetrics, EmptyPolicy, MetricOptions};
use crate::runtime::write_json;
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Device;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CampaignConfig {
    /// A labelled set (images/ + masks/).
    pub data: PathBuf,
    pub strategy: Strategy,
    /// Seed of the split, the first images and every retrain.
    pub seed: u64,
    /// Annotated images after each round, increasing; the first are drawn from scratch.
    pub rounds: Vec<usize>,
    /// Held-out test images (never in the pool).
    pub test_n: usize,
    /// Pool images the strategy chooses from.
    pub pool_n: usize,
    pub budget_s: f64,
    pub folds: usize,
}

/// Runs (or resumes) the campaign into `out`.
pub fn run(cfg: &CampaignConfig, out: &Path, exe: &Path, device: Device) -> Result<()> {
    if cfg.rounds.is_empty() || cfg.rounds.windows(2).any(|w| w[0] >= w[1]) {
        bail!("--rounds must be increasing annotation counts, e.g. 4,8,16,28,40");
    }
    let labelled: Vec<Image> = list_images(&cfg.data)?.into_iter().filter(|im| im.data_mask.is_some()).collect();
    let (test, pool) = split(&labelled, cfg)?;
    crate::runtime::refuse_overlap("--out", out, &[("the data folder", cfg.data.as_path())])?;
    crate::runtime::ensure_writable_dir(out)?;
    let _lock = crate::runtime::lock_folder(out)?;
    let record = out.join("campaign.json");
    match std::fs::read_to_string(&record) {
        Ok(text) if serde_json::from_str::<CampaignConfig>(&text).ok().as_ref() != Some(cfg) => {
            bail!("{} holds a campaign with other settings; choose another --out", out.display())
        }
        Ok(_) => {}
        Err(_) => write_json(&record, cfg)?,
    }
    let pool_dir = out.join("pool");
    link_pool(&pool, &pool_dir)?;
    let truth: HashMap<String, PathBuf> =
        labelled.iter().map(|im| (im.id.clone(), im.data_mask.clone().expect("labelled"))).collect();
    let (project, _project_lock) = super::open_project(&pool_dir, &out.join("project"), device)?;
    let retrain = RetrainConfig {
        budget_s: cfg.budget_s,
        folds: cfg.folds,
        seed: cfg.seed,
        exe: exe.to_path_buf(),
        device: if device.is_cuda() { "cuda".into() } else { "cpu".into() },
        threads: tch::get_num_threads().max(1) as usize,
    };
    let app = App::start(project, cfg.strategy, LoopConfig { retrain_every: 0, retrain }, device)?;
    app.wait_for_training().map_err(anyhow::Error::msg)?;
    // The first images: a seeded draw, the same for every strategy, drawn from scratch.
    let mut first: Vec<String> = pool.iter().map(|im| im.id.clone()).collect();
    first.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed));
    let rounds_file = out.join("rounds.csv");
    let effort_file = out.join("effort.csv");
    let done = done_rounds(&rounds_file)?;
    let mut annotated = lock(&app.project).annotated().len();
    {
        let project = lock(&app.project);
        first.retain(|id| project.find(id).is_some_and(|i| !project.is_annotated(i)));
    }
    for id in first.iter().take(cfg.rounds[0].saturating_sub(annotated)) {
        annotate(&app, id, &truth, None, &effort_file, cfg, 0)?;
    }
    for (r, &count) in cfg.rounds.iter().enumerate() {
        if !done.contains(&count) {
            let version = app.retrain().map_err(anyhow::Error::msg)?;
            app.wait_for_training().map_err(anyhow::Error::msg)?;
            let dice = test_dice(&app, &test, device)?;
            tracing::info!(
                "campaign {}: {count} annotated, model v{version}, test Dice {dice:.4}",
                cfg.strategy.name()
            );
            let row = [
                cfg.strategy.name().into(),
                count.to_string(),
                cfg.seed.to_string(),
                version.to_string(),
                format!("{dice:.6}"),
            ];
            append(&rounds_file, &["strategy", "annotated", "seed", "model_version", "test_dice"], &row)?;
        }
        let Some(&next) = cfg.rounds.get(r + 1) else { break };
        annotated = lock(&app.project).annotated().len();
        if lock(&app.model).is_none() {
            bail!("no model after the round of {count} annotations");
        }
        let chosen: Vec<String> = app.queue().into_iter().take(next.saturating_sub(annotated)).collect();
        for id in &chosen {
            annotate(&app, id, &truth, Some(device), &effort_file, cfg, count)?;
        }
    }
    Ok(())
}

/// The simulated annotator on image `id`: with a model (`device` given), the pixels where its
/// proposal differs from the true mask are the effort; without, every mask pixel. Saves the true
/// mask through the app, as the page would.
fn annotate(
    app: &std::sync::Arc<App>,
    id: &str,
    truth: &HashMap<String, PathBuf>,
    device: Option<Device>,
    effort_file: &Path,
    cfg: &CampaignConfig,
    from: usize,
) -> Result<()> {
    let true_mask = decode_mask(&truth[id], true)?.mask;
    let i = lock(&app.project).find(id).context("a pool image")?;
    let mask_pixels = true_mask.pixels().filter(|p| p.0[0] > 0).count();
    let changed = match device {
        Some(device) => {
            let model = lock(&app.model);
            let proposal = model::proposal(model.as_ref().context("a model")?, &app.images[i].file, device)?;
            proposal.pixels().zip(true_mask.pixels()).filter(|(a, b)| (a.0[0] > 0) != (b.0[0] > 0)).count()
        }
        None => mask_pixels,
    };
    let row = [
        cfg.strategy.name().into(),
        cfg.seed.to_string(),
        from.to_string(),
        id.into(),
        changed.to_string(),
        mask_pixels.to_string(),
    ];
    append(effort_file, &["strategy", "seed", "annotated_before", "case", "changed_pixels", "mask_pixels"], &row)?;
    let mut png = Vec::new();
    image::DynamicImage::ImageLuma8(true_mask)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    let base = lock(&app.project).version(i);
    app.save(id, base, &png).map_err(|e| anyhow::anyhow!("saving {id}: {e:?}"))?;
    Ok(())
}

/// Mean Dice of the current model on the test images, at each image's own size.
fn test_dice(app: &App, test: &[Image], device: Device) -> Result<f64> {
    let model = lock(&app.model);
    let m = model.as_ref().context("a model")?;
    let opts = MetricOptions::pixels(EmptyPolicy::One, 2);
    let mut total = 0.0;
    for im in test {
        let pred = model::proposal(m, &im.file, device)?;
        let truth = decode_mask(im.data_mask.as_ref().expect("labelled"), true)?.mask;
        if pred.dimensions() != truth.dimensions() {
            bail!("{}: mask and image sizes differ", im.id);
        }
        let bits = |g: &image::GrayImage| g.pixels().map(|p| p.0[0] > 0).collect::<Vec<bool>>();
        let shape = [truth.height() as usize, truth.width() as usize];
        total += CaseMetrics::compute(&im.id, &bits(&pred), &bits(&truth), &shape, &opts).dice;
    }
    Ok(total / test.len() as f64)
}

/// The seeded test split and the pool after it.
fn split(labelled: &[Image], cfg: &CampaignConfig) -> Result<(Vec<Image>, Vec<Image>)> {
    let need = cfg.test_n + cfg.pool_n;
    if labelled.len() < need || cfg.pool_n < *cfg.rounds.last().unwrap_or(&0) {
        bail!(
            "{}: {} labelled images; the campaign needs --test-n + --pool-n = {need}, and a pool of at least the last round",
            cfg.data.display(),
            labelled.len()
        );
    }
    let mut order = labelled.to_vec();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(1_000_003)));
    let pool = order.split_off(cfg.test_n);
    Ok((order, pool.into_iter().take(cfg.pool_n).collect()))
}

/// OUT/pool/images/: links to the pool images, without masks (the project's data folder).
fn link_pool(pool: &[Image], dir: &Path) -> Result<()> {
    let images = dir.join("images");
    std::fs::create_dir_all(&images)?;
    for im in pool {
        let name = im.file.file_name().context("a file name")?;
        let link = images.join(name);
        if !link.exists() {
            std::os::unix::fs::symlink(std::path::absolute(&im.file)?, &link)
                .with_context(|| format!("cannot link {}", link.display()))?;
        }
    }
    Ok(())
}

/// Appends `record` to the CSV `file` (after `header` when the file is new), quoted by the csv
/// crate and synced, so a killed campaign keeps every finished row.
fn append(file: &Path, header: &[&str], record: &[String]) -> Result<()> {
    let new = !file.exists();
    let mut w = csv::Writer::from_writer(std::fs::OpenOptions::new().create(true).append(true).open(file)?);
    if new {
        w.write_record(header)?;
    }
    w.write_record(record)?;
    w.into_inner().map_err(|e| anyhow::anyhow!("cannot write {}: {e}", file.display()))?.sync_all()?;
    Ok(())
}

/// The annotation counts of the rounds rounds.csv already holds.
fn done_rounds(file: &Path) -> Result<Vec<usize>> {
    if !file.exists() {
        return Ok(vec![]);
    }
    let mut done = Vec::new();
    for row in csv::Reader::from_path(file)?.records() {
        done.extend(row?.get(1).and_then(|c| c.parse::<usize>().ok()));
    }
    Ok(done)
}
