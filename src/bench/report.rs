//! `genseg bench`: which benchmark, its settings, and the lines it prints.
use super::*;
use crate::infer::PredictOptions;
use std::path::PathBuf;

#[derive(Clone, Copy, PartialEq, Debug)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum BenchWhat {
    /// A U-Net training step (JSON: ms/step, GFLOP/s)
    Unet,
    /// A DeepLabV3+ training step (--backbone)
    Deeplab,
    /// A Swin-UNet training step (--window)
    SwinUnet,
    /// A plain U-Net step with and without the nnunet augmentation preset
    Augment,
    /// A GAN step (generator and discriminator)
    Gan,
    /// A GAN step with today's defaults and with each research recipe of the generator
    GanRecipe,
    /// Images per second of prediction (eval mode, no gradients) at --size, batch --batch
    Predict,
    /// Each phase of one genseg iteration beside a plain U-Net step
    Phases,
    /// Seconds per iteration of the real training loop on phantom data: plain, augment, semi,
    /// and genseg with its GAN and upper-level steps every 1, 4 and 8 iterations (--every)
    Schedule,
    /// The finite-difference hypergradient against the exact one (--data, --generator)
    Hypergrad,
    /// Metrics of 1000 2-D mask pairs and one 3-D pair
    Metrics,
}

/// The settings of a benchmark (each benchmark reads the ones it names).
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub width: i64,
    pub depth: usize,
    pub size: i64,
    pub batch: i64,
    pub steps: usize,
    /// phases, schedule: generator and discriminator width.
    pub ngf: i64,
    pub backbone: Backbone,
    pub window: i64,
    pub separate_ops: bool,
    pub every: Vec<usize>,
    pub synthetic_share: f64,
    pub rounds: usize,
    pub data: Option<PathBuf>,
    pub generator: Option<PathBuf>,
    pub precision: Precision,
}

/// Runs benchmark `what` and returns the lines it reports.
pub fn report(what: BenchWhat, a: &BenchOptions, device: Device) -> Result<Vec<String>> {
    let unet = UNetConfig { width: a.width, depth: a.depth, ..UNetConfig::reference() };
    let net = format!("unet w{} d{} {}px b{}", a.width, a.depth, a.size, a.batch);
    let json = |r: BenchResult| -> Result<Vec<String>> { Ok(vec![serde_json::to_string(&r)?]) };
    match what {
        BenchWhat::Unet => json(unet_step(&unet, a.size, a.batch, a.steps, device, a.precision)?),
        BenchWhat::Deeplab => json(segmenter_step(a.backbone, None, a.size, a.batch, a.steps, device)?),
        BenchWhat::SwinUnet => json(segmenter_step(a.backbone, Some(a.window), a.size, a.batch, a.steps, device)?),
        BenchWhat::Gan => json(gan_step(a.width, a.size, a.batch, !a.separate_ops, a.steps, device, a.precision)?),
        BenchWhat::Hypergrad => {
            let (Some(data), Some(generator)) = (&a.data, &a.generator) else {
                anyhow::bail!("bench hypergrad needs --data and --generator")
            };
            let rows = hypergrad_report(data, generator, (a.width, a.depth, a.batch, a.steps), device)?;
            Ok(rows
                .into_iter()
                .map(|(scale, cosine, ratio)| {
                    format!(
                        "fd_scale {scale:e}: cosine to exact {cosine:.3}, norm ratio fd/exact {ratio:.2} (mean of {} \
                         batches)",
                        a.steps
                    )
                })
                .collect())
        }
        BenchWhat::Augment => {
            let (plain, with) = augment_overhead(&unet, a.size, a.batch, a.steps, device);
            let extra = 100.0 * (with / plain - 1.0);
            Ok(vec![format!("{net}: plain step {plain:.1} ms, with nnunet augmentation {with:.1} ms ({extra:+.0} %)")])
        }
        BenchWhat::Predict => {
            let mut lines = Vec::new();
            for tta in [false, true] {
                let per_s = predict_speed(
                    &unet,
                    a.size,
                    a.batch,
                    a.steps,
                    PredictOptions { tta, precision: a.precision },
                    device,
                );
                let what = if tta { ", mirror TTA" } else { "" };
                // Without TTA: the convolution arithmetic this rate sustains, to set against the CPU's peak.
                let gflop = unet_forward_flops(&unet, a.size) / 1e9;
                let rate = if tta {
                    String::new()
                } else {
                    format!(" ({:.0} GFLOP/s at {gflop:.2} GFLOP/image)", per_s * gflop)
                };
                lines.push(format!("predict {net}{}{what}: {per_s:.1} images/s{rate}", a.precision.label()));
            }
            Ok(lines)
        }
        BenchWhat::Phases => {
            let phases = genseg_phases(&unet, a.ngf, a.size, a.batch, a.steps, device)?;
            let plain = phases[0].1;
            let mut lines =
                vec![format!("unet w{} d{}, gan ngf{}, {}px b{}:", a.width, a.depth, a.ngf, a.size, a.batch)];
            for (phase, ms) in phases {
                lines.push(format!("  {phase:<48} {ms:8.1} ms  {:5.2} plain steps", ms / plain));
            }
            if let Some(mib) = peak_resident_mib() {
                lines.push(format!("  peak resident memory of the process: {mib:.0} MiB"));
            }
            Ok(lines)
        }
        BenchWhat::Schedule => {
            let bench = ScheduleBench {
                unet,
                ngf: a.ngf,
                size: u32::try_from(a.size)?,
                batch: a.batch,
                steps: a.steps,
                every: a.every.clone(),
                synthetic_share: a.synthetic_share,
                rounds: a.rounds,
                precision: a.precision,
            };
            let arms = bench.run(device)?;
            let plain = arms[0].1;
            let mut lines = vec![format!(
                "training loop, unet w{} d{}, gan ngf{}, {}px b{}, synthetic share {}, {} iterations, median of {} rounds:",
                a.width, a.depth, a.ngf, a.size, a.batch, a.synthetic_share, a.steps, a.rounds
            )];
            for (arm, seconds) in arms {
                lines.push(format!(
                    "  {arm:<40} {:8.1} ms/iteration  {:5.2} plain iterations",
                    1e3 * seconds,
                    seconds / plain
                ));
            }
            Ok(lines)
        }
        BenchWhat::GanRecipe => {
            let [old, new, diverse, inpainting, pasting, segmenting] =
                gan_recipe_overhead(a.width, a.size, a.batch, a.steps, device)?;
            let extra = |ms: f64| 100.0 * (ms / old - 1.0);
            Ok(vec![format!(
                "gan ngf{} {}px b{}: default step {old:.1} ms, data-efficient step {new:.1} ms ({:+.0} %), with \
                 --code-length 8 --mode-seeking 1 {diverse:.1} ms ({:+.0} %), data-efficient with --inpaint \
                 {inpainting:.1} ms ({:+.0} %), with --inpaint --paste {pasting:.1} ms ({:+.0} %), --diff-augment \
                 --joint-augment --discriminator segmenting {segmenting:.1} ms ({:+.0} %)",
                a.width,
                a.size,
                a.batch,
                extra(new),
                extra(diverse),
                extra(inpainting),
                extra(pasting),
                extra(segmenting)
            )])
        }
        BenchWhat::Metrics => {
            let (two_d, three_d) = metrics_speed(1000);
            Ok(vec![format!(
                "metrics: 1000 pairs of 512x512 masks (all metrics) {two_d:.2} s; surface metrics of one 256^3 pair \
                 {three_d:.2} s"
            )])
        }
    }
}
