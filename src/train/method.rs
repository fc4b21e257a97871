//! The per-method part of a training step. Each method owns exactly the state it needs (the
//! generator methods their GAN, `genseg` also the architecture optimiser), so a method without
//! its state cannot be built.
use super::config::{Method, TrainConfig, ARCH_BETA1};
use super::gan::{pretrain, Gan, GanLosses, GanSpec, PretrainConfig};
use super::hypergrad::{Lower, TrainBatch};
use super::loss::unet_loss;
use super::optim::{gradients, OptimConfig, Optimizer};
use crate::data::augment::{augment_masks, augment_pairs};
use crate::data::nnaug::{self, AugmentPreset, NnUnetAugment};
use crate::data::photometric;
use crate::data::SegDataset;
use crate::models::unet::UNet;
use crate::runtime::{load_tensors, save_tensors};
use anyhow::{bail, Result};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

pub enum Arm {
    Plain,
    Augment(RealAugment),
    /// A frozen generator's pairs beside the real ones (augmented by `real` first).
    Separate {
        gan: Gan,
        real: RealAugment,
    },
    Genseg {
        gan: Gan,
        arch_opt: Optimizer,
        real: RealAugment,
    },
}

/// What the real pairs go through before a step.
pub enum RealAugment {
    None,
    /// GenSeg's geometric set and jitter.
    Geometric,
    /// nnU-Net's default augmentation.
    Nnunet(Box<NnUnetAugment>),
}

impl RealAugment {
    /// The `--augment` preset (with `--mirror-axes` and `--elastic-p`) for `dims` spatial axes.
    fn of(cfg: &TrainConfig, dims: usize) -> RealAugment {
        match cfg.augment_preset {
            AugmentPreset::None => RealAugment::None,
            AugmentPreset::Geometric => RealAugment::Geometric,
            AugmentPreset::Nnunet => RealAugment::Nnunet(Box::new(NnUnetAugment {
                p_elastic: cfg.elastic_p,
                ..NnUnetAugment::defaults(dims, cfg.mirror_axes.as_deref())
            })),
        }
    }

    fn apply(&self, cfg: &TrainConfig, x: Tensor, m: Tensor, rng: &mut ChaCha8Rng) -> (Tensor, Tensor) {
        match self {
            RealAugment::None => (x, m),
            RealAugment::Geometric => augment_pairs(&x, &m, &cfg.augment, cfg.jitter, rng),
            RealAugment::Nnunet(aug) => nnaug::augment(&x, &m, aug, rng),
        }
    }
}

/// What one step reports for metrics.jsonl.
pub struct StepLog {
    pub loss: f64,
    pub gan: Option<GanLosses>,
    pub hypergrad_norm: Option<f64>,
}

/// Random training batches: the run's one random stream (resumable by word position).
pub struct Batches {
    pub rng: ChaCha8Rng,
    pub size: i64,
    pub device: Device,
}

impl Batches {
    /// `size` cases drawn with replacement: their indices, images and masks on the device.
    pub fn draw(&mut self, data: &SegDataset) -> (Vec<usize>, Tensor, Tensor) {
        let idx: Vec<usize> = (0..self.size).map(|_| self.rng.gen_range(0..data.len())).collect();
        let t = Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>());
        (
            idx,
            data.images.index_select(0, &t).to_device(self.device),
            data.masks.index_select(0, &t).to_device(self.device),
        )
    }
}

/// The segmenter being trained.
pub struct Segmenter {
    pub vs: VarStore,
    pub net: UNet,
}

impl Arm {
    /// The method's state; generator methods load the given generator or pretrain one into
    /// `out/generator`.
    pub fn build(cfg: &TrainConfig, train: &SegDataset, out: &Path, device: Device) -> Result<Arm> {
        match cfg.method {
            Method::Plain => return Ok(Arm::Plain),
            Method::Augment => return Ok(Arm::Augment(RealAugment::of(cfg, train.dims()))),
            Method::Separate | Method::Genseg => {}
        }
        let real = if cfg.augment_real { RealAugment::of(cfg, train.dims()) } else { RealAugment::None };
        let spec = GanSpec::for_data(cfg.gan.clone(), train);
        let gan = match &cfg.generator {
            Some(dir) => {
                let gan = Gan::load(dir, device)?;
                let (a, b) = (&gan.spec, &spec);
                if (&a.shape, a.channels, a.mask_channels) != (&b.shape, b.channels, b.mask_channels) {
                    bail!(
                        "generator in {} was trained for shape {:?}, {} channels, {} labels; this run has {:?}, {}, {}",
                        dir.display(),
                        a.shape,
                        a.channels,
                        a.mask_channels,
                        b.shape,
                        b.channels,
                        b.mask_channels
                    );
                }
                gan
            }
            None => {
                let pcfg = PretrainConfig::new(cfg.pretrain_iters, cfg.batch_size, cfg.seed);
                pretrain(&spec, &pcfg, train, &out.join("generator"), device)?
            }
        };
        Ok(match cfg.method {
            Method::Separate => Arm::Separate { gan, real },
            _ => {
                let arch_opt =
                    Optimizer::new(OptimConfig::adam(cfg.arch_lr, ARCH_BETA1), vec![gan.g.alpha.shallow_clone()]);
                Arm::Genseg { gan, arch_opt, real }
            }
        })
    }

