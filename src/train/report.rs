//! The end of a run: the best model scored on the test (and out-of-domain) cases, per-case CSVs,
//! summary.json, data_usage.json and the pictures (curves, overlays, generator samples).
use super::config::{Method, TrainConfig};
use super::record::{DataUsage, LabelSummary, LoopState, MetricsLine, RunSummary};
use super::trainer::Trainer;
use crate::data::augment::augment_masks_with_images;
use crate::data::split::Splits;
use crate::data::SegDataset;
use crate::eval::metrics::CaseMetrics;
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
    // Every labelled pair trained or validated: no test split, no test score (NaN, n = 0).
    let test_cases = if splits.test.is_empty() {
        vec![]
    } else {
        let (cases, probs) = evaluate(&t.seg.net, &splits.test, device, cfg.empty_policy);
        save_overlays(&out.join("overlays_test.png"), &splits.test, &probs, &cases)?;
        cases
    };
    write_cases_csv(&out.join("test_cases.csv"), &test_cases)?;
    let ood_cases = match &splits.ood {
        Some(ood) => {
            let (cases, probs) = evaluate(&t.seg.net, ood, device, cfg.empty_policy);
            write_cases_csv(&out.join("ood_cases.csv"), &cases)?;
            save_overlays(&out.join("overlays_ood.png"), ood, &probs, &cases)?;
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
            generator_ids: match cfg.method.uses_generator() {
                true => {
                    let gen_dir = cfg.generator.clone().unwrap_or_else(|| out.join("generator"));
                    splits.split.train.iter().cloned().chain(super::teacher::pseudo_ids(&gen_dir)).collect()
                }
                false => vec![],
            },
            val_ids: splits.split.val.clone(),
            test_ids: splits.split.test.clone(),
            unlabelled_ids: match (cfg.method.uses_unlabelled(), &splits.unlabelled) {
                (true, Some(u)) => u.ids.clone(),
                _ => vec![],
            },
        },
    )?;
    plot_curves(out, Some((state.best_iter, state.best_val_dice)))?;
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

/// Up to 8 cases from the worst to the best Dice, evenly spread, each under its id and Dice:
/// the image | the prediction (red) with the reference outlined (green) (volumes: middle
/// slices, any label).
pub(crate) fn save_overlays(path: &Path, data: &SegDataset, probs: &Tensor, cases: &[CaseMetrics]) -> Result<()> {
    // A multi-label case's Dice: the mean over its labels (ids `{case}/{label}`).
    let dice = |id: &str| {
        let own: Vec<f64> = cases
            .iter()
            .filter(|c| c.id == id || c.id.strip_prefix(id).is_some_and(|rest| rest.starts_with('/')))
            .map(|c| c.dice)
            .filter(|d| d.is_finite())
            .collect();
        if own.is_empty() {
            f64::NAN
        } else {
            own.iter().sum::<f64>() / own.len() as f64
        }
    };
    let mut order: Vec<(usize, f64)> = data.ids.iter().enumerate().map(|(i, id)| (i, dice(id))).collect();
    order.sort_by(|a, b| a.1.total_cmp(&b.1));
    let shown = order.len().min(8);
    let picks = (0..shown).map(|k| order[if shown > 1 { k * (order.len() - 1) / (shown - 1) } else { 0 }]);
    let rows: Vec<(String, Vec<image::RgbImage>)> = picks
        .map(|(i, d)| {
            let img = tensor_to_rgb(&picture(&data.images.get(i as i64)));
            let pred = foreground(&probs.get(i as i64));
            let reference = foreground(&data.masks.get(i as i64));
            let caption = format!("{}  Dice {d:.3}", data.ids[i]);
            (caption, vec![img.clone(), crate::viz::overlay(&img, &pred, Some(&reference))])
        })
        .collect();
    crate::viz::save_png(path, &crate::viz::captioned_grid(&rows)?)
}

/// curves.png: training loss and validation Dice against iteration, each on its own axis, with
/// the kept (best validation) model marked.
fn plot_curves(out: &Path, best: Option<(usize, f64)>) -> Result<()> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl"))?;
    let lines: Vec<MetricsLine> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let points = |f: fn(&MetricsLine) -> f64| -> Vec<(f64, f64)> {
        lines.iter().map(|l| (l.iter as f64, f(l))).filter(|p| p.1.is_finite()).collect()
    };
    let best = best.filter(|b| b.0 > 0 && b.1.is_finite()).map(|(i, d)| (i as f64, d));
    crate::viz::curves(&out.join("curves.png"), &points(|l| l.loss), &points(|l| l.val_dice), best)
}
