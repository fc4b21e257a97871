//! The time budget of a fit: `--budget` as written (`20m`, `90s`, `1h30m`) and the share of it
//! cross-validation may spend.
use anyhow::{bail, Result};

/// The seconds of a `budget_s` fit that cross-validation may take. Planning, the report and the
/// rate's misjudgement take 5 % and 5 s; the ensemble's ONNX export (tracing every fold model,
/// then checking the graph in onnxruntime) 15 s and 5 % more. Never below half the budget.
pub fn training_seconds(budget_s: f64, exports: bool) -> f64 {
    let reserve = budget_s * 0.05 + if exports { 20.0 + budget_s * 0.05 } else { 5.0 };
    (budget_s - reserve).max(budget_s * 0.5)
}

/// `20m`, `90s`, `1h30m`, `600` (seconds).
pub fn parse_budget(text: &str) -> Result<f64> {
    let t = text.trim();
    if let Ok(s) = t.parse::<f64>() {
        return positive(s, text);
    }
    let (mut total, mut number) = (0.0, String::new());
    for ch in t.chars() {
        match ch {
            '0'..='9' | '.' => number.push(ch),
            'h' | 'm' | 's' => {
                let v: f64 =
                    number.parse().map_err(|_| anyhow::anyhow!("--budget {text}: give e.g. 20m, 90s or 1h30m"))?;
                total += v * match ch {
                    'h' => 3600.0,
                    'm' => 60.0,
                    _ => 1.0,
                };
                number.clear();
            }
            _ => bail!("--budget {text}: give e.g. 20m, 90s or 1h30m"),
        }
    }
    if !number.is_empty() {
        bail!("--budget {text}: give a unit after {number} (h, m or s)");
    }
    positive(total, text)
}

fn positive(s: f64, text: &str) -> Result<f64> {
    if !(s.is_finite() && s > 0.0) {
        bail!("--budget {text}: give a positive time, e.g. 20m");
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_with_units() {
        assert_eq!(parse_budget("20m").unwrap(), 1200.0);
        assert_eq!(parse_budget("1h30m").unwrap(), 5400.0);
        assert_eq!(parse_budget("90s").unwrap(), 90.0);
        assert_eq!(parse_budget("600").unwrap(), 600.0);
        for bad in ["", "0", "-5", "20x", "m", "20m5"] {
            assert!(parse_budget(bad).unwrap_err().to_string().contains("--budget"), "{bad}");
        }
    }

    /// A 10-minute fit keeps 35 s for the rest without an export, 80 s with one; a tiny budget
    /// keeps half for training.
    #[test]
    fn the_reserve_depends_on_the_export() {
        assert_eq!(training_seconds(600.0, false), 565.0);
        assert_eq!(training_seconds(600.0, true), 520.0);
        assert_eq!(training_seconds(40.0, true), 20.0);
    }
}
