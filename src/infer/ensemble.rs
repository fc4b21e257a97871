//! Several models of one plan predicting together (a fit's fold models): the mean of their
//! probabilities, and how much they disagree on each image. A run folder is an ensemble of one,
//! so predict and export read a run and a fit folder alike.
use super::{load_model_weights, predict_probs_with, ModelSpec, PredictOptions};
use crate::models::segnet::SegNet;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// The file that makes a folder an ensemble.
pub const ENSEMBLE_FILE: &str = "ensemble.json";

/// ensemble.json: the member run folders, relative to the folder that holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnsembleFile {
    pub members: Vec<PathBuf>,
    /// What the members are (a fit's chosen candidate).
    pub candidate: String,
    /// The weight file of each member; `None`: model.safetensors (a fit's: the last model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
}

/// The member run folders of `path` and their weight file: those of its ensemble.json, or `path`
/// itself with model.safetensors.
pub fn members_and_weights(path: &Path) -> Result<(Vec<PathBuf>, String)> {
    let file = path.join(ENSEMBLE_FILE);
    let default = "model.safetensors".to_string();
    if !file.is_file() {
        return Ok((vec![path.to_path_buf()], default));
    }
    let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let e: EnsembleFile = serde_json::from_str(&text).with_context(|| format!("{} is corrupt", file.display()))?;
    if e.members.is_empty() {
        bail!("{}: lists no member runs; rerun `genseg fit` into this folder", file.display());
    }
    Ok((e.members.iter().map(|m| path.join(m)).collect(), e.weights.unwrap_or(default)))
}

/// The member run folders of `path` (see [`members_and_weights`]).
pub fn members(path: &Path) -> Result<Vec<PathBuf>> {
    Ok(members_and_weights(path)?.0)
}

/// Loaded members (one for a run folder); every member has the same inputs and outputs.
pub struct Ensemble {
    pub members: Vec<(VarStore, SegNet)>,
    pub spec: ModelSpec,
}

impl Ensemble {
    /// A run folder (from train) or a fit folder (from fit).
    pub fn load(path: &Path, device: Device) -> Result<Ensemble> {
        let mut loaded = Vec::new();
        let mut spec: Option<ModelSpec> = None;
        let (dirs, weights) = members_and_weights(path)?;
        for dir in dirs {
            let (vs, net, s) = load_model_weights(&dir, &weights, device)?;
            if let Some(first) = &spec {
                if (first.size, first.channels, &first.labels, first.volume_shape)
                    != (s.size, s.channels, &s.labels, s.volume_shape)
                {
                    bail!(
                        "{}: its inputs or labels differ from the first member's; the ensemble cannot average them",
                        dir.display()
                    );
                }
            }
            spec.get_or_insert(s);
            loaded.push((vs, net));
        }
        Ok(Ensemble { members: loaded, spec: spec.expect("at least one member") })
    }

    /// Each member's probabilities (CPU).
    pub fn member_probs(&self, images: &Tensor, device: Device, options: PredictOptions) -> Vec<Tensor> {
        self.members.iter().map(|(_, net)| predict_probs_with(net, images, device, options)).collect()
    }

    /// The mean of the members' probabilities (CPU).
    pub fn probs(&self, images: &Tensor, device: Device, options: PredictOptions) -> Tensor {
        mean(&self.member_probs(images, device, options))
    }
}

pub fn mean(probs: &[Tensor]) -> Tensor {
    Tensor::stack(probs, 0).mean_dim(0, false, Kind::Float)
}

/// Per image, how much the members disagree: the mean over members of 1 - Dice between the
/// member's mask and the ensemble's (0: every member draws the ensemble's mask; an image where
/// both masks are empty counts as agreement).
pub fn disagreement(members: &[Tensor], ensemble: &Tensor) -> Vec<f64> {
    let dims: Vec<i64> = (1..ensemble.dim() as i64).collect();
    let e = ensemble.gt(0.5).to_kind(Kind::Float);
    let per_member: Vec<Tensor> = members
        .iter()
        .map(|p| {
            let m = p.gt(0.5).to_kind(Kind::Float);
            let overlap = (&m * &e).sum_dim_intlist(dims.as_slice(), false, Kind::Float);
            let total = m.sum_dim_intlist(dims.as_slice(), false, Kind::Float)
                + e.sum_dim_intlist(dims.as_slice(), false, Kind::Float);
            let dice = (overlap * 2.0 + 1e-6) / (total + 1e-6);
            1.0 - dice
        })
        .collect();
    Vec::<f64>::try_from(mean(&per_member).to_kind(Kind::Double)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disagreement_is_zero_when_members_agree_and_grows_with_dissent() {
        let a = Tensor::zeros([2, 1, 4, 4], (Kind::Float, Device::Cpu));
        let _ = a.get(0).narrow(1, 0, 2).fill_(0.9);
        let _ = a.get(1).narrow(1, 0, 2).fill_(0.9);
        let b = a.copy();
        // The second member sees nothing in image 1.
        let _ = b.get(1).fill_(0.1);
        let same = disagreement(&[a.copy(), a.copy()], &a);
        assert!(same.iter().all(|&d| d.abs() < 1e-9), "{same:?}");
        let ens = mean(&[a.copy(), b.copy()]);
        let d = disagreement(&[a, b], &ens);
        assert!(d[0].abs() < 1e-9 && d[1] > 0.4, "{d:?}");
        let empty = Tensor::zeros([1, 1, 4, 4], (Kind::Float, Device::Cpu));
        assert_eq!(disagreement(&[empty.copy(), empty.copy()], &empty), vec![0.0]);
    }
}
