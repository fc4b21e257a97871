//! GenSeg's iteration timed by phase and over the real loop, and the finite-difference
//! hypergradient's accuracy.
use super::steps::*;
use super::*;

/// Milliseconds of each phase of one genseg iteration on random 2-D batches (U-Net of `cfg`,
/// generator/discriminator width `ngf`), beside one plain U-Net step: the GAN step, the
/// differentiable synthesis, synthesis without a graph of one image and of seven, the
/// segmentation loss and gradient on real + synthetic pairs, the architecture hypergradient in
/// both modes, and the per-sample weights of `--reweight`.
pub fn genseg_phases(
    cfg: &UNetConfig,
    ngf: i64,
    size: i64,
    batch: i64,
    steps: usize,
    device: Device,
) -> Result<Vec<(&'static str, f64)>> {
    use crate::upper::hypergrad::{HypergradMode, InnerStep, TrainBatch};
    use rand::SeedableRng;
    let mut plain = SegStep::new(&NetConfig::Unet(cfg.clone()), size, batch, device, Precision::Fp32);
    let (x, y) = (plain.x.shallow_clone(), plain.y.shallow_clone());
    let plain_ms = time_steps(2, steps, || plain.step(&x, &y));
    let (mut gan, images, masks) = bench_gan(GanConfig { ngf, ndf: ngf, ..Default::default() }, size, batch, device)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let gan_ms = time_steps(2, steps, || gan_step_once(&mut gan, &images, &masks, &mut rng, device));
    let vs = VarStore::new(device);
    let seg = SegNet::new(&vs.root(), &NetConfig::Unet(UNetConfig { in_channels: 3, ..cfg.clone() }));
    let lower = InnerStep { seg: &seg, seg_vs: &vs, gan: &gan, region: RegionLoss::Dice, lambda: 1.0 };
    let train = TrainBatch {
        images: images.shallow_clone(),
        masks: masks.shallow_clone(),
        synthetic_masks: masks.flip([3]),
        backgrounds: crate::gan::Backgrounds::next_in_batch(&images, &masks, &images.flip([3])),
        seed: 0,
        synthetic_weights: None,
    };
    let val = (images.flip([2]), masks.flip([2]));
    let params = vs.trainable_variables();
    let synthesis_ms = time_steps(2, steps, || {
        let _ = lower.synthesize(&train);
    });
    // Without a graph, as between upper-level steps: one image (the fast setting's share per
    // iteration) against seven in one batch (the window SyntheticWindow makes at K = 8).
    let plain_synthesis = |n: i64| {
        let m = masks.narrow(0, 0, 1).repeat([n, 1, 1, 1]);
        let lesions = images.narrow(0, 0, 1).repeat([n, 1, 1, 1]);
        let backgrounds = crate::gan::Backgrounds::next_in_batch(&images, &masks, &lesions);
        time_steps(2, steps, || {
            let _ = tch::no_grad(|| gan.synthesize(&m, &backgrounds));
        })
    };
    let (one_ms, seven_ms) = (plain_synthesis(1), plain_synthesis(7));
    let synthetic = lower.synthesize(&train);
    let seg_ms = time_steps(2, steps, || {
        let _ = gradients(&lower.train_loss(&train, &synthetic), &params);
    });
    let grads = gradients(&lower.train_loss(&train, &synthetic), &params);
    let alpha = vec![lower.gan.g.alpha.shallow_clone()];
    let decoder = lower.gan.decoder_weights();
    let hyper = |mode, targets: &[Tensor]| {
        time_steps(1, steps, || {
            let _ = lower.hypergradient(&train, &synthetic, (&val.0, &val.1), &grads, 1e-3, mode, 0.01, targets);
        })
    };
    let (fd_ms, exact_ms) = (hyper(HypergradMode::Fd, &alpha), hyper(HypergradMode::Exact, &alpha));
    let generator_ms = hyper(HypergradMode::Exact, &decoder);
    let weights_ms = time_steps(1, steps, || {
        let _ = lower.sample_weights(&train, &synthetic, (&val.0, &val.1), 1e-3);
    });
    Ok(vec![
        ("plain U-Net step", plain_ms),
        ("GAN step", gan_ms),
        ("synthesis (with graph)", synthesis_ms),
        ("synthesis of 1 image, no graph", one_ms),
        ("synthesis of 7 images in one batch, no graph", seven_ms),
        ("segmentation loss + gradient, real + synthetic", seg_ms),
        ("hypergradient, fd", fd_ms),
        ("hypergradient, exact", exact_ms),
        ("hypergradient, exact, --upper generator", generator_ms),
        ("per-sample weights (--reweight)", weights_ms),
    ])
}

