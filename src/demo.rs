//! `genseg demo`: phantom data, then the default (`augment`) beside `plain` and `genseg` (with a
//! short generator pretraining), then `fit` on the same labelled pairs (a one-minute budget), all
//! scored on the same test cases: small enough for a laptop CPU in minutes.
use crate::data::phantom;
use crate::data::split::DataConfig;
use crate::data::LoadOptions;
use crate::gan::GanConfig;
use crate::out;
use crate::runtime::ensure_writable_dir;
use crate::train::{segment, Method, RunSummary, TrainConfig};
use anyhow::Result;
use std::path::{Path, PathBuf};
use tch::Device;

/// The demo's run settings: 64 px phantoms, 8 training and 4 validation cases, narrow networks,
/// 300 iterations.
pub fn config(data: &Path, method: Method, seed: u64) -> TrainConfig {
    let data = DataConfig {
        load: LoadOptions { size: 64, ..Default::default() },
        n: 12,
        val_n: Some(4),
        ..DataConfig::new(data)
    };
    TrainConfig {
        method,
        seed,
        width: 16,
        depth: 4,
        iters: 300,
        val_every: 25,
        batch_size: 4,
        gan: GanConfig { ngf: 16, ndf: 16, ..Default::default() },
        pretrain_iters: 300,
        ..TrainConfig::new(data)
    }
}

/// Writes the phantom set (once) and trains `plain`, `augment` and `genseg` into `out`; prints
/// the comparison, where the pictures are, and the next steps with the default's model.
pub fn run(out: &Path, seed: u64, device: Device) -> Result<Vec<(Method, RunSummary, PathBuf)>> {
    ensure_writable_dir(out)?;
    let data = out.join("data");
    if !data.join("masks").is_dir() {
        phantom::write_dataset(&data, 60, 64, seed)?;
    }
    out!("phantom dataset: {} (60 pairs, 64 px)", data.display());
    let mut rows = Vec::new();
    for method in [Method::Plain, Method::Augment, Method::Genseg] {
        let dir = out.join(method.name());
        let s = segment::run(&config(&data, method, seed), &dir, device)?;
        rows.push((method, s, dir));
    }
    let fit = out.join("fit");
    let fit_dice = fit_on_the_same_pairs(&data, &fit, seed, device)?;
    out!("\nmethod   test Dice (n)        pictures");
    for (m, s, dir) in &rows {
        let (dice, pictures) = (&s.test.dice, dir.join("overlays_test.png"));
        out!("{:<8} {:.3} ± {:.3} ({})  {}", m.name(), dice.mean, dice.sd, dice.n, pictures.display());
    }
    out!(
        "fit      {fit_dice:.3} (the same {} test cases)  {}",
        rows[1].1.test.dice.n,
        fit.join("report.html").display()
    );
    let samples = out.join("genseg").join("samples.png");
    out!("generator samples (mask | real | synthetic | augmented mask | synthetic): {}", samples.display());
    out!("curves: {}", out.join("augment").join("curves.png").display());
    out!("next, with the fit's ensemble: genseg predict --run {} IMAGES --out PRED", fit.display());
    out!("                              (model.onnx: {})", fit.join("model.onnx").display());
    Ok(rows)
}

/// `genseg fit` (60 s budget) into `out` on the labelled pairs of the `augment` run, copied to
/// labelled/ beside it; returns its ensemble's mean test Dice on that run's test cases.
fn fit_on_the_same_pairs(data: &Path, out: &Path, seed: u64, device: Device) -> Result<f64> {
    let cfg = config(data, Method::Augment, seed);
    let splits = crate::data::split::load_splits(&cfg.data, seed)?;
    let labelled = out.with_file_name("labelled");
    for dir in ["images", "masks"] {
        std::fs::create_dir_all(labelled.join(dir))?;
        for id in splits.split.train.iter().chain(&splits.split.val) {
            let name = format!("{id}.png");
            std::fs::copy(data.join(dir).join(&name), labelled.join(dir).join(&name))?;
        }
    }
    let fit = crate::fit::FitConfig {
        data: std::path::absolute(&labelled)?,
        load: LoadOptions::default(),
        unlabelled: None,
        budget_s: 60.0,
        folds: None,
        seed,
        python: Some(crate::export::default_python()),
        candidates: None,
    };
    crate::fit::run(&fit, out, device)?;
    let model = crate::infer::ensemble::Ensemble::load(out, device)?;
    let test = &splits.test;
    let probs = model.probs(&test.images, device, Default::default());
    let options = crate::eval::metrics::MetricOptions::pixels(cfg.empty_policy, test.dims());
    let cases = crate::eval::metrics::batch_metrics(&test.ids, &probs, &test.masks, &test.labels, &options);
    Ok(crate::eval::report::summarize(&cases).dice.mean)
}
