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
    /// GenSeg's geometric set and jitter.
    Augment,
    /// nnU-Net's default augmentation.
    AugmentNnunet(NnUnetAugment),
    Separate {
        gan: Gan,
    },
    Genseg {
        gan: Gan,
        arch_opt: Optimizer,
    },
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
        if !cfg.method.uses_generator() {
            return Ok(match (cfg.method, cfg.augment_preset) {
                (Method::Augment, AugmentPreset::Geometric) => Arm::Augment,
                (Method::Augment, AugmentPreset::Nnunet) => Arm::AugmentNnunet(NnUnetAugment {
                    p_elastic: cfg.elastic_p,
                    ..NnUnetAugment::defaults(train.dims(), cfg.mirror_axes.as_deref())
                }),
                _ => Arm::Plain,
            });
        }
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
            Method::Separate => Arm::Separate { gan },
            _ => {
                let arch_opt =
                    Optimizer::new(OptimConfig::adam(cfg.arch_lr, ARCH_BETA1), vec![gan.g.alpha.shallow_clone()]);
                Arm::Genseg { gan, arch_opt }
            }
        })
    }

    pub fn gan(&self) -> Option<&Gan> {
        match self {
            Arm::Separate { gan } | Arm::Genseg { gan, .. } => Some(gan),
            Arm::Plain | Arm::Augment | Arm::AugmentNnunet(_) => None,
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
        let (x, m) = match self {
            Arm::Plain => (x, m),
            Arm::Augment => augment_pairs(&x, &m, &cfg.augment, cfg.jitter, &mut batches.rng),
            Arm::AugmentNnunet(aug) => nnaug::augment(&x, &m, aug, &mut batches.rng),
            Arm::Separate { gan } => {
                let batch = TrainBatch {
                    synthetic_masks: augment_masks(&m, &cfg.augment, &mut batches.rng),
                    images: x,
                    masks: m,
                    seed,
                };
                let lower = Lower { seg: &seg.net, seg_vs: &seg.vs, gan, region: cfg.region_loss, lambda: cfg.lambda };
                // Frozen generator: synthetic images are plain inputs.
                let synthetic = tch::no_grad(|| lower.synthesize(&batch));
                let synthetic = photometric_if(cfg, synthetic, &mut batches.rng);
                let loss = lower.train_loss(&batch, &synthetic);
                log.loss = loss.double_value(&[]);
                return (gradients(&loss, &params), log);
            }
            Arm::Genseg { gan, arch_opt } => {
                log.gan = Some(gan.step(&x, &m, &mut batches.rng));
                let batch = TrainBatch {
                    synthetic_masks: augment_masks(&m, &cfg.augment, &mut batches.rng),
                    images: x,
                    masks: m,
                    seed,
                };
                let val_batch = iter.is_multiple_of(cfg.arch_every).then(|| batches.draw(val));
                let lower = Lower { seg: &seg.net, seg_vs: &seg.vs, gan, region: cfg.region_loss, lambda: cfg.lambda };
                let synthetic = photometric_if(cfg, lower.synthesize(&batch), &mut batches.rng);
                let loss = lower.train_loss(&batch, &synthetic);
                log.loss = loss.double_value(&[]);
                let grads = gradients(&loss, &params);
                if let Some((_, vx, vm)) = val_batch {
                    let xi = cfg.xi.unwrap_or(cfg.optim.lr);
                    let g_alpha =
                        lower.hypergradient(&batch, &synthetic, (&vx, &vm), &grads, xi, cfg.hypergrad, cfg.fd_scale);
                    log.hypergrad_norm = Some(g_alpha.norm().double_value(&[]));
                    arch_opt.step(&[g_alpha]);
                }
                return (grads, log);
            }
        };
        let loss = unet_loss(&seg.net, &x, &m, cfg.region_loss);
        log.loss = loss.double_value(&[]);
        (gradients(&loss, &params), log)
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
            Arm::Plain | Arm::Augment | Arm::AugmentNnunet(_) => {}
            Arm::Separate { gan } => {
                gan.load_weights(dir)?;
                gan.load_optimizers(dir)?;
            }
            Arm::Genseg { gan, arch_opt } => {
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