/// `genseg bench schedule`: seconds per iteration of the real training loop
/// ([`crate::train::segment::run`] on a phantom set of `size` px, `steps` iterations after the
/// generator's pretraining, one validation at the end) for `plain`, `augment` and `genseg` with
/// its GAN and upper-level steps every k-th iteration for each k of `every`, on the verdict's
/// recipe (docs/history §10); the median of `rounds` runs of each. The phase bench
/// times the parts; this is what a study pays per iteration, batch drawing, augmentation and
/// optimiser steps included.
pub struct ScheduleBench {
    pub unet: UNetConfig,
    pub ngf: i64,
    pub size: u32,
    pub batch: i64,
    pub steps: usize,
    pub every: Vec<usize>,
    /// The genseg arms' `--synthetic-share`.
    pub synthetic_share: f64,
    pub rounds: usize,
    /// Every arm's `--precision`.
    pub precision: Precision,
}

impl ScheduleBench {
    /// Each arm's name and median seconds per iteration, plain first.
    pub fn run(&self, device: Device) -> Result<Vec<(String, f64)>> {
        let dir = std::env::temp_dir().join(format!("genseg-bench-schedule-{}", std::process::id()));
        let timed = self.run_in(&dir, device);
        // The phantom set and the runs are scratch; a failure to remove them loses nothing.
        let _ = std::fs::remove_dir_all(&dir);
        timed
    }

    fn run_in(&self, dir: &std::path::Path, device: Device) -> Result<Vec<(String, f64)>> {
        use crate::data::split::DataConfig;
        use crate::train::{segment, Method, TrainConfig};
        let data = dir.join("phantom");
        crate::data::phantom::write_dataset(&data, 24, self.size, 5)?;
        // The 8 cases outside the labelled 16 are the unlabelled images of semi and genseg.
        let mut data_cfg = DataConfig { n: 16, val_n: Some(4), unlabelled_n: Some(8), ..DataConfig::new(&data) };
        data_cfg.load.size = self.size;
        let gan = GanConfig::data_efficient(self.ngf);
        let base = TrainConfig {
            width: self.unet.width,
            depth: self.unet.depth,
            iters: self.steps,
            val_every: self.steps,
            batch_size: self.batch,
            pretrain_iters: 2,
            augment_real: true,
            gan,
            precision: self.precision,
            ..TrainConfig::new(data_cfg)
        };
        let mut arms: Vec<(String, TrainConfig)> = [Method::Plain, Method::Augment, Method::Semi]
            .into_iter()
            .map(|method| (method.name().to_string(), TrainConfig { method, ..base.clone() }))
            .collect();
        for &k in &self.every {
            let (gan_every, arch_every, synthetic_share) = (k, k, self.synthetic_share);
            let cfg = TrainConfig { method: Method::Genseg, gan_every, arch_every, synthetic_share, ..base.clone() };
            // genseg learns from the unlabelled images when it has them: timed with and without.
            let mut labelled_only = cfg.clone();
            labelled_only.data.unlabelled_n = None;
            arms.push((format!("genseg, GAN and upper level every {k}"), labelled_only));
            arms.push((format!("genseg with unlabelled images, every {k}"), cfg));
        }
        // The process's first run pays one-time costs (allocator, kernel selection): an untimed one first.
        segment::run(&arms[0].1, &dir.join("warm-up"), device)?;
        // Rounds over all arms in turn, so that the machine's drift reaches every arm alike.
        let mut seconds = vec![Vec::with_capacity(self.rounds); arms.len()];
        for round in 0..self.rounds {
            for (i, (_, cfg)) in arms.iter().enumerate() {
                let out = dir.join(format!("round{round}-arm{i}"));
                seconds[i].push(segment::run(cfg, &out, device)?.seconds_per_iter);
            }
        }
        Ok(arms.into_iter().zip(seconds).map(|((name, _), s)| (name, crate::eval::stats::median(&s))).collect())
    }
}

