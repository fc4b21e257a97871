//! `genseg demo`: phantom data, then the default (`augment`) beside `plain` and `genseg` (with a
//! short generator pretraining) and a comparison, small enough for a laptop CPU in minutes.
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
    out!("\nmethod   test Dice (n)        pictures");
    for (m, s, dir) in &rows {
        let (dice, pictures) = (&s.test.dice, dir.join("overlays_test.png"));
        out!("{:<8} {:.3} ± {:.3} ({})  {}", m.name(), dice.mean, dice.sd, dice.n, pictures.display());
    }
    let samples = out.join("genseg").join("samples.png");
    out!("generator samples (mask | real | synthetic | augmented mask | synthetic): {}", samples.display());
    out!("curves: {}", out.join("augment").join("curves.png").display());
    let run = out.join("augment");
    out!("next, with the default method's model: genseg predict --run {} IMAGES --out PRED", run.display());
    out!("                                      genseg export --run {} --out model.onnx", run.display());
    Ok(rows)
}
