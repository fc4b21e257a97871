//! `genseg synth-eval`: how much a generator's synthetic pairs teach a segmenter, measured
//! directly instead of through a whole study.
//!
//! For one split (N labelled pairs, seed) it pretrains the generator on the training pairs (or
//! reuses the one already in `out/generator`), then reports:
//! - TSTR: the run's segmenter trained on synthetic pairs only (generated from augmented
//!   training masks, through the reference's photometric chain with `--synthetic-photometric`),
//!   validated and tested on the real validation and test cases; beside it
//!   TRTR, the same segmenter trained on the real training pairs;
//! - memorisation: the median distance from a synthetic image to its nearest training image,
//!   divided by the same median for real held-out images (1 = no closer to the training set than
//!   unseen real data; a generator that copies its training images gives about 0 from the
//!   training masks themselves; an inpainting generator keeps a training image outside its hole,
//!   so its ratio is low by construction);
//! - diversity: the mean per-pixel standard deviation over `samples` draws for the same masks;
//! - fidelity: the held-out L1 of generated against real images;
//! - synth_eval.png: per mask, mask | nearest training image | `samples` synthetic images.
//!
//! With `pseudo`, the generator also learns from the unlabelled images the TRTR segmenter
//! labels confidently ([`crate::gan::pseudo`]): the same measurements say whether those pairs
//! make a generator that teaches more.
use crate::data::augment::{augment_masks_with_images, AugmentConfig};
use crate::data::photometric;
use crate::data::split::{load_splits, Split, Splits};
use crate::data::SegDataset;
use crate::eval::stats::median;
use crate::gan::pseudo::{confident_pairs, joined, PseudoFilter};
use crate::gan::{pretrain, Backgrounds, Gan, GanConfig, GanSpec};
use crate::runtime::{ensure_writable_dir, versions, write_json, Versions};
use crate::train::{segment, TrainConfig};
use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone)]
pub struct SynthEvalConfig {
    /// The segmenter both TSTR and TRTR train (split, seed, network, budget), the GAN settings
    /// and the generator's pretraining iterations.
    pub run: TrainConfig,
    /// Synthetic pairs the TSTR segmenter trains on (`None`: 8 per training pair).
    pub synthetic_n: Option<usize>,
    /// Draws per mask for diversity and the picture.
    pub samples: usize,
    /// Train the generator on the labelled pairs plus the unlabelled images the TRTR segmenter
    /// labels confidently (`None`: the labelled pairs alone).
    pub pseudo: Option<PseudoFilter>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SynthEvalReport {
    /// Labelled pairs (training + validation) and the split's seed.
    pub n: usize,
    pub seed: u64,
    pub generator: GanConfig,
    pub pretrain_iters: usize,
    /// The generator folder the pretraining started from (`--generator-prior`).
    #[serde(default)]
    pub generator_prior: Option<PathBuf>,
    pub synthetic_n: usize,
    #[serde(with = "crate::runtime::json_f64")]
    pub tstr_dice: f64,
    #[serde(with = "crate::runtime::json_f64")]
    pub trtr_dice: f64,
    #[serde(with = "crate::runtime::json_f64")]
    pub tstr_over_trtr: f64,
    /// Synthetic images from augmented training masks.
    #[serde(with = "crate::runtime::json_f64")]
    pub memorisation_ratio: f64,
    /// Synthetic images from the training masks as they are.
    #[serde(with = "crate::runtime::json_f64")]
    pub memorisation_ratio_training_masks: f64,
    #[serde(with = "crate::runtime::json_f64")]
    pub diversity: f64,
    #[serde(with = "crate::runtime::json_f64")]
    pub heldout_l1: f64,
    /// Pseudo-labelled pairs the generator also learned from (pseudo_labels.json lists them).
    #[serde(default)]
    pub pseudo_pairs: Option<usize>,
    pub versions: Versions,
}

impl std::fmt::Display for SynthEvalReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TSTR Dice {:.3}, TRTR Dice {:.3} (ratio {:.2}); memorisation ratio {:.2} (from training masks {:.2}); \
             diversity {:.4}; held-out L1 {:.4}",
            self.tstr_dice,
            self.trtr_dice,
            self.tstr_over_trtr,
            self.memorisation_ratio,
            self.memorisation_ratio_training_masks,
            self.diversity,
            self.heldout_l1
        )
    }
}