/// `genseg bench hypergrad`: [`hypergrad_accuracy`] of a U-Net of (`width`, `depth`) on
/// batches of `batch` cases of `data`, over `batches` batches, with a pretrained generator, at
/// four perturbation scales.
pub fn hypergrad_report(
    data: &std::path::Path,
    generator: &std::path::Path,
    (width, depth, batch, batches): (i64, usize, i64, usize),
    device: Device,
) -> Result<Vec<(f64, f64, f64)>> {
    let gan = Gan::load(generator, device)?;
    let set =
        crate::data::load(data, &crate::data::LoadOptions { size: gan.spec.shape[0] as u32, ..Default::default() })?;
    let cfg = UNetConfig {
        in_channels: set.channels as i64,
        out_channels: set.labels.len() as i64,
        width,
        depth,
        upsampling: Upsampling::Transposed,
        dims: set.dims(),
        deep_supervision: false,
    };
    Ok(hypergrad_accuracy(&set, &gan, &cfg, batch, batches, &[1.0, 0.1, 0.01, 1e-3], device))
}

/// How close the finite-difference hypergradient is to the exact (double-backward) one on real
/// batches: (fd_scale, mean cosine similarity, mean norm ratio fd/exact) per perturbation scale.
pub fn hypergrad_accuracy(
    data: &crate::data::SegDataset,
    gan: &Gan,
    cfg: &UNetConfig,
    batch: i64,
    batches: usize,
    scales: &[f64],
    device: Device,
) -> Vec<(f64, f64, f64)> {
    use crate::upper::hypergrad::{HypergradMode, InnerStep, TrainBatch};
    use rand::SeedableRng;
    tch::manual_seed(0);
    let vs = VarStore::new(device);
    let seg = SegNet::new(&vs.root(), &NetConfig::Unet(cfg.clone()));
    let lower = InnerStep { seg: &seg, seg_vs: &vs, gan, region: RegionLoss::Dice, lambda: 1.0 };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let n = data.len() as i64;
    let mut acc = vec![(0.0, 0.0); scales.len()];
    for b in 0..batches as i64 {
        let pick = |o: i64| Tensor::from_slice(&(0..batch).map(|i| (b * 2 * batch + o + i) % n).collect::<Vec<_>>());
        let (ti, vi) = (pick(0), pick(batch));
        let masks = data.masks.index_select(0, &ti).to_device(device);
        let images = data.images.index_select(0, &ti).to_device(device);
        let train = TrainBatch {
            synthetic_masks: crate::data::augment::augment_masks(&masks, &Default::default(), &mut rng),
            backgrounds: crate::gan::Backgrounds::next_in_batch(&images, &masks, &images),
            images,
            masks,
            seed: b,
            synthetic_weights: None,
        };
        let val =
            (data.images.index_select(0, &vi).to_device(device), data.masks.index_select(0, &vi).to_device(device));
        let params = vs.trainable_variables();
        let grads = gradients(&lower.train_loss(&train, &lower.synthesize(&train)), &params);
        // Each call gets its own synthetic images (same seed, so the same values and dropout).
        let alpha_hypergradient = |mode, scale| {
            let synthetic = lower.synthesize(&train);
            let targets = std::slice::from_ref(&lower.gan.g.alpha);
            lower.hypergradient(&train, &synthetic, (&val.0, &val.1), &grads, 1e-3, mode, scale, targets).remove(0)
        };
        let exact = alpha_hypergradient(HypergradMode::Exact, 0.0);
        for (k, &scale) in scales.iter().enumerate() {
            let fd = alpha_hypergradient(HypergradMode::Fd, scale);
            let dot = f64::try_from((&fd * &exact).sum(Kind::Double)).unwrap();
            let (nf, ne) = (f64::try_from(fd.norm()).unwrap(), f64::try_from(exact.norm()).unwrap());
            acc[k].0 += dot / (nf * ne) / batches as f64;
            acc[k].1 += nf / ne / batches as f64;
        }
    }
    scales.iter().zip(acc).map(|(&s, (c, r))| (s, c, r)).collect()
}
