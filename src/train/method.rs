//! The per-method part of a training step. Each method owns exactly the state it needs (the
//! generator methods their GAN, `genseg` also the architecture optimiser), so a method without
//! its state cannot be built.
pub use super::batches::{step_seed, Batches};
use super::config::{Method, TrainConfig};
use super::real_augment::RealAugment;
use super::semi::Semi;
use super::synthetic::{synthetic_masks, SyntheticWindow};
use super::upper_optim::UpperOptimizers;
use crate::data::photometric;
use crate::data::split::Splits;
use crate::data::SegDataset;
use crate::gan::{check_data_fits, check_prior_fits, pretrain, Backgrounds, Gan, GanLosses, GanSpec};
use crate::learn::loss::seg_loss;
use crate::learn::optim::gradients;
use crate::models::segnet::SegNet;
use crate::precision::full_precision;
use crate::runtime::{load_tensors, save_tensors};
use crate::upper::hypergrad::{InnerStep, TrainBatch};
use anyhow::{Context, Result};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// What a run of each method trains beside the segmenter (a generator, upper-level optimisers)
/// and how its real and synthetic pairs are made: one step of every method goes through it.
pub enum MethodState {
    Plain,
    Augment(RealAugment),
    /// A frozen generator's pairs beside the real ones (augmented by `real` first); with
    /// unlabelled images also `semi`'s unlabelled loss.
    Separate {
        gan: Gan,
        real: RealAugment,
        semi: Option<Semi>,
    },
    Genseg {
        gan: Gan,
        upper: Box<UpperOptimizers>,
        real: RealAugment,
        ahead: SyntheticWindow,
        semi: Option<Semi>,
    },
    /// `augment`'s real pairs and the unlabelled loss.
    Semi(RealAugment, Semi),
}

/// What one step reports for metrics.jsonl.
pub struct StepLog {
    pub loss: f64,
    pub gan: Option<GanLosses>,
    pub hypergrad_norm: Option<f64>,
    /// `semi`: share of unlabelled voxels whose pseudo-label counted.
    pub confident: Option<f64>,
}

/// The segmenter being trained.
pub struct Segmenter {
    pub vs: VarStore,
    pub net: SegNet,
}

impl MethodState {
    /// The generator flags' folders fit the data (`--generator` was pretrained on data of its
    /// shape, channels and labels; `--generator-prior` also with these networks): checked before
    /// a run writes its records, so a refused run leaves nothing behind.
    pub fn check(cfg: &TrainConfig, splits: &Splits) -> Result<()> {
        let train = &splits.train;
        cfg.method.check_unlabelled(splits.unlabelled.is_some())?;
        if !cfg.method.uses_unlabelled() && cfg.data.unlabelled.is_some() {
            tracing::warn!(
                "--method {} does not learn from unlabelled images: --unlabelled is unused (semi, separate and genseg \
                 use it)",
                cfg.method.name()
            );
        }
        super::teacher::check(cfg, splits)?;
        if !cfg.method.uses_generator() {
            return Ok(());
        }
        let spec = GanSpec::for_data(cfg.gan.clone(), train);
        if let Some(dir) = &cfg.generator {
            let theirs = GanSpec::read(dir).with_context(|| format!("--generator {}", dir.display()))?;
            check_data_fits("--generator", dir, &theirs, &spec)?;
        }
        match &cfg.generator_prior {
            Some(prior) => check_prior_fits(prior, &spec),
            None => Ok(()),
        }
    }

    /// The method's state; generator methods load the given generator or pretrain one on the
    /// `generator_pairs` (the training cases, with `--pseudo-labels` also the teacher's confident
    /// pairs) into `out/generator`, its fidelity followed on the validation cases.
    /// [`MethodState::check`] has checked the generator flags.
    pub fn build(
        cfg: &TrainConfig,
        splits: &Splits,
        out: &Path,
        device: Device,
        generator_pairs: &SegDataset,
    ) -> Result<MethodState> {
        let train = &splits.train;
        match cfg.method {
            Method::Plain => return Ok(MethodState::Plain),
            Method::Augment => return Ok(MethodState::Augment(RealAugment::of(cfg, train.dims()))),
            Method::Semi => return Ok(MethodState::Semi(RealAugment::of(cfg, train.dims()), Semi::of(cfg))),
            Method::Separate | Method::Genseg => {}
        }
        let semi = splits.unlabelled.as_ref().map(|_| Semi::of(cfg));
        let real = if cfg.augment_real { RealAugment::of(cfg, train.dims()) } else { RealAugment::none() };
        let spec = GanSpec::for_data(cfg.gan.clone(), train);
        let mut gan = match &cfg.generator {
            Some(dir) => Gan::load(dir, device)?,
            None => pretrain(
                &spec,
                &cfg.pretrain_config(cfg.seed),
                generator_pairs,
                &splits.val,
                &out.join("generator"),
                device,
            )?,
        };
        gan.precision = cfg.precision;
        Ok(match cfg.method {
            Method::Separate => MethodState::Separate { gan, real, semi },
            _ => {
                let upper = Box::new(UpperOptimizers::new(cfg, &gan));
                MethodState::Genseg { gan, upper, real, ahead: SyntheticWindow::default(), semi }
            }
        })
    }

