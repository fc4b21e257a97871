//! Training-step benchmarks (run by bench/run.sh beside the PyTorch reference in bench/reference.py)
//! and the analytic FLOP counts used to report achieved GFLOP/s.
use crate::gan::{Gan, GanConfig, GanSpec};
use crate::learn::loss::{segmentation_loss, RegionLoss};
use crate::learn::optim::{gradients, OptimConfig, Optimizer};
use crate::models::deeplab::DeepLabConfig;
use crate::models::discriminator::DiscriminatorKind;
use crate::models::resnet::Backbone;
use crate::models::segnet::{NetConfig, SegNet};
use crate::models::swin_unet::SwinUNetConfig;
use crate::models::unet::{UNetConfig, Upsampling};
use crate::precision::Precision;
use anyhow::Result;
use serde::Serialize;
use std::time::Instant;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};
mod genseg;
mod report;
mod steps;

pub use genseg::{genseg_phases, hypergrad_accuracy, hypergrad_report, ScheduleBench};
pub use report::{report, BenchOptions, BenchWhat};
pub use steps::{augment_overhead, gan_recipe_overhead, gan_step, predict_speed, segmenter_step, unet_step};

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

pub(crate) fn time_steps(warmup: usize, steps: usize, mut step: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        step();
    }
    let t = Instant::now();
    for _ in 0..steps {
        step();
    }
    t.elapsed().as_secs_f64() * 1000.0 / steps as f64
}

/// This process's peak resident memory in MiB (Linux: VmHWM of /proc/self/status), if known.
pub fn peak_resident_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
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
