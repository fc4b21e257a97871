//! Training and prediction steps of the segmenters and the GAN, timed.
use super::*;

/// A segmenter with its optimiser and one random batch, stepped as the supervised loop does
/// (forward and BCE + Dice loss in `precision`, backward, Adam).
pub(super) struct SegStep {
    pub(super) vs: VarStore,
    pub(super) net: SegNet,
    pub(super) opt: Optimizer,
    pub(super) x: Tensor,
    pub(super) y: Tensor,
    pub(super) device: Device,
    pub(super) precision: Precision,
}

impl SegStep {
    pub(super) fn new(cfg: &NetConfig, size: i64, batch: i64, device: Device, precision: Precision) -> SegStep {
        tch::manual_seed(0);
        let vs = VarStore::new(device);
        let net = SegNet::new(&vs.root(), cfg);
        let opt = Optimizer::new(OptimConfig::adam(1e-3, 0.9), vs.trainable_variables());
        let x = Tensor::rand([batch, cfg.in_channels(), size, size], (Kind::Float, device));
        let y = Tensor::rand([batch, 1, size, size], (Kind::Float, device)).gt(0.7).to_kind(Kind::Float);
        SegStep { vs, net, opt, x, y, device, precision }
    }

    pub(super) fn step(&mut self, x: &Tensor, y: &Tensor) {
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

pub(super) fn bench_gan(gan: GanConfig, size: i64, batch: i64, device: Device) -> Result<(Gan, Tensor, Tensor)> {
    tch::manual_seed(0);
    let spec = GanSpec { gan, shape: vec![size, size], channels: 3, mask_channels: 1 };
    let gan = Gan::new(&spec, device)?;
    let x = Tensor::rand([batch, 3, size, size], (Kind::Float, device));
    let m = Tensor::rand([batch, 1, size, size], (Kind::Float, device)).gt(0.7).to_kind(Kind::Float);
    Ok((gan, x, m))
}

pub(super) fn gan_step_once(gan: &mut Gan, x: &Tensor, m: &Tensor, rng: &mut rand_chacha::ChaCha8Rng, device: Device) {
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

/// Milliseconds per GAN step with today's defaults, with the data-efficient options
/// (DiffAugment, joint augmentation, feature matching), with those plus a code of 8 and mode
/// seeking, with those plus `--inpaint`, with those plus `--inpaint --paste`, and with
/// DiffAugment, joint augmentation and the segmenting discriminator, interleaved so all see the
/// same machine state; the first two rounds warm up.
pub fn gan_recipe_overhead(ngf: i64, size: i64, batch: i64, steps: usize, device: Device) -> Result<[f64; 6]> {
    use rand::SeedableRng;
    let base = GanConfig { ngf, ndf: ngf, ..Default::default() };
    let (mut default, x, m) = bench_gan(base.clone(), size, batch, device)?;
    let recipe = GanConfig::data_efficient(ngf);
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
