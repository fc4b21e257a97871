//! The end of a run: the best model scored on the test (and out-of-domain) cases, per-case CSVs,
//! summary.json, data_usage.json and the pictures (curves, overlays, generator samples).
use super::config::{Method, TrainConfig};
use super::record::{DataUsage, LabelSummary, LoopState, MetricsLine, RunSummary};
use super::trainer::Trainer;
use crate::data::augment::augment_masks_with_images;
use crate::data::split::Splits;
use crate::data::SegDataset;
use crate::eval::report::{summarize, write_cases_csv};
use crate::eval::{evaluate, label_cases};
use crate::gan::{Backgrounds, Gan};
use crate::learn::checkpoint;
use crate::runtime::{load_vars, write_json};
use crate::viz::{foreground, mask_picture, picture, tensor_to_rgb};
use anyhow::{Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use tch::{Device, Tensor};

pub fn finish(out: &Path, device: Device, mut t: Trainer, splits: &Splits, state: &LoopState) -> Result<RunSummary> {
    let cfg = t.cfg;
    let alpha = t.arm.alpha_softmax();
    if let Some(gan) = t.arm.gan() {
        if cfg.method == Method::Genseg {
            let dir = out.join("generator_final");
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            gan.save(&dir)?;
        }
        save_samples(&out.join("samples.png"), gan, &splits.train, cfg, device)?;
    }
    load_vars(&mut t.seg.vs, &out.join("model.safetensors"))?;
    let (test_cases, test_probs) = evaluate(&t.seg.net, &splits.test, device, cfg.empty_policy);
    write_cases_csv(&out.join("test_cases.csv"), &test_cases)?;
    save_overlays(&out.join("overlays_test.png"), &splits.test, &test_probs)?;
    let ood_cases = match &splits.ood {
        Some(ood) => {
            let (cases, probs) = evaluate(&t.seg.net, ood, device, cfg.empty_policy);
            write_cases_csv(&out.join("ood_cases.csv"), &cases)?;
            save_overlays(&out.join("overlays_ood.png"), ood, &probs)?;
            Some(cases)
        }
        None => None,
    };
    let labels = if splits.test.labels.len() > 1 {
        let label = |label| LabelSummary {
            label,
            test: summarize(&label_cases(&test_cases, label)),
            ood: ood_cases.as_ref().map(|c| summarize(&label_cases(c, label))),
        };
        splits.test.labels.iter().map(|&l| label(l)).collect()
    } else {
        vec![]
    };
    write_json(
        &out.join("data_usage.json"),
        &DataUsage {
            seg_optimizer_ids: t.seen.clone(),
            generator_ids: if cfg.method.uses_generator() { splits.split.train.clone() } else { vec![] },
            val_ids: splits.split.val.clone(),
            test_ids: splits.split.test.clone(),
        },
    )?;
    plot_curves(out)?;
    let summary = RunSummary {
        method: cfg.method,
        seed: cfg.seed,
        train_n: splits.train.len(),
        val_n: splits.val.len(),
        best_iter: state.best_iter,
        stopped_iter: state.iter,
        iters: cfg.iters,
        best_val_dice: state.best_val_dice,
        test: summarize(&test_cases),
        ood: ood_cases.as_ref().map(|c| summarize(c)),
        labels,
        label_names: crate::data::nnunet::label_names(&cfg.data.data)
            .into_iter()
            .filter(|(value, _)| splits.test.labels.contains(value))
            .collect(),
        alpha,
        seconds: state.seconds,
        seconds_per_iter: state.seconds / state.iter.max(1) as f64,
    };
    write_json(&out.join("summary.json"), &summary)?;
    checkpoint::remove(&out.join("checkpoint"))?;
    Ok(summary)
}

/// samples.png, rows of the first four training cases: mask | real | synthetic from the real
/// mask | augmented mask | its synthetic image (drawn into the next case's image by an
/// inpainting generator).
fn save_samples(path: &Path, gan: &Gan, train: &SegDataset, cfg: &TrainConfig, device: Device) -> Result<()> {
    let shown: Vec<String> = train.ids.iter().take(4).cloned().collect();
    let shown = train.select(&shown)?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let (aug, lesions) = augment_masks_with_images(&shown.masks, &shown.images, &cfg.augment, &mut rng);
    let (x, m) = (shown.images.to_device(device), shown.masks.to_device(device));
    let (fake, fake_aug) = tch::no_grad(|| {
        let next = Backgrounds::next_in_batch(&x, &m, &lesions.to_device(device));
        (gan.synthesize(&m, &Backgrounds::own(&x, &m)), gan.synthesize(&aug.to_device(device), &next))
    });
    let rows: Vec<Vec<Tensor>> = (0..shown.len() as i64)
        .map(|i| {
            vec![
                mask_picture(&shown.masks.get(i)),
                picture(&shown.images.get(i)),
                picture(&fake.get(i).to_device(Device::Cpu)),
                mask_picture(&aug.get(i)),
                picture(&fake_aug.get(i).to_device(Device::Cpu)),
            ]
        })
        .collect();
    crate::viz::save_png(path, &crate::viz::tensor_grid(&rows))
}

/// Up to 8 cases: image | reference outline on prediction overlay (volumes: middle slices,
/// any label).
fn save_overlays(path: &Path, data: &SegDataset, probs: &Tensor) -> Result<()> {
    let rows: Vec<Vec<image::RgbImage>> = (0..data.len().min(8) as i64)
        .map(|i| {
            let img = tensor_to_rgb(&picture(&data.images.get(i)));
            let pred = foreground(&probs.get(i));
            let reference = foreground(&data.masks.get(i));
            vec![img.clone(), crate::viz::overlay(&img, &pred, Some(&reference))]
        })
        .collect();
    crate::viz::save_png(path, &crate::viz::image_grid(&rows))
}

/// curves.png: training loss and validation Dice against iteration.
pub fn plot_curves(out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl"))?;
    let lines: Vec<MetricsLine> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let series = |label: &str, f: fn(&MetricsLine) -> f64| crate::viz::Series {
        label: label.into(),
        points: lines.iter().map(|l| (l.iter as f64, f(l))).filter(|p| p.1.is_finite()).collect(),
        intervals: vec![],
    };
    crate::viz::line_chart(
        &out.join("curves.png"),
        "training loss and validation Dice",
        "iteration",
        "value",
        &[series("train loss", |l| l.loss), series("val Dice", |l| l.val_dice)],
        false,
    )
}
