//! Overlap metrics per case, with an explicit policy for empty masks.
//!
//! Dice = 2TP/(2TP+FP+FN), IoU = TP/(TP+FP+FN), sensitivity = TP/(TP+FN), precision =
//! TP/(TP+FP). When both masks are empty these are undefined: `EmptyPolicy::Nan` (nnU-Net,
//! MONAI `ignore_empty=True`) reports NaN and the aggregate skips the case; `EmptyPolicy::One`
//! (MONAI `ignore_empty=False`) scores it 1. Surface distances (HD, HD95, ASSD, MASD, NSD; see
//! [`super::distance`]) are infinite (NSD 0) when exactly one mask is empty, and NaN (or perfect
//! under `One`) when both are.
use super::distance::{surface_metrics, SurfaceMetrics};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum EmptyPolicy {
    Nan,
    One,
}

/// How cases are scored: empty-mask policy, voxel spacing (mm, one per axis) and the NSD
/// tolerance (mm).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricOptions {
    pub empty: EmptyPolicy,
    pub spacing: Vec<f64>,
    pub nsd_tolerance: f64,
}

impl MetricOptions {
    /// Pixel (voxel) units at the working resolution of `dims` axes (what training reports).
    pub fn pixels(empty: EmptyPolicy, dims: usize) -> MetricOptions {
        MetricOptions { empty, spacing: vec![1.0; dims], nsd_tolerance: 1.0 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseMetrics {
    pub id: String,
    pub dice: f64,
    pub iou: f64,
    pub sensitivity: f64,
    pub precision: f64,
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub n_pred: u64,
    pub n_ref: u64,
    #[serde(flatten)]
    pub surface: SurfaceMetrics,
}

fn ratio(num: f64, den: f64, empty: f64) -> f64 {
    if den == 0.0 {
        empty
    } else {
        num / den
    }
}

impl CaseMetrics {
    /// All metrics of one case from binary masks of `shape` (row-major).
    pub fn compute(id: &str, pred: &[bool], reference: &[bool], shape: &[usize], opts: &MetricOptions) -> CaseMetrics {
        let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
        for (&p, &r) in pred.iter().zip(reference) {
            match (p, r) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fn_ += 1,
                _ => {}
            }
        }
        let both_empty = match opts.empty {
            EmptyPolicy::Nan => f64::NAN,
            EmptyPolicy::One => 1.0,
        };
        let perfect = (opts.empty == EmptyPolicy::One).then_some(SurfaceMetrics {
            hd: 0.0,
            hd95: 0.0,
            assd: 0.0,
            masd: 0.0,
            nsd: 1.0,
        });
        let (t, p, n) = (tp as f64, fp as f64, fn_ as f64);
        CaseMetrics {
            id: id.to_string(),
            dice: ratio(2.0 * t, 2.0 * t + p + n, both_empty),
            iou: ratio(t, t + p + n, both_empty),
            // Undefined without reference (or prediction) foreground, whatever the policy.
            sensitivity: ratio(t, t + n, f64::NAN),
            precision: ratio(t, t + p, f64::NAN),
            tp,
            fp,
            fn_,
            n_pred: tp + fp,
            n_ref: tp + fn_,
            surface: surface_metrics(pred, reference, shape, &opts.spacing, opts.nsd_tolerance, perfect),
        }
    }
}

/// Per-case metrics for binary batches `[B, L, spatial...]` (> 0.5 is foreground). With one
/// channel the case id is kept; with several, channel c is scored as `{id}/{labels[c]}`.
pub fn batch_metrics(
    ids: &[String],
    pred: &Tensor,
    reference: &Tensor,
    labels: &[u32],
    opts: &MetricOptions,
) -> Vec<CaseMetrics> {
    let s = pred.size();
    let shape: Vec<usize> = s[2..].iter().map(|&v| v as usize).collect();
    let to_bools = |t: &Tensor| {
        Vec::<u8>::try_from(t.gt(0.5).to_kind(Kind::Uint8).to_device(tch::Device::Cpu).contiguous().view(-1)).unwrap()
    };
    let (p, r) = (to_bools(pred), to_bools(reference));
    let voxels: usize = shape.iter().product();
    let channels = s[1] as usize;
    (0..s[0] as usize * channels)
        .into_par_iter()
        .map(|k| {
            let (i, c) = (k / channels, k % channels);
            let pb: Vec<bool> = p[k * voxels..(k + 1) * voxels].iter().map(|&v| v != 0).collect();
            let rb: Vec<bool> = r[k * voxels..(k + 1) * voxels].iter().map(|&v| v != 0).collect();
            let id = if channels == 1 { ids[i].clone() } else { format!("{}/{}", ids[i], labels[c]) };
            CaseMetrics::compute(&id, &pb, &rb, &shape, opts)
        })
        .collect()
}

/// nanmean, sample sd and how many cases counted.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Aggregate {
    #[serde(with = "crate::runtime::json_f64")]
    pub mean: f64,
    #[serde(with = "crate::runtime::json_f64")]
    pub sd: f64,
    pub n: usize,
    pub n_nan: usize,
    /// Infinite values (distances with one empty mask) counted in n; they make the mean infinite.
    #[serde(default)]
    pub n_inf: usize,
}

pub fn aggregate(values: impl IntoIterator<Item = f64>) -> Aggregate {
    let all: Vec<f64> = values.into_iter().collect();
    let v: Vec<f64> = all.iter().copied().filter(|x| !x.is_nan()).collect();
    let n = v.len();
    let mean = if n == 0 { f64::NAN } else { v.iter().sum::<f64>() / n as f64 };
    let sd = if n < 2 || mean.is_infinite() {
        0.0
    } else {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    };
    Aggregate { mean, sd, n, n_nan: all.len() - n, n_inf: v.iter().filter(|x| x.is_infinite()).count() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32], h: i64, w: i64) -> Tensor {
        Tensor::from_slice(v).view([1, 1, h, w])
    }