/// Runs every measurement into `out` (generator/, tstr/, trtr/, synth_eval.json,
/// synth_eval.png); finished parts are reused on a rerun.
pub fn run(cfg: &SynthEvalConfig, out: &Path, device: Device) -> Result<SynthEvalReport> {
    if cfg.run.method.uses_generator() {
        bail!(
            "--method {}: synth-eval trains the segmenter on synthetic pairs itself; use --method plain or augment",
            cfg.run.method.name()
        );
    }
    ensure_writable_dir(out)?;
    let seed = cfg.run.seed;
    let mut splits = load_splits(&cfg.run.data, seed)?;
    splits.load_unlabelled_folder(&cfg.run.data)?;
    // TRTR first: with `pseudo` it is the teacher of the generator's extra pairs.
    let trtr = segment::run(&cfg.run, &out.join("trtr"), device)?;
    let (generator_pairs, pseudo_pairs) = match &cfg.pseudo {
        Some(filter) => {
            let pool = splits
                .unlabelled
                .as_ref()
                .context("--pseudo-labels needs unlabelled images: give --unlabelled DIR or --unlabelled-n U")?;
            let (_vs, teacher, _spec) = crate::infer::load_model(&out.join("trtr"), device)?;
            let probs = crate::infer::predict_probs(&teacher, &pool.images, device);
            let (pairs, record) = confident_pairs(pool, &probs, &splits.train.labels, filter);
            tracing::info!(
                "synth-eval: {} of {} unlabelled images pseudo-labelled confidently",
                pairs.len(),
                pool.len()
            );
            write_json(&out.join("pseudo_labels.json"), &record)?;
            (joined(&splits.train, &pairs), Some(pairs.len()))
        }
        None => (splits.train.clone(), None),
    };
    let gan_dir = out.join("generator");
    let gan = if gan_dir.join("gan.json").is_file() {
        Gan::load(&gan_dir, device)?
    } else {
        let spec = GanSpec::for_data(cfg.run.gan.clone(), &splits.train);
        pretrain(&spec, &cfg.run.pretrain_config(seed), &generator_pairs, &splits.val, &gan_dir, device)?
    };
    // The mixed-op form changes nothing the generator computes.
    let mut wanted = GanSpec::for_data(cfg.run.gan.clone(), &splits.train);
    wanted.gan.fused = gan.spec.gan.fused;
    if gan.spec != wanted {
        bail!(
            "{}: the generator there was trained with other settings; give a new --out or the same GAN flags",
            gan_dir.display()
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let synthetic_n = cfg.synthetic_n.unwrap_or(8 * splits.train.len());
    let (mut synthetic, backgrounds) = synthesize_set(&gan, &splits.train, synthetic_n, &mut rng, device);
    if cfg.run.synthetic_photometric {
        let batches: Vec<Tensor> =
            synthetic.images.split(8, 0).iter().map(|b| photometric::augment(b, &mut rng)).collect();
        synthetic.images = Tensor::cat(&batches, 0);
    }
    let tstr = segment::run_on(&cfg.run, &out.join("tstr"), device, || {
        let splits = Splits {
            split: Split { train: synthetic.ids.clone(), ..splits.split.clone() },
            train: synthetic.clone(),
            val: splits.val.clone(),
            test: splits.test.clone(),
            ood: None,
            unlabelled: None,
        };
        Ok((splits, None))
    })?;
    let own = Backgrounds::own(&splits.train.images, &splits.train.masks);
    let from_training = synthesize(&gan, &splits.train.masks, &own, seed as i64, device);
    let held_out = splits.test.images.narrow(0, 0, splits.test.len().min(64) as i64);
    let median_real = median(&nearest_distances(&held_out, &splits.train.images).0);
    let shown = splits.train.len().clamp(1, 4) as i64;
    let draws = samples(&gan, &synthetic.masks.narrow(0, 0, shown), &backgrounds.narrow(0, shown), cfg.samples, device);
    let report = SynthEvalReport {
        n: cfg.run.data.n,
        seed,
        generator: cfg.run.gan.clone(),
        pretrain_iters: cfg.run.pretrain_iters,
        generator_prior: cfg.run.generator_prior.clone(),
        synthetic_n,
        tstr_dice: tstr.test.dice.mean,
        trtr_dice: trtr.test.dice.mean,
        tstr_over_trtr: tstr.test.dice.mean / trtr.test.dice.mean,
        memorisation_ratio: median(&nearest_distances(&synthetic.images, &splits.train.images).0) / median_real,
        memorisation_ratio_training_masks: median(&nearest_distances(&from_training, &splits.train.images).0)
            / median_real,
        diversity: f64::try_from(draws.std_dim(0, true, false).mean(Kind::Float)).unwrap(),
        heldout_l1: gan.l1_on(&splits.test, device),
        pseudo_pairs,
        versions: versions(device),
    };
    write_json(&out.join("synth_eval.json"), &report)?;
    crate::viz::save_png(&out.join("synth_eval.png"), &sample_sheet(&synthetic, &splits.train, &draws))?;
    Ok(report)
}

/// Generated images in [0, 1] for `masks` (CPU tensors, drawn into `backgrounds`), batch by
/// batch on `device`, with libtorch seeded by `seed` (the generator's dropout is its noise).
/// Returned on the CPU.
fn synthesize(gan: &Gan, masks: &Tensor, backgrounds: &Backgrounds, seed: i64, device: Device) -> Tensor {
    tch::manual_seed(seed);
    tch::no_grad(|| {
        let parts: Vec<Tensor> = (0..masks.size()[0])
            .step_by(8)
            .map(|s| {
                let n = (masks.size()[0] - s).min(8);
                let batch = backgrounds.narrow(s, n).to_device(device);
                gan.synthesize(&masks.narrow(0, s, n).to_device(device), &batch).to_device(Device::Cpu)
            })
            .collect();
        Tensor::cat(&parts, 0)
    })
}

/// `count` synthetic pairs from augmented training masks (GenSeg's geometric set), each with the
/// background an inpainting generator draws it into (another training case, drawn at random)
/// and its own image moved with it (where a pasting generator takes the lesion from).
fn synthesize_set(
    gan: &Gan,
    train: &SegDataset,
    count: usize,
    rng: &mut ChaCha8Rng,
    device: Device,
) -> (SegDataset, Backgrounds) {
    use rand::Rng;
    let n = train.len() as i64;
    let idx: Vec<i64> = (0..count).map(|_| rng.gen_range(0..n)).collect();
    let cases = Tensor::from_slice(&idx);
    let (masks, lesions) = augment_masks_with_images(
        &train.masks.index_select(0, &cases),
        &train.images.index_select(0, &cases),
        &AugmentConfig::default(),
        rng,
    );
    let seed = rng.gen::<i64>();
    // Backgrounds come from their own stream, so a mask-only generator's pairs do not depend on them.
    let mut own_stream = ChaCha8Rng::seed_from_u64(seed as u64);
    let other: Vec<i64> = idx.iter().map(|&i| if n > 1 { (i + own_stream.gen_range(1..n)) % n } else { i }).collect();
    let backgrounds =
        Backgrounds { lesions, ..Backgrounds::own(&train.images, &train.masks).select(&Tensor::from_slice(&other)) };
    let images = synthesize(gan, &masks, &backgrounds, seed, device);
    let ids = (0..count).map(|i| format!("synthetic-{i:04}")).collect();
    (SegDataset::new(ids, images, masks, train.labels.clone()), backgrounds)
}

/// `k` draws for each of `masks`: `[k, B, C, spatial...]` on the CPU.
fn samples(gan: &Gan, masks: &Tensor, backgrounds: &Backgrounds, k: usize, device: Device) -> Tensor {
    let draws: Vec<Tensor> = (0..k).map(|i| synthesize(gan, masks, backgrounds, 1000 + i as i64, device)).collect();
    Tensor::stack(&draws, 0)
}

/// For each image of `from`, the root-mean-square pixel distance to its nearest image of `to`,
/// and that image's index.
fn nearest_distances(from: &Tensor, to: &Tensor) -> (Vec<f64>, Vec<i64>) {
    let a = from.flatten(1, -1).to_kind(Kind::Double);
    let b = to.flatten(1, -1).to_kind(Kind::Double);
    let pixels = a.size()[1] as f64;
    let d = Tensor::cdist(&a, &b, 2.0, None::<i64>) / pixels.sqrt();
    let (dist, index) = d.min_dim(1, false);
    (Vec::<f64>::try_from(dist).unwrap(), Vec::<i64>::try_from(index).unwrap())
}

/// Rows of mask | nearest training image | each draw, for the masks `draws` was made from.
fn sample_sheet(synthetic: &SegDataset, train: &SegDataset, draws: &Tensor) -> image::RgbImage {
    use crate::viz::{mask_picture, picture};
    let shown = draws.size()[1];
    let (_, nearest) = nearest_distances(&draws.get(0), &train.images);
    let rows: Vec<Vec<Tensor>> = (0..shown)
        .map(|i| {
            let mut row = vec![mask_picture(&synthetic.masks.get(i)), picture(&train.images.get(nearest[i as usize]))];
            row.extend((0..draws.size()[0]).map(|k| picture(&draws.get(k).get(i))));
            row
        })
        .collect();
    crate::viz::tensor_grid(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_distances_find_the_closest_image() {
        let to = Tensor::from_slice(&[0.0f32, 0.0, 1.0, 1.0, 0.5, 0.5]).view([3, 1, 1, 2]);
        let from = Tensor::from_slice(&[0.9f32, 1.0, 0.0, 0.1]).view([2, 1, 1, 2]);
        let (d, i) = nearest_distances(&from, &to);
        assert_eq!(i, [1, 0]);
        assert!((d[0] - (0.01f64 / 2.0).sqrt()).abs() < 1e-6 && (d[1] - (0.01f64 / 2.0).sqrt()).abs() < 1e-6);
    }
}
