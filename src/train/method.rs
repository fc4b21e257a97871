//! The per-method part of a training step. Each method owns exactly the state it needs (the
//! generator methods their GAN, `genseg` also the architecture optimiser), so a method without
//! its state cannot be built.
pub use super::batches::Batches;
use super::config::{Method, TrainConfig};
use super::real_augment::RealAugment;
use super::semi::Semi;
use super::upper_optim::UpperOptimizers;
use crate::data::augment::{augment_masks, augment_masks_with_images};
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
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// What a run of each method trains beside the segmenter (a generator, upper-level optimisers)
/// and how its real and synthetic pairs are made: one step of every method goes through it.
pub enum MethodState {
    Plain,
    Augment(RealAugment),
    /// A frozen generator's pairs beside the real ones (augmented by `real` first).
    Separate {
        gan: Gan,
        real: RealAugment,
    },
    Genseg {
        gan: Gan,
        upper: Box<UpperOptimizers>,
        real: RealAugment,
        ahead: SyntheticWindow,
    },
    /// `augment`'s real pairs and the unlabelled loss.
    Semi(RealAugment, Semi),
}

/// genseg's synthetic pairs for a window of iterations over which its generator does not change
/// (it changes at the start of a GAN step's iteration and at the end of an upper-level step's),
/// made in one batch when the window opens. One call per iteration for the share's one or two
/// images cost about a third of a plain step, seven images in one call about twice one image:
/// the generator's small inner maps make a call cost what reading its weights costs
/// (`bench phases`, docs/RESULTS.md section 16). A
/// window's pairs follow from its first iteration, the seed and the generator alone, so a run
/// resumed inside a window makes the same ones.
#[derive(Default)]
pub struct SyntheticWindow {
    block: Option<Block>,
}

struct Block {
    start: usize,
    images: Tensor,
    masks: Tensor,
    backgrounds: Backgrounds,
}

/// The iterations `[start, end)` around a non-upper-level iteration `iter` (so `iter >= 1`) over
/// which genseg's generator stays the same.
fn unchanged_window(gan_every: usize, arch_every: usize, iter: usize) -> (usize, usize) {
    let after_gan = iter / gan_every * gan_every;
    let after_upper = iter.saturating_sub(1) / arch_every * arch_every + 1;
    let end = ((iter / gan_every + 1) * gan_every).min((iter / arch_every + 1) * arch_every);
    (after_gan.max(after_upper), end)
}

