//! Training-step benchmarks (run by bench/run.sh beside the PyTorch reference in bench/reference.py)
//! and the analytic FLOP counts used to report achieved GFLOP/s.
use crate::models::deeplab::DeepLabConfig;
use crate::models::discriminator::DiscriminatorKind;
use crate::models::resnet::Backbone;
use crate::models::segnet::{NetConfig, SegNet};
use crate::models::swin_unet::SwinUNetConfig;
use crate::models::unet::{UNetConfig, Upsampling};
use crate::precision::Precision;
use crate::train::gan::{Gan, GanConfig, GanSpec};
use crate::train::loss::{segmentation_loss, RegionLoss};
use crate::train::optim::{gradients, OptimConfig, Optimizer};
use anyhow::Result;
use serde::Serialize;
use std::time::Instant;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

/// Multiply-adds x 2 of the convolutions of one U-Net forward pass on one image (BN, ReLU and
/// pooling are ignored: they are memory-bound and < 2 % of the arithmetic).
pub fn unet_forward_flops(cfg: &UNetConfig, size: i64) -> f64 {
    let ch = |i: usize| (cfg.width << i) as f64;
    let px = |i: usize| ((size >> i) * (size >> i)) as f64;
    let double_conv = |cin: f64, cout: f64, p: f64| 2.0 * 9.0 * p * (cin * cout + cout * cout);
    let mut f = double_conv(cfg.in_channels as f64, ch(0), px(0));
    for i in 1..cfg.depth {
        f += double_conv(ch(i - 1), ch(i), px(i));
        // up-sampling from level i to i-1, then the double conv on the concatenation
        f += match cfg.upsampling {
            Upsampling::Transposed => 2.0 * 4.0 * px(i) * ch(i) * ch(i) / 2.0,
            Upsampling::Bilinear => 2.0 * px(i - 1) * ch(i) * ch(i) / 2.0,
        };
        f += double_conv(ch(i), ch(i - 1), px(i - 1));
    }
    f + 2.0 * px(0) * ch(0) * cfg.out_channels as f64
}

/// FLOPs of one generator forward pass on one mask; `fused` counts one 8x8 kernel per mixed op,
/// otherwise 4x4 + 6x6 + 8x8.
pub fn generator_forward_flops(ngf: i64, size: i64, out_channels: i64, fused: bool) -> f64 {
    let levels = size.trailing_zeros() as usize;
    let ch = |i: usize| (ngf * (1 << i.min(3))) as f64;
    let taps = if fused { 64.0 } else { 16.0 + 36.0 + 64.0 };
    let mut f = 0.0;
    for i in 0..levels {
        let cin = if i == 0 { 1.0 } else { ch(i - 1) };
        let out_px = ((size >> (i + 1)) * (size >> (i + 1))) as f64;
        f += 2.0 * 16.0 * cin * ch(i) * out_px;
        let up_in = if i + 1 == levels { ch(i) } else { 2.0 * ch(i) };
        let up_out = if i == 0 { out_channels as f64 } else { ch(i - 1) };
        f += 2.0 * taps * up_in * up_out * out_px;
    }
    f
}

/// FLOPs of one PatchGAN forward pass on one (mask, image) pair.
pub fn patchgan_forward_flops(ndf: i64, size: i64, in_channels: i64) -> f64 {
    let n = ndf as f64;
    let layers =
        [(in_channels as f64, n, 2), (n, 2.0 * n, 2), (2.0 * n, 4.0 * n, 2), (4.0 * n, 8.0 * n, 1), (8.0 * n, 1.0, 1)];
    let mut side = size as f64;
    let mut f = 0.0;
    for (cin, cout, stride) in layers {
        side = ((side + 2.0 - 4.0) / stride as f64).floor() + 1.0;
        f += 2.0 * 16.0 * cin * cout * side * side;
    }
    f
}

#[derive(Debug, Serialize)]
pub struct BenchResult {
    pub what: String,
    pub ms_per_step: f64,
    /// Counted for the U-Net and the GAN; `None` for networks without a FLOP count.
    pub gflop_per_step: Option<f64>,
    pub gflops: Option<f64>,
    pub params: i64,
}

fn time_steps(warmup: usize, steps: usize, mut step: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        step();
    }
    let t = Instant::now();
    for _ in 0..steps {
        step();
    }
    t.elapsed().as_secs_f64() * 1000.0 / steps as f64
}

