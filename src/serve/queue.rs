//! Which image to annotate next (active learning), after MONAI Label's strategies: random,
//! uncertainty (the disagreement of the model's ensemble members, ties broken by the entropy of
//! their mean), and uncertainty plus diversity (a greedy pick that weighs each image's
//! uncertainty by its distance to everything annotated or already queued, so one batch does not
//! spend the expert's time on near-duplicates).
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// A seeded shuffle: the baseline every strategy is measured against.
    Random,
    /// Most uncertain first.
    Uncertainty,
    /// Uncertain and unlike the images already annotated or queued.
    Diverse,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Random => "random",
            Strategy::Uncertainty => "uncertainty",
            Strategy::Diverse => "diverse",
        }
    }
}

/// What the current model says about one image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Score {
    /// Mean over members of 1 - Dice between a member's mask and the ensemble's.
    pub disagreement: f64,
    /// Mean binary entropy (bits) of the ensemble's probabilities.
    pub entropy: f64,
}

/// The order in which `waiting` images are offered. `scores` (from the current model) and
/// `features` (one short vector per image id, see [`features`]) may lack images: without a
/// model every strategy is random.
pub fn order(
    strategy: Strategy,
    waiting: &[String],
    annotated: &[String],
    scores: &HashMap<String, Score>,
    features: &HashMap<String, Vec<f32>>,
    seed: u64,
) -> Vec<String> {
    let mut ids = waiting.to_vec();
    ids.sort_by_key(|id| shuffle_key(seed, id));
    let scored = !scores.is_empty() && ids.iter().all(|id| scores.contains_key(id));
    if strategy == Strategy::Random || !scored {
        return ids;
    }
    let uncertainty = |id: &String| {
        let s = &scores[id];
        (s.disagreement, s.entropy)
    };
    // Stable sort over the shuffled order: equal scores keep a seeded order.
    ids.sort_by(|a, b| uncertainty(b).partial_cmp(&uncertainty(a)).unwrap_or(std::cmp::Ordering::Equal));
    if strategy == Strategy::Uncertainty || ids.iter().any(|id| !features.contains_key(id)) {
        return ids;
    }
    diverse(ids, annotated, scores, features)
}

/// Greedy: next = argmax u(i) * d(i), u the uncertainty (disagreement plus a small share of
/// entropy, over its maximum) and d the distance to the nearest annotated or already chosen
/// image (over its maximum).
fn diverse(
    mut left: Vec<String>,
    annotated: &[String],
    scores: &HashMap<String, Score>,
    features: &HashMap<String, Vec<f32>>,
) -> Vec<String> {
    let u: HashMap<String, f64> =
        left.iter().map(|id| (id.clone(), scores[id].disagreement + 0.1 * scores[id].entropy)).collect();
    let u_max = u.values().cloned().fold(0.0, f64::max).max(1e-12);
    let mut nearest: Vec<f64> = left
        .iter()
        .map(|id| {
            let f = &features[id];
            annotated.iter().filter_map(|a| features.get(a)).map(|g| distance(f, g)).fold(f64::INFINITY, f64::min)
        })
        .collect();
    let mut ordered = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let finite_max = nearest.iter().cloned().filter(|d| d.is_finite()).fold(0.0, f64::max).max(1e-12);
        let value = |k: usize| u[&left[k]] / u_max * nearest[k].min(finite_max) / finite_max;
        let best = (0..left.len()).fold(0, |b, k| if value(k) > value(b) { k } else { b });
        let chosen = left.remove(best);
        nearest.remove(best);
        let f = &features[&chosen];
        for (k, id) in left.iter().enumerate() {
            nearest[k] = nearest[k].min(distance(f, &features[id]));
        }
        ordered.push(chosen);
    }
    ordered
}

fn distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>().sqrt()
}

fn shuffle_key(seed: u64, id: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(id.as_bytes());
    h.finalize().into()
}