impl SyntheticWindow {
    /// Iteration `iter`'s synthetic images, their masks and backgrounds: `count` pairs of its
    /// window's block, made first if the window is new. The block's masks are augmented masks of
    /// training cases drawn uniformly (as the real batches are), each drawn into the next drawn
    /// case's image by an inpainting generator.
    fn take(&mut self, cfg: &TrainConfig, gan: &Gan, iter: usize, train: &SegDataset) -> (Tensor, Tensor, Backgrounds) {
        let (start, end) = unchanged_window(cfg.gan_every, cfg.arch_every, iter);
        let count = cfg.synthetic_count();
        let block = match self.block.take() {
            Some(block) if block.start == start => block,
            _ => {
                let n = count * (end - start) as i64;
                let seed = step_seed(cfg.seed, start);
                let rng = ChaCha8Rng::seed_from_u64(seed as u64);
                let mut draws = Batches { rng, size: n, device: gan.g_vs.device() };
                let (_, x, m) = draws.draw(train);
                let (masks, lesions) = synthetic_masks(gan, &m, &x, cfg, &mut draws.rng);
                let backgrounds = Backgrounds::next_in_batch(&x, &m, &lesions);
                tch::manual_seed(seed);
                let device = x.device();
                let images = tch::no_grad(|| cfg.precision.autocast(device, || gan.synthesize(&masks, &backgrounds)));
                Block { start, images: full_precision(&images), masks, backgrounds }
            }
        };
        let at = (iter - start) as i64 * count;
        let pairs =
            (block.images.narrow(0, at, count), block.masks.narrow(0, at, count), block.backgrounds.narrow(at, count));
        self.block = Some(block);
        pairs
    }
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
                "--method {} does not learn from unlabelled images: --unlabelled is unused (--method semi uses it)",
                cfg.method.name()
            );
        }
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
    /// training cases into `out/generator`, its fidelity followed on the validation cases.
    /// [`MethodState::check`] has checked the generator flags.
    pub fn build(cfg: &TrainConfig, splits: &Splits, out: &Path, device: Device) -> Result<MethodState> {
        let train = &splits.train;
        match cfg.method {
            Method::Plain => return Ok(MethodState::Plain),
            Method::Augment => return Ok(MethodState::Augment(RealAugment::of(cfg, train.dims()))),
            Method::Semi => {
                let semi = Semi {
                    config: cfg.semi.clone(),
                    batch_size: cfg.batch_size,
                    augment: cfg.augment.clone(),
                    precision: cfg.precision,
                    region_loss: cfg.region_loss,
                };
                return Ok(MethodState::Semi(RealAugment::of(cfg, train.dims()), semi));
            }
            Method::Separate | Method::Genseg => {}
        }
        let real = if cfg.augment_real { RealAugment::of(cfg, train.dims()) } else { RealAugment::none() };
        let spec = GanSpec::for_data(cfg.gan.clone(), train);
        let mut gan = match &cfg.generator {
            Some(dir) => Gan::load(dir, device)?,
            None => {
                pretrain(&spec, &cfg.pretrain_config(cfg.seed), train, &splits.val, &out.join("generator"), device)?
            }
        };
        gan.precision = cfg.precision;
        Ok(match cfg.method {
            Method::Separate => MethodState::Separate { gan, real },
            _ => {
                let upper = Box::new(UpperOptimizers::new(cfg, &gan));
                MethodState::Genseg { gan, upper, real, ahead: SyntheticWindow::default() }
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
        let (gan, upper, real, ahead) = match self {
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
            MethodState::Separate { gan, real } => (&*gan, None, &*real, None),
            MethodState::Genseg { gan, upper, real, ahead } => {
                if iter.is_multiple_of(cfg.gan_every) {
                    log.gan = Some(gan.step(&x, &m, &mut batches.rng));
                }
                (&*gan, Some(&mut **upper), &*real, Some(ahead))
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
        let loss = cfg.precision.autocast(device, || lower.train_loss(&batch, &synthetic));
        log.loss = loss.double_value(&[]);
        let grads = gradients(&loss, &params);
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

/// Augmented copies of `masks` to synthesise from, and the images a pasting generator takes
/// their lesions from, moved by the same draws. Other generators ignore those images, so they
/// are left unmoved (no warp on the step's path); the draws are the same either way.
fn synthetic_masks(
    gan: &Gan,
    masks: &Tensor,
    images: &Tensor,
    cfg: &TrainConfig,
    rng: &mut ChaCha8Rng,
) -> (Tensor, Tensor) {
    match gan.spec.gan.paste {
        true => augment_masks_with_images(masks, images, &cfg.augment, rng),
        false => (augment_masks(masks, &cfg.augment, rng), images.shallow_clone()),
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

/// The libtorch seed of iteration `iter` (dropout, and the synthetic images of the step).
pub fn step_seed(seed: u64, iter: usize) -> i64 {
    (seed as i64).wrapping_mul(1_000_003) ^ iter as i64
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

    /// The window against brute force: the generator's version at iteration i counts the GAN
    /// steps at iterations <= i and the upper-level steps at iterations < i; a window is a
    /// maximal run of iterations without an upper-level step and with one version.
    #[test]
    fn windows_are_the_runs_between_generator_changes() {
        for gan_every in 1..6 {
            for arch_every in 1..6 {
                let version = |i: usize| {
                    (0..=i).filter(|j| j % gan_every == 0).count() + (0..i).filter(|j| j % arch_every == 0).count()
                };
                let inside = |j: usize, i: usize| !j.is_multiple_of(arch_every) && version(j) == version(i);
                for iter in (1..40usize).filter(|i| !i.is_multiple_of(arch_every)) {
                    let mut start = iter;
                    while inside(start - 1, iter) {
                        start -= 1;
                    }
                    let mut end = iter + 1;
                    while inside(end, iter) {
                        end += 1;
                    }
                    assert_eq!(
                        unchanged_window(gan_every, arch_every, iter),
                        (start, end),
                        "{gan_every} {arch_every} {iter}"
                    );
                }
            }
        }
    }

    /// A window's pairs do not depend on whether its block was made at its first iteration or,
    /// as in a run resumed inside the window, at a later one; each iteration gets its own.
    #[test]
    fn a_window_makes_the_same_pairs_whenever_it_opens() {
        use crate::gan::{GanConfig, GanSpec};
        tch::manual_seed(0);
        let masks = Tensor::rand([6, 1, 16, 16], (Kind::Float, Device::Cpu)).gt(0.7).to_kind(Kind::Float);
        let images = Tensor::rand([6, 3, 16, 16], (Kind::Float, Device::Cpu));
        let train = SegDataset::new((0..6).map(|i| i.to_string()).collect(), images, masks, vec![255]);
        let spec = GanSpec::for_data(GanConfig { ngf: 4, ndf: 4, ..Default::default() }, &train);
        let gan = Gan::new(&spec, Device::Cpu).unwrap();
        let data = crate::data::split::DataConfig::new(std::path::Path::new("unused"));
        let cfg = TrainConfig { gan_every: 8, arch_every: 8, ..TrainConfig::new(data) };
        let (mut from_start, mut resumed) = (SyntheticWindow::default(), SyntheticWindow::default());
        let first = from_start.take(&cfg, &gan, 1, &train);
        let later = from_start.take(&cfg, &gan, 5, &train);
        let again = resumed.take(&cfg, &gan, 5, &train);
        let same = |a: &Tensor, b: &Tensor| a.equal(b);
        assert!(same(&later.0, &again.0) && same(&later.1, &again.1) && same(&later.2.images, &again.2.images));
        assert_eq!(later.0.size()[0], cfg.synthetic_count());
        assert!(!same(&first.0, &later.0), "each iteration of a window gets its own pairs");
    }
}