/// A segmenter with its optimiser and one random batch, stepped as the supervised loop does
/// (forward and BCE + Dice loss in `precision`, backward, Adam).
struct SegStep {
    vs: VarStore,
    net: SegNet,
    opt: Optimizer,
    x: Tensor,
    y: Tensor,
    device: Device,
    precision: Precision,
}

impl SegStep {
    fn new(cfg: &NetConfig, size: i64, batch: i64, device: Device, precision: Precision) -> SegStep {
        tch::manual_seed(0);
        let vs = VarStore::new(device);
        let net = SegNet::new(&vs.root(), cfg);
        let opt = Optimizer::new(OptimConfig::adam(1e-3, 0.9), vs.trainable_variables());
        let x = Tensor::rand([batch, cfg.in_channels(), size, size], (Kind::Float, device));
        let y = Tensor::rand([batch, 1, size, size], (Kind::Float, device)).gt(0.7).to_kind(Kind::Float);
        SegStep { vs, net, opt, x, y, device, precision }
    }

    fn step(&mut self, x: &Tensor, y: &Tensor) {
        let loss = self
            .precision
            .autocast(self.device, || segmentation_loss(&self.net.forward_t(x, true), y, RegionLoss::Dice));
        let g = gradients(&loss, self.opt.params());
        self.opt.step(&g);
        if self.device.is_cuda() {
            tch::Cuda::synchronize(0);
        }
    }
}

/// What the nnU-Net augmentation adds to a U-Net training step: (ms per plain step, ms per step
/// with the batch augmented first), on the same batch.
pub fn augment_overhead(cfg: &UNetConfig, size: i64, batch: i64, steps: usize, device: Device) -> (f64, f64) {
    use crate::data::nnaug::{augment, NnUnetAugment};
    use rand::SeedableRng;
    let mut s = SegStep::new(&NetConfig::Unet(cfg.clone()), size, batch, device, Precision::Fp32);
    let (x, y) = (s.x.shallow_clone(), s.y.shallow_clone());
    let aug = NnUnetAugment::defaults(2, None);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    // Interleaved, so both see the same machine state; the first two rounds warm up.
    let (mut plain, mut with) = (0.0, 0.0);
    for round in 0..steps + 2 {
        let a = time_steps(0, 1, || s.step(&x, &y));
        let b = time_steps(0, 1, || {
            let (xa, ya) = augment(&x, &y, &aug, &mut rng);
            s.step(&xa, &ya)
        });
        if round >= 2 {
            (plain, with) = (plain + a, with + b);
        }
    }
    (plain / steps as f64, with / steps as f64)
}

/// One U-Net training step, as the supervised loop does.
pub fn unet_step(
    cfg: &UNetConfig,
    size: i64,
    batch: i64,
    steps: usize,
    device: Device,
    precision: Precision,
) -> Result<BenchResult> {
    precision.check(device)?;
    let mut s = SegStep::new(&NetConfig::Unet(cfg.clone()), size, batch, device, precision);
    let (x, y) = (s.x.shallow_clone(), s.y.shallow_clone());
    let ms = time_steps(2, steps, || s.step(&x, &y));
    let gflop = 3.0 * unet_forward_flops(cfg, size) * batch as f64 / 1e9;
    Ok(BenchResult {
        what: format!("unet w{} d{} {size}px b{batch}{}", cfg.width, cfg.depth, precision.label()),
        ms_per_step: ms,
        gflop_per_step: Some(gflop),
        gflops: Some(gflop / ms * 1000.0),
        params: crate::models::count(&s.vs.trainable_variables()),
    })
}

/// One training step of DeepLabV3+ (`backbone`) or, with `window`, Swin-UNet (RGB in, one
/// label), as the supervised loop does.
pub fn segmenter_step(
    backbone: Backbone,
    window: Option<i64>,
    size: i64,
    batch: i64,
    steps: usize,
    device: Device,
) -> Result<BenchResult> {
    let (cfg, what) = match window {
        None => {
            let name = serde_json::to_value(backbone)?;
            let what = format!("deeplabv3plus {} {size}px b{batch}", name.as_str().unwrap_or("?"));
            (NetConfig::Deeplabv3plus(DeepLabConfig { backbone, in_channels: 3, out_channels: 1 }), what)
        }
        Some(window) => {
            let shape = [size, size];
            let what = format!("swin-unet window {window} {size}px b{batch}");
            (NetConfig::SwinUnet(SwinUNetConfig { in_channels: 3, out_channels: 1, shape, window }), what)
        }
    };
    cfg.validate(&[size, size])?;
    let mut s = SegStep::new(&cfg, size, batch, device, Precision::Fp32);
    let (x, y) = (s.x.shallow_clone(), s.y.shallow_clone());
    let ms = time_steps(2, steps, || s.step(&x, &y));
    Ok(BenchResult {
        what,
        ms_per_step: ms,
        gflop_per_step: None,
        gflops: None,
        params: crate::models::count(&s.vs.trainable_variables()),
    })
}

