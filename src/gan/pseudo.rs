//! Pseudo-labelled pairs for the generator: a teacher segmenter labels the unlabelled images,
//! and the images it labels confidently join the labelled pairs the generator learns from, so a
//! mask-to-image generator sees hundreds of pairs instead of 8-40 (issue 31). The filter is
//! UniMatch's pixel confidence (0.95) raised to whole images: an image counts when nearly all
//! its pixels are confident and the teacher finds some foreground in it.
use crate::data::unlabelled::Unlabelled;
use crate::data::SegDataset;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Which pseudo-labelled images count.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PseudoFilter {
    /// A pixel is confident when the teacher's probability is at least this far from 0.5 (as
    /// max(p, 1 - p)).
    pub confidence: f64,
    /// An image counts when at least this share of its pixels is confident...
    pub confident_share: f64,
    /// ...and at least this share of its pixels is foreground.
    pub min_foreground: f64,
    /// At most this many images, the most confident first.
    pub cap: usize,
}

impl Default for PseudoFilter {
    fn default() -> PseudoFilter {
        PseudoFilter { confidence: 0.95, confident_share: 0.9, min_foreground: 0.005, cap: 400 }
    }
}

/// pseudo_labels.json: what the filter kept, beside the generator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PseudoRecord {
    pub filter: PseudoFilter,
    /// Unlabelled images the teacher saw.
    pub offered: usize,
    /// The median over them of the share of confident pixels (how sure the teacher was).
    pub median_confident_share: f64,
    /// (id, confident share) of the images kept, the most confident first.
    pub kept: Vec<(String, f64)>,
}

/// The confidently labelled images of `pool` under the teacher's probabilities `probs`
/// (`[U, 1, ...]`, in [0, 1]) as pairs with binary masks, and the record of the choice.
pub fn confident_pairs(
    pool: &Unlabelled,
    probs: &Tensor,
    labels: &[u32],
    filter: &PseudoFilter,
) -> (SegDataset, PseudoRecord) {
    let flat = probs.flatten(1, -1).to_kind(Kind::Double);
    let confident = Vec::<f64>::try_from(
        flat.maximum(&(1.0 - &flat)).ge(filter.confidence).to_kind(Kind::Double).mean_dim(1, false, Kind::Double),
    )
    .expect("shares");
    let foreground =
        Vec::<f64>::try_from(flat.gt(0.5).to_kind(Kind::Double).mean_dim(1, false, Kind::Double)).expect("shares");
    let mut kept: Vec<(usize, f64)> = (0..pool.len())
        .filter(|&i| confident[i] >= filter.confident_share && foreground[i] >= filter.min_foreground)
        .map(|i| (i, confident[i]))
        .collect();
    kept.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    kept.truncate(filter.cap);
    let index = Tensor::from_slice(&kept.iter().map(|&(i, _)| i as i64).collect::<Vec<_>>());
    let ids: Vec<String> = kept.iter().map(|&(i, _)| format!("pseudo-{}", pool.ids[i])).collect();
    let images = pool.images.index_select(0, &index);
    let masks = probs.index_select(0, &index).gt(0.5).to_kind(Kind::Float);
    let record = PseudoRecord {
        filter: filter.clone(),
        offered: pool.len(),
        median_confident_share: crate::eval::stats::median(&confident),
        kept: kept.iter().map(|&(i, share)| (pool.ids[i].clone(), share)).collect(),
    };
    (SegDataset::new(ids, images, masks, labels.to_vec()), record)
}

/// `a`'s pairs followed by `b`'s.
pub fn joined(a: &SegDataset, b: &SegDataset) -> SegDataset {
    let ids = a.ids.iter().chain(&b.ids).cloned().collect();
    SegDataset::new(
        ids,
        Tensor::cat(&[&a.images, &b.images], 0),
        Tensor::cat(&[&a.masks, &b.masks], 0),
        a.labels.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn only_confident_images_with_foreground_count_most_confident_first() {
        let opts = (Kind::Float, Device::Cpu);
        let pool =
            Unlabelled { ids: (0..4).map(|i| format!("u{i}")).collect(), images: Tensor::zeros([4, 1, 4, 4], opts) };
        let probs = Tensor::zeros([4, 1, 4, 4], opts);
        // u0: confident, a quarter foreground. u1: confident but empty. u2: half its pixels at
        // 0.6 (unsure). u3: every pixel confident, one foreground pixel in 16.
        let _ = probs.get(0).narrow(1, 0, 1).fill_(0.99);
        let _ = probs.get(2).narrow(1, 0, 2).fill_(0.6);
        let _ = probs.get(3).get(0).get(0).narrow(0, 0, 1).fill_(0.97);
        let filter = PseudoFilter { min_foreground: 0.05, ..PseudoFilter::default() };
        let (pairs, record) = confident_pairs(&pool, &probs, &[1], &filter);
        assert_eq!(pairs.ids, ["pseudo-u0", "pseudo-u3"]);
        assert_eq!(record.kept.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(), ["u0", "u3"]);
        assert_eq!(f64::try_from(pairs.masks.get(0).sum(Kind::Double)).unwrap(), 4.0, "masks are the teacher's > 0.5");
        let capped = confident_pairs(&pool, &probs, &[1], &PseudoFilter { cap: 1, ..filter }).0;
        assert_eq!(capped.ids, ["pseudo-u0"]);
    }
}
