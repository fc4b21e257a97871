//! Overlap metrics per case, with an explicit policy for empty masks.
//!
//! Dice = 2TP/(2TP+FP+FN), IoU = TP/(TP+FP+FN), sensitivity = TP/(TP+FN), precision =
//! TP/(TP+FP). When both masks are empty these are undefined: `EmptyPolicy::Nan` (nnU-Net,
//! MONAI `ignore_empty=True`) reports NaN and the aggregate skips the case; `EmptyPolicy::One`
//! (MONAI `ignore_empty=False`) scores it 1.
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EmptyPolicy {
    Nan,
    One,
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
}

fn ratio(num: f64, den: f64, empty: f64) -> f64 {
    if den == 0.0 {
        empty
    } else {
        num / den
    }
}

impl CaseMetrics {
    pub fn from_counts(id: &str, tp: u64, fp: u64, fn_: u64, policy: EmptyPolicy) -> CaseMetrics {
        let both_empty = match policy {
            EmptyPolicy::Nan => f64::NAN,
            EmptyPolicy::One => 1.0,
        };
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
        }
    }
}

/// Per-case metrics for binary batches `[B, 1, H, W]` (any values; > 0.5 is foreground).
pub fn batch_metrics(ids: &[String], pred: &Tensor, reference: &Tensor, policy: EmptyPolicy) -> Vec<CaseMetrics> {
    let b = pred.size()[0];
    let p = pred.gt(0.5).view([b, -1]).to_kind(Kind::Int64);
    let r = reference.gt(0.5).view([b, -1]).to_kind(Kind::Int64);
    let tp = Vec::<i64>::try_from((&p * &r).sum_dim_intlist(1, false, Kind::Int64).to_device(tch::Device::Cpu)).unwrap();
    let np = Vec::<i64>::try_from(p.sum_dim_intlist(1, false, Kind::Int64).to_device(tch::Device::Cpu)).unwrap();
    let nr = Vec::<i64>::try_from(r.sum_dim_intlist(1, false, Kind::Int64).to_device(tch::Device::Cpu)).unwrap();
    (0..b as usize)
        .map(|i| CaseMetrics::from_counts(&ids[i], tp[i] as u64, (np[i] - tp[i]) as u64, (nr[i] - tp[i]) as u64, policy))
        .collect()
}

/// nanmean, sample sd and how many cases counted.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Aggregate {
    pub mean: f64,
    pub sd: f64,
    pub n: usize,
    pub n_nan: usize,
}

pub fn aggregate(values: impl IntoIterator<Item = f64>) -> Aggregate {
    let all: Vec<f64> = values.into_iter().collect();
    let v: Vec<f64> = all.iter().copied().filter(|x| !x.is_nan()).collect();
    let n = v.len();
    let mean = if n == 0 { f64::NAN } else { v.iter().sum::<f64>() / n as f64 };
    let sd = if n < 2 { 0.0 } else { (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() };
    Aggregate { mean, sd, n, n_nan: all.len() - n }
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
        let m = batch_metrics(&["c".into()], &t(&[1., 0., 0., 1.], 2, 2), &t(&[1., 0., 1., 1.], 2, 2), EmptyPolicy::Nan);
        assert!((m[0].dice - 0.8).abs() < 1e-12);
        assert!((m[0].iou - 2.0 / 3.0).abs() < 1e-12);
        assert!((m[0].sensitivity - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(m[0].precision, 1.0);
    }

    #[test]
    fn empty_mask_policies() {
        let z = t(&[0.; 4], 2, 2);
        let o = t(&[1.; 4], 2, 2);
        let nan = batch_metrics(&["c".into()], &z, &z, EmptyPolicy::Nan);
        assert!(nan[0].dice.is_nan() && nan[0].iou.is_nan());
        let one = batch_metrics(&["c".into()], &z, &z, EmptyPolicy::One);
        assert_eq!((one[0].dice, one[0].iou), (1.0, 1.0));
        // MONAI C12: GT empty, prediction all ones -> 0 under both policies.
        assert_eq!(batch_metrics(&["c".into()], &o, &z, EmptyPolicy::One)[0].dice, 0.0);
        assert_eq!(batch_metrics(&["c".into()], &z, &o, EmptyPolicy::Nan)[0].dice, 0.0);
    }

    #[test]
    fn aggregate_skips_nan_and_counts() {
        let a = aggregate([1.0, f64::NAN, 0.5]);
        assert_eq!((a.n, a.n_nan), (2, 1));
        assert!((a.mean - 0.75).abs() < 1e-12);
        assert!((a.sd - (0.125f64).sqrt()).abs() < 1e-12);
    }
}