fn bench_gan(gan: GanConfig, size: i64, batch: i64, device: Device) -> Result<(Gan, Tensor, Tensor)> {
    tch::manual_seed(0);
    let spec = GanSpec { gan, shape: vec![size, size], channels: 3, mask_channels: 1 };
    let gan = Gan::new(&spec, device)?;
    let x = Tensor::rand([batch, 3, size, size], (Kind::Float, device));
    let m = Tensor::rand([batch, 1, size, size], (Kind::Float, device)).gt(0.7).to_kind(Kind::Float);
    Ok((gan, x, m))
}

fn gan_step_once(gan: &mut Gan, x: &Tensor, m: &Tensor, rng: &mut rand_chacha::ChaCha8Rng, device: Device) {
    gan.step(x, m, rng);
    if device.is_cuda() {
        tch::Cuda::synchronize(0);
    }
}

/// One Pix2Pix step (D step, then G step), as pretraining and the genseg loop do.
pub fn gan_step(
    ngf: i64,
    size: i64,
    batch: i64,
    fused: bool,
    steps: usize,
    device: Device,
    precision: Precision,
) -> Result<BenchResult> {
    use rand::SeedableRng;
    precision.check(device)?;
    let (mut gan, x, m) =
        bench_gan(GanConfig { ngf, ndf: ngf, fused: Some(fused), ..Default::default() }, size, batch, device)?;
    gan.precision = precision;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let ms = time_steps(2, steps, || gan_step_once(&mut gan, &x, &m, &mut rng, device));
    // G: forward + backward (2x); D: 3 forwards, D-step backward (2 x 2x), input-gradient pass for G (1x).
    let gflop = (3.0 * generator_forward_flops(ngf, size, 3, fused) + 8.0 * patchgan_forward_flops(ngf, size, 4))
        * batch as f64
        / 1e9;
    let params =
        crate::models::count(&gan.g_vs.trainable_variables()) + crate::models::count(&gan.d_vs.trainable_variables());
    Ok(BenchResult {
        what: format!(
            "gan ngf{ngf} {size}px b{batch} {}{}",
            if fused { "fused" } else { "three-conv" },
            precision.label()
        ),
        ms_per_step: ms,
        gflop_per_step: Some(gflop),
        gflops: Some(gflop / ms * 1000.0),
        params,
    })
}

/// `base` with the data-efficient GAN options the verdict used (`--diff-augment --joint-augment
/// --feature-matching 10`, docs/RESULTS.md section 10).
fn data_efficient(base: GanConfig) -> GanConfig {
    GanConfig { diff_augment: true, joint_augment: true, feature_matching: 10.0, ..base }
}

/// Milliseconds per GAN step with today's defaults, with the data-efficient options
/// (DiffAugment, joint augmentation, feature matching), with those plus a code of 8 and mode
/// seeking, with those plus `--inpaint`, with those plus `--inpaint --paste`, and with
/// DiffAugment, joint augmentation and the segmenting discriminator, interleaved so all see the
/// same machine state; the first two rounds warm up.
pub fn gan_recipe_overhead(ngf: i64, size: i64, batch: i64, steps: usize, device: Device) -> Result<[f64; 6]> {
    use rand::SeedableRng;
    let base = GanConfig { ngf, ndf: ngf, ..Default::default() };
    let (mut default, x, m) = bench_gan(base.clone(), size, batch, device)?;
    let recipe = data_efficient(base);
    let (mut efficient, _, _) = bench_gan(recipe.clone(), size, batch, device)?;
    let (mut diverse, _, _) =
        bench_gan(GanConfig { code_length: 8, mode_seeking: 1.0, ..recipe.clone() }, size, batch, device)?;
    let (mut inpainting, _, _) = bench_gan(GanConfig { inpaint: true, ..recipe.clone() }, size, batch, device)?;
    let (mut pasting, _, _) =
        bench_gan(GanConfig { inpaint: true, paste: true, ..recipe.clone() }, size, batch, device)?;
    let oasis = GanConfig { discriminator: DiscriminatorKind::Segmenting, feature_matching: 0.0, ..recipe };
    let (mut segmenting, _, _) = bench_gan(oasis, size, batch, device)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut total = [0.0; 6];
    let mut gans = [&mut default, &mut efficient, &mut diverse, &mut inpainting, &mut pasting, &mut segmenting];
    for round in 0..steps + 2 {
        for (t, gan) in total.iter_mut().zip(gans.iter_mut()) {
            let ms = time_steps(0, 1, || gan_step_once(gan, &x, &m, &mut rng, device));
            if round >= 2 {
                *t += ms;
            }
        }
    }
    Ok(total.map(|t| t / steps as f64))
}