    #[test]
    fn monai_meandice_case_1() {
        // MONAI test_compute_meandice C1: pred [[1,0],[0,1]], gt [[1,0],[1,1]] -> Dice 0.8;
        // test_compute_meaniou C1 on the same inputs -> IoU 0.6667.
        let m = batch_metrics(
            &["c".into()],
            &t(&[1., 0., 0., 1.], 2, 2),
            &t(&[1., 0., 1., 1.], 2, 2),
            &[1],
            &MetricOptions::pixels(EmptyPolicy::Nan, 2),
        );
        assert!((m[0].dice - 0.8).abs() < 1e-12);
        assert!((m[0].iou - 2.0 / 3.0).abs() < 1e-12);
        assert!((m[0].sensitivity - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(m[0].precision, 1.0);
    }

    #[test]
    fn empty_mask_policies() {
        let z = t(&[0.; 4], 2, 2);
        let o = t(&[1.; 4], 2, 2);
        let nan_opts = MetricOptions::pixels(EmptyPolicy::Nan, 2);
        let one_opts = MetricOptions::pixels(EmptyPolicy::One, 2);
        let nan = batch_metrics(&["c".into()], &z, &z, &[1], &nan_opts);
        assert!(nan[0].dice.is_nan() && nan[0].iou.is_nan());
        let one = batch_metrics(&["c".into()], &z, &z, &[1], &one_opts);
        assert_eq!((one[0].dice, one[0].iou, one[0].surface.hd95, one[0].surface.nsd), (1.0, 1.0, 0.0, 1.0));
        assert!(nan[0].surface.hd95.is_nan());
        // MONAI C12: GT empty, prediction all ones -> 0 under both policies.
        assert_eq!(batch_metrics(&["c".into()], &o, &z, &[1], &one_opts)[0].dice, 0.0);
        let missed = batch_metrics(&["c".into()], &z, &o, &[1], &nan_opts);
        assert_eq!(missed[0].dice, 0.0);
        assert!(missed[0].surface.hd.is_infinite() && missed[0].surface.nsd == 0.0);
    }

    #[test]
    fn aggregate_skips_nan_and_counts() {
        let a = aggregate([1.0, f64::NAN, 0.5]);
        assert_eq!((a.n, a.n_nan), (2, 1));
        assert!((a.mean - 0.75).abs() < 1e-12);
        assert!((a.sd - (0.125f64).sqrt()).abs() < 1e-12);
    }
}