    pub fn gan(&self) -> Option<&Gan> {
        match self {
            MethodState::Separate { gan, .. } | MethodState::Genseg { gan, .. } => Some(gan),
            MethodState::Plain | MethodState::Augment(_) | MethodState::Semi(..) => None,
        }
    }

    /// softmax(alpha), one row per mixed op (generator methods).
    pub fn alpha_softmax(&self) -> Option<Vec<Vec<f64>>> {
        self.gan().map(|g| {
            let s = g.g.alpha.softmax(1, Kind::Double).to_device(Device::Cpu);
            (0..s.size()[0]).map(|r| Vec::<f64>::try_from(s.get(r)).expect("a row of doubles")).collect()
        })
    }

    /// Segmenter gradients of step `iter` on the real batch `(x, m)` and, for the generator
    /// methods, `cfg.synthetic_count()` synthetic pairs from augmented copies of its masks;
    /// `genseg` also takes its GAN
    /// step every `gan_every` steps and, every `arch_every` steps, its upper-level step on a
    /// validation batch. Draws from `batches` in a fixed order (augmentation, then the
    /// validation batch), so a resumed run repeats the same stream.
    pub fn step(
        &mut self,
        cfg: &TrainConfig,
        seg: &Segmenter,
        iter: usize,
        (x, m): (Tensor, Tensor),
        batches: &mut Batches,
        splits: &Splits,
    ) -> (Vec<Tensor>, StepLog) {
        let seed = step_seed(cfg.seed, iter);
        let params = seg.vs.trainable_variables();
        let mut log = StepLog { loss: 0.0, gan: None, hypergrad_norm: None, confident: None };
        let (gan, upper, real, ahead, semi) = match self {
            MethodState::Semi(real, semi) => {
                let pool =
                    splits.unlabelled.as_ref().expect("MethodState::check refuses semi without unlabelled images");
                let real_pairs = real.apply(cfg, x, m, &mut batches.rng);
                let (loss, semi_log) = semi.loss((&seg.net, &seg.vs), real_pairs, batches, pool);
                (log.loss, log.confident) = (loss.double_value(&[]), Some(semi_log.confident));
                let grads = gradients(&loss, &params);
                semi_log.statistics.restore();
                return (grads, log);
            }
            MethodState::Plain | MethodState::Augment(_) => {
                let (x, m) = match self {
                    MethodState::Augment(real) => real.apply(cfg, x, m, &mut batches.rng),
                    _ => (x, m),
                };
                let loss = cfg.precision.autocast(x.device(), || seg_loss(&seg.net, &x, &m, cfg.region_loss));
                log.loss = loss.double_value(&[]);
                return (gradients(&loss, &params), log);
            }
            MethodState::Separate { gan, real, semi } => (&*gan, None, &*real, None, semi.as_ref()),
            MethodState::Genseg { gan, upper, real, ahead, semi } => {
                if iter.is_multiple_of(cfg.gan_every) {
                    log.gan = Some(gan.step(&x, &m, &mut batches.rng));
                }
                (&*gan, Some(&mut **upper), &*real, Some(ahead), semi.as_ref())
            }
        };
        let device = x.device();
        let arch_step = upper.is_some() && iter.is_multiple_of(cfg.arch_every);
        // genseg between upper-level steps takes its window's pairs; otherwise augmented copies
        // of the real batch's masks are drawn into the batch's next cases.
        let (ready, synthetic_masks, backgrounds) = match ahead.filter(|_| !arch_step) {
            Some(ahead) => {
                let (images, masks, backgrounds) = ahead.take(cfg, gan, iter, &splits.train);
                (Some(images), masks, backgrounds)
            }
            None => {
                let count = cfg.synthetic_count();
                let (masks, lesions) =
                    synthetic_masks(gan, &repeat_to(&m, count), &repeat_to(&x, count), cfg, &mut batches.rng);
                (None, masks, Backgrounds::next_in_batch(&x, &m, &lesions))
            }
        };
        let (images, masks) = real.apply(cfg, x, m, &mut batches.rng);
        let mut batch = TrainBatch { images, masks, synthetic_masks, backgrounds, seed, synthetic_weights: None };
        let val_batch = (arch_step || cfg.reweight).then(|| batches.draw(&splits.val));
        let unlabelled = semi.map(|semi| {
            let pool = splits.unlabelled.as_ref().expect("MethodState::build gives semi only with unlabelled images");
            (semi, semi.draw(&seg.net, batches, pool))
        });
        let lower =
            InnerStep { seg: &seg.net, seg_vs: &seg.vs, gan, region: cfg.region_loss, lambda: cfg.synthetic_weight() };
        // Images are plain inputs except on an upper-level step, which needs their graph (and
        // float32: the hypergradient is not taken in bf16).
        let synthetic = match (ready, arch_step) {
            (Some(images), _) => images,
            (None, true) => lower.synthesize(&batch),
            (None, false) => {
                full_precision(&tch::no_grad(|| cfg.precision.autocast(device, || lower.synthesize(&batch))))
            }
        };
        let synthetic = photometric_if(cfg, synthetic, &mut batches.rng);
        let xi = cfg.xi.unwrap_or(cfg.optim.lr);
        if let (true, Some((_, vx, vm))) = (cfg.reweight, &val_batch) {
            batch.synthetic_weights = Some(lower.sample_weights(&batch, &synthetic, (vx, vm), xi));
        }
        let mut loss = cfg.precision.autocast(device, || lower.train_loss(&batch, &synthetic));
        // The unlabelled loss does not depend on the generator: it moves the one-step-ahead
        // weights the hypergradient is taken at (through `grads`), not its mixed derivative.
        let statistics = unlabelled.map(|(semi, views)| {
            let (unlabelled_loss, semi_log) = semi.unlabelled_loss((&seg.net, &seg.vs), views);
            loss = &loss + unlabelled_loss;
            log.confident = Some(semi_log.confident);
            semi_log.statistics
        });
        log.loss = loss.double_value(&[]);
        let grads = gradients(&loss, &params);
        if let Some(statistics) = statistics {
            statistics.restore();
        }
        if let (Some(upper), true, Some((_, vx, vm))) = (upper, arch_step, &val_batch) {
            let targets = upper.targets();
            let hyper =
                lower.hypergradient(&batch, &synthetic, (vx, vm), &grads, xi, cfg.hypergrad, cfg.fd_scale, &targets);
            let squares: f64 = hyper.iter().map(|g| g.square().sum(Kind::Double).double_value(&[])).sum();
            log.hypergrad_norm = Some(squares.sqrt());
            upper.step(hyper);
        }
        (grads, log)
    }