/// An image's appearance in a few numbers: its `[channels, h, w]` pixels averaged to 8 x 8 per
/// channel and standardised (so brightness and contrast do not dominate the distance).
pub fn features(chw: &[f32], channels: usize, side: usize) -> Vec<f32> {
    const CELLS: usize = 8;
    let mut out = vec![0f32; channels * CELLS * CELLS];
    let cell = side.div_ceil(CELLS).max(1);
    let mut counts = vec![0f32; out.len()];
    for c in 0..channels {
        for y in 0..side {
            for x in 0..side {
                let k = c * CELLS * CELLS + (y / cell).min(CELLS - 1) * CELLS + (x / cell).min(CELLS - 1);
                out[k] += chw[c * side * side + y * side + x];
                counts[k] += 1.0;
            }
        }
    }
    for (v, n) in out.iter_mut().zip(&counts) {
        *v /= n.max(1.0);
    }
    let mean = out.iter().sum::<f32>() / out.len() as f32;
    let sd = (out.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / out.len() as f32).sqrt().max(1e-6);
    out.iter().map(|v| (v - mean) / sd).collect()
}

/// The queue shown to the expert: `ordered` with the skipped images moved to the end, in the
/// order they were skipped.
pub fn with_skips_last(ordered: Vec<String>, skipped: &[String]) -> Vec<String> {
    let mut kept: Vec<String> = ordered.iter().filter(|id| !skipped.contains(id)).cloned().collect();
    kept.extend(skipped.iter().filter(|id| ordered.contains(id)).cloned());
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn random_order_is_seeded_and_uncertainty_puts_the_most_uncertain_first() {
        let w = ids(6);
        let none = HashMap::new();
        let a = order(Strategy::Uncertainty, &w, &[], &none, &HashMap::new(), 1);
        assert_eq!(a, order(Strategy::Random, &w, &[], &none, &HashMap::new(), 1), "no model: random");
        assert_ne!(a, order(Strategy::Random, &w, &[], &none, &HashMap::new(), 2));
        let scores: HashMap<String, Score> =
            w.iter().enumerate().map(|(i, id)| (id.clone(), Score { disagreement: i as f64, entropy: 0.0 })).collect();
        let u = order(Strategy::Uncertainty, &w, &[], &scores, &HashMap::new(), 1);
        assert_eq!(u, ["c5", "c4", "c3", "c2", "c1", "c0"]);
    }

    #[test]
    fn diversity_passes_over_a_near_duplicate_of_the_first_pick() {
        // c0 and c1 are twins and the most uncertain; c2 is a little less uncertain but unlike them.
        let w = ids(3);
        let scores: HashMap<String, Score> = [(1.0, "c0"), (0.99, "c1"), (0.8, "c2")]
            .iter()
            .map(|(d, id)| (id.to_string(), Score { disagreement: *d, entropy: 0.0 }))
            .collect();
        let features: HashMap<String, Vec<f32>> =
            [("c0", [0.0, 0.0]), ("c1", [0.01, 0.0]), ("c2", [1.0, 1.0]), ("a", [-10.0, -10.0])]
                .iter()
                .map(|(id, f)| (id.to_string(), f.to_vec()))
                .collect();
        let annotated = vec!["a".to_string()];
        assert_eq!(order(Strategy::Uncertainty, &w, &annotated, &scores, &features, 0), ["c0", "c1", "c2"]);
        assert_eq!(order(Strategy::Diverse, &w, &annotated, &scores, &features, 0), ["c0", "c2", "c1"]);
    }

    #[test]
    fn skipped_images_wait_at_the_end() {
        let q = with_skips_last(ids(4), &["c1".to_string(), "c0".to_string()]);
        assert_eq!(q, ["c2", "c3", "c1", "c0"]);
    }

    #[test]
    fn features_ignore_brightness() {
        let a: Vec<f32> = (0..64).map(|i| (i % 8) as f32 / 8.0).collect();
        let b: Vec<f32> = a.iter().map(|v| v * 0.5 + 0.2).collect();
        assert!(distance(&features(&a, 1, 8), &features(&b, 1, 8)) < 1e-3);
    }
}
