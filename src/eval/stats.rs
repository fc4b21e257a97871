//! Paired comparisons of study arms: mean differences with 95 % percentile-bootstrap intervals,
//! the project's rule for saying whether one arm beats another.
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Bootstrap resamples; the interval's ends move by about 0.001 Dice between seeds at this count.
const RESAMPLES: usize = 10_000;

/// The mean of `values` and its 95 % percentile-bootstrap interval (resampling the values with
/// replacement; a fixed seed so tables are reproducible). NaN values are left out; `None` when
/// none remain.
pub fn mean_interval(values: &[f64]) -> Option<Interval> {
    let v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| (0..v.len()).map(|_| v[rng.gen_range(0..v.len())]).sum::<f64>() / v.len() as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let (lo, hi) = (means[RESAMPLES * 25 / 1000], means[RESAMPLES * 975 / 1000 - 1]);
    Some(Interval { mean, lo, hi, n: v.len() })
}

/// Paired values a verdict needs.
pub const MIN_CELLS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    /// Values (paired cells) it rests on.
    pub n: usize,
}

impl Interval {
    /// "within noise" when the interval crosses 0, else better/worse; no verdict from fewer than
    /// [`MIN_CELLS`] paired values (two values make an interval that says nothing).
    pub fn verdict(&self) -> &'static str {
        if self.n < MIN_CELLS {
            "too few cells"
        } else if self.lo <= 0.0 && 0.0 <= self.hi {
            "within noise"
        } else if self.lo > 0.0 {
            "better"
        } else {
            "worse"
        }
    }

    /// `+0.012 [-0.020, +0.044]`.
    pub fn signed(&self) -> String {
        format!("{:+.3} [{:+.3}, {:+.3}]", self.mean, self.lo, self.hi)
    }
}

/// The middle value (the mean of the two middle ones for an even count); NaN for none.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle_or_the_mean_of_the_two_middle_values() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn bootstrap_interval_brackets_the_mean_and_narrows_with_more_cells() {
        let constant = mean_interval(&[0.3; 5]).unwrap();
        assert_eq!((constant.lo, constant.hi, constant.n), (0.3, 0.3, 5));
        let few = mean_interval(&[0.1, -0.05, 0.2, 0.0, 0.05]).unwrap();
        assert!(few.lo < few.mean && few.mean < few.hi, "{few:?}");
        assert!((few.mean - 0.06).abs() < 1e-12);
        // The same spread over 4x the cells: about half the width.
        let many: Vec<f64> = [0.1, -0.05, 0.2, 0.0, 0.05].repeat(4);
        let many = mean_interval(&many).unwrap();
        let ratio = (many.hi - many.lo) / (few.hi - few.lo);
        assert!((0.35..0.65).contains(&ratio), "width ratio {ratio}");
        assert_eq!(few.verdict(), "within noise");
        assert_eq!(mean_interval(&[0.1, 0.12, 0.09, 0.11]).unwrap().verdict(), "better");
        assert_eq!(mean_interval(&[-0.1, -0.12, -0.11]).unwrap().verdict(), "worse");
        assert_eq!(mean_interval(&[-0.1, -0.12]).unwrap().verdict(), "too few cells");
        assert_eq!(mean_interval(&[0.5]).unwrap().verdict(), "too few cells");
        assert!(mean_interval(&[f64::NAN]).is_none());
    }
}
