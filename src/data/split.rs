//! Which data a run uses: the dataset, its seeded (or listed) train / validation / test split and
//! an optional out-of-domain set.
use super::set::{LoadOptions, SegDataset};
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataConfig {
    pub data: PathBuf,
    /// Out-of-domain dataset evaluated with the final model.
    pub ood: Option<PathBuf>,
    #[serde(flatten)]
    pub load: LoadOptions,
    pub train_n: usize,
    pub val_n: usize,
    /// Files of case ids (one a line) instead of a seeded split.
    pub train_ids: Option<PathBuf>,
    pub val_ids: Option<PathBuf>,
}

impl DataConfig {
    /// The defaults: a seeded split of 16 training and 4 validation cases of `data`, loaded
    /// with the default options.
    pub fn new(data: &Path) -> DataConfig {
        DataConfig {
            data: data.to_path_buf(),
            ood: None,
            load: LoadOptions::default(),
            train_n: 16,
            val_n: 4,
            train_ids: None,
            val_ids: None,
        }
    }
}

/// The loaded cases of each part of a split.
pub struct Splits {
    pub train: SegDataset,
    pub val: SegDataset,
    pub test: SegDataset,
    pub ood: Option<SegDataset>,
    pub split: Split,
}

pub fn load_splits(cfg: &DataConfig, seed: u64) -> Result<Splits> {
    let all = super::load(&cfg.data, &cfg.load)?;
    let split = match &cfg.train_ids {
        Some(f) => explicit(&all.ids, f, cfg.val_ids.as_deref())?,
        None => seeded(&all.ids, cfg.train_n, cfg.val_n, seed)?,
    };
    let ood = match &cfg.ood {
        Some(dir) => {
            let ood = super::load(dir, &LoadOptions { channels: Some(all.channels), ..cfg.load.clone() })?;
            if (&ood.shape, ood.labels.len()) != (&all.shape, all.labels.len()) {
                bail!(
                    "--ood {}: cases of shape {:?} with {} label(s), but the training data {} has {:?} with {}; give an \
                     out-of-domain set of the same kind",
                    dir.display(),
                    ood.shape,
                    ood.labels.len(),
                    cfg.data.display(),
                    all.shape,
                    all.labels.len()
                );
            }
            Some(ood)
        }
        None => None,
    };
    Ok(Splits {
        train: all.select(&split.train)?,
        val: all.select(&split.val)?,
        test: all.select(&split.test)?,
        ood,
        split,
    })
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Split {
    pub train: Vec<String>,
    pub val: Vec<String>,
    pub test: Vec<String>,
}

/// Shuffles the sorted ids with `seed`, then takes train, validation, and the rest as test.
pub fn seeded(ids: &[String], n_train: usize, n_val: usize, seed: u64) -> Result<Split> {
    if n_train == 0 {
        bail!("--train-n must be at least 1");
    }
    if n_train + n_val >= ids.len() {
        bail!(
            "the dataset has {} cases but train {n_train} + validation {n_val} leave none for testing; lower --train-n/--val-n",
            ids.len()
        );
    }
    let mut order = ids.to_vec();
    order.sort();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let test = order.split_off(n_train + n_val);
    let val = order.split_off(n_train);
    Ok(Split { train: order, val, test })
}

fn read_ids(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read id list {}", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect())
}

/// Train and validation ids from files (one id a line); test is every other case.
pub fn explicit(ids: &[String], train_file: &Path, val_file: Option<&Path>) -> Result<Split> {
    let train = read_ids(train_file)?;
    if train.is_empty() {
        bail!("{}: lists no case ids; put one training case id per line", train_file.display());
    }
    let val = match val_file {
        Some(f) => read_ids(f)?,
        None => vec![],
    };
    for (id, file) in
        train.iter().map(|i| (i, train_file)).chain(val.iter().map(|i| (i, val_file.unwrap_or(train_file))))
    {
        if !ids.contains(id) {
            bail!("{}: case '{id}' is not in the dataset; fix the id list", file.display());
        }
    }
    if let Some(dup) = train.iter().find(|t| val.contains(t)) {
        bail!("case '{dup}' is in both the train and validation lists; keep it in one");
    }
    let mut test: Vec<String> = ids.iter().filter(|i| !train.contains(i) && !val.contains(i)).cloned().collect();
    test.sort();
    Ok(Split { train, val, test })
}