    pub fn gan(&self) -> Option<&Gan> {
        match self {
            Arm::Separate { gan, .. } | Arm::Genseg { gan, .. } => Some(gan),
            Arm::Plain | Arm::Augment(_) => None,
        }
    }

    /// softmax(alpha), one row per mixed op (generator methods).
    pub fn alpha_softmax(&self) -> Option<Vec<Vec<f64>>> {
        self.gan().map(|g| {
            let s = g.g.alpha.softmax(1, Kind::Double).to_device(Device::Cpu);
            (0..s.size()[0]).map(|r| Vec::<f64>::try_from(s.get(r)).expect("a row of doubles")).collect()
        })
    }

    /// Segmenter gradients of step `iter` on the real batch `(x, m)`; `genseg` also takes its GAN
    /// step and, every `arch_every` steps, its architecture step on a validation batch. Draws
    /// from `batches` in a fixed order (augmentation, then the validation batch), so a resumed
    /// run repeats the same stream.
    pub fn step(
        &mut self,
        cfg: &TrainConfig,
        seg: &Segmenter,
        iter: usize,
        (x, m): (Tensor, Tensor),
        batches: &mut Batches,
        val: &SegDataset,
    ) -> (Vec<Tensor>, StepLog) {
        let seed = step_seed(cfg.seed, iter);
        let params = seg.vs.trainable_variables();
        let mut log = StepLog { loss: 0.0, gan: None, hypergrad_norm: None };
        let (gan, arch_opt, real) = match self {
            Arm::Plain | Arm::Augment(_) => {
                let (x, m) = match self {
                    Arm::Augment(real) => real.apply(cfg, x, m, &mut batches.rng),
                    _ => (x, m),
                };
                let loss = unet_loss(&seg.net, &x, &m, cfg.region_loss);
                log.loss = loss.double_value(&[]);
                return (gradients(&loss, &params), log);
            }
            Arm::Separate { gan, real } => (&*gan, None, &*real),
            Arm::Genseg { gan, arch_opt, real } => {
                log.gan = Some(gan.step(&x, &m, &mut batches.rng));
                (&*gan, Some(arch_opt), &*real)
            }
        };
        let synthetic_masks = augment_masks(&m, &cfg.augment, &mut batches.rng);
        let (images, masks) = real.apply(cfg, x, m, &mut batches.rng);
        let mut batch = TrainBatch { images, masks, synthetic_masks, seed, synthetic_weights: None };
        let arch_step = arch_opt.is_some() && iter.is_multiple_of(cfg.arch_every);
        let val_batch = (arch_step || cfg.reweight).then(|| batches.draw(val));
        let lower = Lower { seg: &seg.net, seg_vs: &seg.vs, gan, region: cfg.region_loss, lambda: cfg.lambda };
        // A frozen generator's images are plain inputs; genseg keeps their graph to alpha.
        let synthetic = match arch_opt {
            Some(_) => lower.synthesize(&batch),
            None => tch::no_grad(|| lower.synthesize(&batch)),
        };
        let synthetic = photometric_if(cfg, synthetic, &mut batches.rng);
        let xi = cfg.xi.unwrap_or(cfg.optim.lr);
        if let (true, Some((_, vx, vm))) = (cfg.reweight, &val_batch) {
            batch.synthetic_weights = Some(lower.sample_weights(&batch, &synthetic, (vx, vm), xi));
        }
        let loss = lower.train_loss(&batch, &synthetic);
        log.loss = loss.double_value(&[]);
        let grads = gradients(&loss, &params);
        if let (Some(arch_opt), true, Some((_, vx, vm))) = (arch_opt, arch_step, &val_batch) {
            let g_alpha = lower.hypergradient(&batch, &synthetic, (vx, vm), &grads, xi, cfg.hypergrad, cfg.fd_scale);
            log.hypergrad_norm = Some(g_alpha.norm().double_value(&[]));
            arch_opt.step(&[g_alpha]);
        }
        (grads, log)
    }

    /// The method's part of a checkpoint: GAN weights and optimisers, architecture optimiser.
    pub fn save(&self, dir: &Path) -> Result<()> {
        if let Some(gan) = self.gan() {
            gan.save(dir)?;
            gan.save_optimizers(dir)?;
        }
        if let Arm::Genseg { arch_opt, .. } = self {
            save_tensors(&dir.join("arch_optim.safetensors"), &arch_opt.state())?;
        }
        Ok(())
    }

    pub fn load(&mut self, dir: &Path) -> Result<()> {
        match self {
            Arm::Plain | Arm::Augment(_) => {}
            Arm::Separate { gan, .. } => {
                gan.load_weights(dir)?;
                gan.load_optimizers(dir)?;
            }
            Arm::Genseg { gan, arch_opt, .. } => {
                gan.load_weights(dir)?;
                gan.load_optimizers(dir)?;
                arch_opt.load_state(&load_tensors(&dir.join("arch_optim.safetensors"))?)?;
            }
        }
        Ok(())
    }
}

/// The reference's photometric chain on synthetic images when `--synthetic-photometric` is on.
fn photometric_if(cfg: &TrainConfig, synthetic: Tensor, rng: &mut ChaCha8Rng) -> Tensor {
    match cfg.synthetic_photometric {
        true => photometric::augment(&synthetic, rng),
        false => synthetic,
    }
}

/// The libtorch seed of iteration `iter` (dropout, and the synthetic images of the step).
pub fn step_seed(seed: u64, iter: usize) -> i64 {
    (seed as i64).wrapping_mul(1_000_003) ^ iter as i64
}
