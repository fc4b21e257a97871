//! genseg's synthetic pairs: augmented masks of training cases, drawn into images by the
//! generator, made a window of iterations at a time.
use super::batches::{step_seed, Batches};
use super::config::TrainConfig;
use crate::data::augment::{augment_masks, augment_masks_with_images};
use crate::data::SegDataset;
use crate::gan::{Backgrounds, Gan};
use crate::precision::full_precision;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

/// genseg's synthetic pairs for a window of iterations over which its generator does not change
/// (it changes at the start of a GAN step's iteration and at the end of an upper-level step's),
/// made in one batch when the window opens. One call per iteration for the share's one or two
/// images cost about a third of a plain step, seven images in one call about twice one image:
/// the generator's small inner maps make a call cost what reading its weights costs
/// (`bench phases`, docs/history §16). A
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
    pub fn take(
        &mut self,
        cfg: &TrainConfig,
        gan: &Gan,
        iter: usize,
        train: &SegDataset,
    ) -> (Tensor, Tensor, Backgrounds) {
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

/// Augmented copies of `masks` to synthesise from, and the images a pasting generator takes
/// their lesions from, moved by the same draws. Other generators ignore those images, so they
/// are left unmoved (no warp on the step's path); the draws are the same either way.
pub fn synthetic_masks(
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

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

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