    /// The method's part of a checkpoint: GAN weights and optimisers, architecture optimiser.
    pub fn save(&self, dir: &Path) -> Result<()> {
        if let Some(gan) = self.gan() {
            gan.save(dir)?;
            gan.save_optimizers(dir)?;
        }
        if let MethodState::Genseg { upper, .. } = self {
            for (opt, file) in upper.files() {
                save_tensors(&dir.join(file), &opt.state())?;
            }
        }
        Ok(())
    }

    pub fn load(&mut self, dir: &Path) -> Result<()> {
        match self {
            MethodState::Plain | MethodState::Augment(_) | MethodState::Semi(..) => {}
            MethodState::Separate { gan, .. } => {
                gan.load_weights(dir)?;
                gan.load_optimizers(dir)?;
            }
            MethodState::Genseg { gan, upper, .. } => {
                gan.load_weights(dir)?;
                gan.load_optimizers(dir)?;
                let files: Vec<&str> = upper.files().map(|(_, f)| f).collect();
                for (opt, file) in upper.optimizers().zip(files) {
                    opt.load_state(&load_tensors(&dir.join(file))?)?;
                }
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

/// The first `count` cases of `masks` repeated as often as needed (each copy is augmented with
/// its own draw), so a step may synthesise more or fewer pairs than its real batch holds.
fn repeat_to(masks: &Tensor, count: i64) -> Tensor {
    let b = masks.size()[0];
    if count == b {
        return masks.shallow_clone();
    }
    let mut times = vec![1; masks.dim()];
    times[0] = (count + b - 1) / b;
    masks.repeat(times.as_slice()).narrow(0, 0, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_repeat_to_any_count_in_order() {
        let m = Tensor::from_slice(&[0f32, 1., 2.]).view([3, 1, 1, 1]);
        let values = |t: Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
        assert_eq!(values(repeat_to(&m, 3)), [0., 1., 2.]);
        assert_eq!(values(repeat_to(&m, 2)), [0., 1.]);
        assert_eq!(values(repeat_to(&m, 7)), [0., 1., 2., 0., 1., 2., 0.]);
        assert_eq!(repeat_to(&m, 7).size(), [7, 1, 1, 1]);
    }
}
