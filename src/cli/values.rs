//! Checks of numbers a flag or a configuration key takes, each naming the flag.
use anyhow::{bail, Result};

pub fn positive(flag: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        bail!("{flag} {v}: must be a finite number above 0");
    }
    Ok(())
}

pub fn probability(flag: &str, v: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&v) {
        bail!("{flag} {v}: a probability must be between 0 and 1");
    }
    Ok(())
}

pub fn non_negative(flag: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v >= 0.0) {
        bail!("{flag} {v}: must be a finite number, 0 or above");
    }
    Ok(())
}

pub fn at_least_one(flag: &str, v: usize) -> Result<()> {
    if v == 0 {
        bail!("{flag} must be at least 1");
    }
    Ok(())
}

/// `--synthetic-share`: strictly between 0 and 1.
pub fn synthetic_share(v: f64) -> Result<()> {
    if !(v > 0.0 && v < 1.0) {
        bail!(
            "--synthetic-share {v}: must be above 0 and below 1 (the real pairs keep their place; for real pairs only \
             use --method augment)"
        );
    }
    Ok(())
}

/// `--synthetic-share` as a clap value parser (bench schedule).
pub fn share(text: &str) -> std::result::Result<f64, String> {
    let v = text.trim().parse::<f64>().map_err(|e| e.to_string())?;
    synthetic_share(v).map_err(|e| format!("{e}"))?;
    Ok(v)
}

/// A count that must be at least 1, as a clap value parser.
pub fn at_least_1(text: &str) -> std::result::Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(e) => Err(format!("{e}")),
    }
}

/// A volume shape as the command line writes it: `32,48,32`.
#[derive(Clone, Copy)]
pub struct Shape(pub [usize; 3]);

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c] = self.0;
        write!(f, "{a},{b},{c}")
    }
}

pub fn parse_shape(text: &str) -> std::result::Result<Shape, String> {
    let sides: Vec<usize> = text
        .split(',')
        .map(|v| v.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("{e}"))?;
    let shape =
        <[usize; 3]>::try_from(sides).map_err(|_| format!("'{text}' is not three sides; write e.g. 32,48,32"))?;
    if shape.contains(&0) {
        return Err(format!("'{text}' has a side of 0; every side must be at least 1"));
    }
    Ok(Shape(shape))
}

/// `i/k` with i < k.
pub fn shard(text: &str) -> std::result::Result<(usize, usize), String> {
    let (i, k) = text.split_once('/').ok_or_else(|| format!("'{text}' is not i/k"))?;
    let (i, k) = (i.parse::<usize>().map_err(|e| e.to_string())?, k.parse::<usize>().map_err(|e| e.to_string())?);
    if i >= k {
        return Err(format!("'{text}': i must be below k"));
    }
    Ok((i, k))
}