/// This process's peak resident memory in MiB (Linux: VmHWM of /proc/self/status), if known.
pub fn peak_resident_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Images per second that [`crate::infer::predict_probs_with`] gives a random U-Net of `cfg` on
/// random `size` px RGB images, `batch` at a time (copies to and from the device included).
pub fn predict_speed(
    cfg: &UNetConfig,
    size: i64,
    batch: i64,
    steps: usize,
    options: crate::infer::PredictOptions,
    device: Device,
) -> f64 {
    let vs = VarStore::new(device);
    let net = SegNet::new(&vs.root(), &NetConfig::Unet(cfg.clone()));
    let x = Tensor::rand([batch, cfg.in_channels, size, size], (Kind::Float, Device::Cpu));
    let ms = time_steps(2, steps, || {
        let _ = crate::infer::predict_probs_with(&net, &x, device, options);
    });
    batch as f64 * 1000.0 / ms
}

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
    use crate::train::hypergrad::{HypergradMode, Lower, TrainBatch};
    use rand::SeedableRng;
    let mut plain = SegStep::new(&NetConfig::Unet(cfg.clone()), size, batch, device, Precision::Fp32);
    let (x, y) = (plain.x.shallow_clone(), plain.y.shallow_clone());
    let plain_ms = time_steps(2, steps, || plain.step(&x, &y));
    let (mut gan, images, masks) = bench_gan(GanConfig { ngf, ndf: ngf, ..Default::default() }, size, batch, device)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let gan_ms = time_steps(2, steps, || gan_step_once(&mut gan, &images, &masks, &mut rng, device));
    let vs = VarStore::new(device);
    let seg = SegNet::new(&vs.root(), &NetConfig::Unet(UNetConfig { in_channels: 3, ..cfg.clone() }));
    let lower = Lower { seg: &seg, seg_vs: &vs, gan: &gan, region: RegionLoss::Dice, lambda: 1.0 };
    let train = TrainBatch {
        images: images.shallow_clone(),
        masks: masks.shallow_clone(),
        synthetic_masks: masks.flip([3]),
        backgrounds: crate::train::gan::Backgrounds::next_in_batch(&images, &masks, &images.flip([3])),
        seed: 0,
        synthetic_weights: None,
    };
    let val = (images.flip([2]), masks.flip([2]));
    let params = vs.trainable_variables();
    let synthesis_ms = time_steps(2, steps, || {
        let _ = lower.synthesize(&train);
    });
    // Without a graph, as between upper-level steps: one image (the fast setting's share per
    // iteration) against seven in one batch (the window Ahead makes at K = 8).
    let plain_synthesis = |n: i64| {
        let m = masks.narrow(0, 0, 1).repeat([n, 1, 1, 1]);
        let lesions = images.narrow(0, 0, 1).repeat([n, 1, 1, 1]);
        let backgrounds = crate::train::gan::Backgrounds::next_in_batch(&images, &masks, &lesions);
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
/// recipe (docs/RESULTS.md section 10); the median of `rounds` runs of each. The phase bench
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
        let mut data_cfg = DataConfig { n: 16, val_n: Some(4), ..DataConfig::new(&data) };
        data_cfg.load.size = self.size;
        let gan = data_efficient(GanConfig { ngf: self.ngf, ndf: self.ngf, ..Default::default() });
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
        let mut arms: Vec<(String, TrainConfig)> = [Method::Plain, Method::Augment]
            .into_iter()
            .map(|method| (method.name().to_string(), TrainConfig { method, ..base.clone() }))
            .collect();
        for &k in &self.every {
            let (gan_every, arch_every, synthetic_share) = (k, k, self.synthetic_share);
            let cfg = TrainConfig { method: Method::Genseg, gan_every, arch_every, synthetic_share, ..base.clone() };
            arms.push((format!("genseg, GAN and upper level every {k}"), cfg));
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
    use crate::train::hypergrad::{HypergradMode, Lower, TrainBatch};
    use rand::SeedableRng;
    tch::manual_seed(0);
    let vs = VarStore::new(device);
    let seg = SegNet::new(&vs.root(), &NetConfig::Unet(cfg.clone()));
    let lower = Lower { seg: &seg, seg_vs: &vs, gan, region: RegionLoss::Dice, lambda: 1.0 };
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
            backgrounds: crate::train::gan::Backgrounds::next_in_batch(&images, &masks, &images),
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

fn disc(shape: &[usize], centre: &[f64], radius: f64) -> Vec<bool> {
    let n: usize = shape.iter().product();
    let strides: Vec<usize> = (0..shape.len()).map(|k| shape[k + 1..].iter().product()).collect();
    (0..n)
        .map(|i| {
            (0..shape.len()).map(|k| (((i / strides[k]) % shape[k]) as f64 - centre[k]).powi(2)).sum::<f64>()
                <= radius * radius
        })
        .collect()
}

/// Seconds for every metric (overlap and surface) of `pairs` 512x512 mask pairs, and for the
/// surface metrics of one 256^3 pair (spheres of radius 80 and 84, centres 3 voxels apart).
pub fn metrics_speed(pairs: usize) -> (f64, f64) {
    use crate::eval::metrics::{CaseMetrics, EmptyPolicy, MetricOptions};
    use rayon::prelude::*;
    let opts = MetricOptions { empty: EmptyPolicy::Nan, spacing: vec![0.8, 0.8], nsd_tolerance: 2.0 };
    let masks: Vec<(Vec<bool>, Vec<bool>)> = (0..pairs)
        .map(|i| {
            let c = 150.0 + (i % 200) as f64;
            (disc(&[512, 512], &[c, 256.0], 60.0 + (i % 50) as f64), disc(&[512, 512], &[c + 5.0, 250.0], 64.0))
        })
        .collect();
    let t = Instant::now();
    let cases: Vec<CaseMetrics> = masks
        .par_iter()
        .enumerate()
        .map(|(i, (a, b))| CaseMetrics::compute(&i.to_string(), a, b, &[512, 512], &opts))
        .collect();
    let two_d = t.elapsed().as_secs_f64();
    assert_eq!(cases.len(), pairs);
    let (a, b) =
        (disc(&[256, 256, 256], &[128.0, 128.0, 128.0], 80.0), disc(&[256, 256, 256], &[131.0, 128.0, 128.0], 84.0));
    let t = Instant::now();
    let m = crate::eval::distance::surface_metrics(&a, &b, &[256, 256, 256], &[1.0, 1.0, 1.0], 1.0, None);
    let three_d = t.elapsed().as_secs_f64();
    assert!(m.hd95.is_finite());
    (two_d, three_d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unet_flops_match_a_hand_count_for_one_level_pair() {
        // depth 2, width 1, 1->1 channels, 4x4 input:
        // inc: 2*9*16*(1+1) = 576; down1 (2x2, 1->2): 2*9*4*(2+4) = 432;
        // up: transposed 2*4*4*2*1 = 64; conv (2->1 at 4x4): 2*9*16*(2+1) = 864; head 2*16 = 32.
        let cfg = UNetConfig {
            in_channels: 1,
            out_channels: 1,
            width: 1,
            depth: 2,
            upsampling: Upsampling::Transposed,
            dims: 2,
            deep_supervision: false,
        };
        assert_eq!(unet_forward_flops(&cfg, 4), 576.0 + 432.0 + 64.0 + 864.0 + 32.0);
    }

    #[test]
    fn patchgan_flops_match_a_hand_count_and_the_real_map() {
        // ndf 1, 2 input channels, 32 px: sides 16, 8, 4, 3, 2.
        let hand =
            2.0 * 16.0 * (2.0 * 1.0 * 256.0 + 1.0 * 2.0 * 64.0 + 2.0 * 4.0 * 16.0 + 4.0 * 8.0 * 9.0 + 8.0 * 1.0 * 4.0);
        assert_eq!(patchgan_forward_flops(1, 32, 2), hand);
        let vs = VarStore::new(Device::Cpu);
        let d = crate::models::discriminator::PatchGan::new(&vs.root(), 2, 2, 1);
        let y = tch::nn::ModuleT::forward_t(&d, &Tensor::rand([1, 2, 32, 32], (Kind::Float, Device::Cpu)), false);
        assert_eq!(y.size(), vec![1, 1, 2, 2]);
    }
}
