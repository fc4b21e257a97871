//! Which data a run uses: the dataset, its seeded (or listed) train / validation / test split and
//! an optional out-of-domain set.
use super::set::{LoadOptions, SegDataset};
use super::unlabelled::{self, Unlabelled};
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
    /// Labelled pairs a seeded split takes: training + validation, as the reference counts them
    /// ("ISIC-40" = 32 training + 8 validation images).
    pub n: usize,
    /// Validation pairs among the `n`; `None`: a quarter of them, at least 2.
    pub val_n: Option<usize>,
    /// Files of case ids (one a line) instead of a seeded split.
    pub train_ids: Option<PathBuf>,
    pub val_ids: Option<PathBuf>,
    /// A folder of images without masks for the methods that learn from them (`semi`).
    #[serde(default)]
    pub unlabelled: Option<PathBuf>,
    /// Cases of the set itself whose masks are set aside, drawn by the seeded split from the cases
    /// outside the labelled `n` (never from validation or test cases: the test split is what is
    /// left after them), so every arm of a study is tested on the same cases.
    #[serde(default)]
    pub unlabelled_n: Option<usize>,
}

impl DataConfig {
    /// The folders and files this data is read from, named as the user gave them.
    pub fn inputs(&self) -> Vec<(&'static str, &Path)> {
        let mut inputs = vec![("the data folder", self.data.as_path())];
        inputs.extend(self.ood.as_deref().map(|p| ("--ood", p)));
        inputs.extend(self.train_ids.as_deref().map(|p| ("--train-ids", p)));
        inputs.extend(self.val_ids.as_deref().map(|p| ("--val-ids", p)));
        inputs.extend(self.unlabelled.as_deref().map(|p| ("--unlabelled", p)));
        inputs
    }

    /// Refuses, naming the flag and the fix, an input that is not there or a data folder without
    /// its images and masks: a cheap check for commands that hand the data to many processes,
    /// so one message is printed instead of one per process.
    pub fn refuse_missing_inputs(&self) -> Result<()> {
        for (name, path) in self.inputs() {
            if !path.exists() {
                bail!("{name} {}: not found; give an existing path", path.display());
            }
        }
        super::files::Folders::of(&self.data)?;
        if let Some(ood) = &self.ood {
            super::files::Folders::of(ood).context("--ood")?;
        }
        Ok(())
    }

    /// The defaults: a seeded split of 20 labelled cases of `data` (15 training, 5 validation),
    /// loaded with the default options.
    pub fn new(data: &Path) -> DataConfig {
        DataConfig {
            data: data.to_path_buf(),
            ood: None,
            load: LoadOptions::default(),
            n: 20,
            val_n: None,
            train_ids: None,
            val_ids: None,
            unlabelled: None,
            unlabelled_n: None,
        }
    }
}

/// The loaded cases of each part of a split.
pub struct Splits {
    pub train: SegDataset,
    pub val: SegDataset,
    pub test: SegDataset,
    pub ood: Option<SegDataset>,
    /// Images without masks: the split's `unlabelled` cases, or after
    /// [`Splits::load_unlabelled_folder`] those of `--unlabelled`.
    pub unlabelled: Option<Unlabelled>,
    pub split: Split,
}

impl Splits {
    /// Loads `cfg.unlabelled` (when given) like the labelled cases, refusing any image that is a
    /// validation, test or out-of-domain case.
    pub fn load_unlabelled_folder(&mut self, cfg: &DataConfig) -> Result<()> {
        let Some(dir) = &cfg.unlabelled else {
            return Ok(());
        };
        let pool = unlabelled::load(dir, &self.train, &cfg.load)?;
        let mut held_out = vec![("validation", &self.val), ("test", &self.test)];
        held_out.extend(self.ood.as_ref().map(|o| ("out-of-domain", o)));
        unlabelled::refuse_held_out(&pool, &format!("--unlabelled {}", dir.display()), &held_out)?;
        self.unlabelled = Some(pool);
        Ok(())
    }
}

pub fn load_splits(cfg: &DataConfig, seed: u64) -> Result<Splits> {
    let all = super::load(&cfg.data, &cfg.load)?;
    let mut split = match &cfg.train_ids {
        Some(f) => explicit(&all.ids, f, cfg.val_ids.as_deref())?,
        None => seeded(&all.ids, cfg.n, cfg.val_n, seed)?,
    };
    if let Some(u) = cfg.unlabelled_n {
        set_aside_unlabelled(&mut split, u, cfg)?;
    }
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
    let unlabelled = match split.unlabelled.is_empty() {
        true => None,
        false => Some(Unlabelled::of_cases(&all.select(&split.unlabelled)?)),
    };
    Ok(Splits {
        train: all.select(&split.train)?,
        val: all.select(&split.val)?,
        test: all.select(&split.test)?,
        ood,
        unlabelled,
        split,
    })
}

/// Moves the first `u` cases of a seeded split's test part (in its shuffled order: a seeded
/// draw) to its unlabelled part.
fn set_aside_unlabelled(split: &mut Split, u: usize, cfg: &DataConfig) -> Result<()> {
    if cfg.train_ids.is_some() || cfg.unlabelled.is_some() {
        bail!("--unlabelled-n draws unlabelled cases in a seeded split; with --train-ids or --unlabelled give the images as --unlabelled DIR alone");
    }
    if u > split.test.len() {
        bail!(
            "--unlabelled-n {u}: only {} cases are outside the labelled --n {}; lower --unlabelled-n",
            split.test.len(),
            cfg.n
        );
    }
    split.unlabelled = split.test.drain(..u).collect();
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Split {
    pub train: Vec<String>,
    pub val: Vec<String>,
    pub test: Vec<String>,
    /// Cases whose masks are set aside (`--unlabelled-n`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unlabelled: Vec<String>,
}

/// How many of `n` labelled pairs validate: `val_n`, or a quarter of `n` (at least 2) so that
/// checkpoint selection does not hinge on a fixed handful of cases whatever the study's size.
pub fn validation_count(n: usize, val_n: Option<usize>) -> Result<usize> {
    let val = val_n.unwrap_or_else(|| ((n as f64 * 0.25).round() as usize).max(2));
    if val >= n {
        bail!(
            "--n {n} labelled pairs leave none for training after {val} for validation; raise --n (at least {}) or lower --val-n",
            val + 1
        );
    }
    Ok(val)
}

/// Shuffles the sorted ids with `seed`, then takes `n` labelled cases (training, then
/// validation) and the rest as test; `n` = every case leaves no test split.
pub fn seeded(ids: &[String], n: usize, val_n: Option<usize>, seed: u64) -> Result<Split> {
    let n_val = validation_count(n, val_n)?;
    if n > ids.len() {
        bail!(
            "the dataset has {} cases but --n is {n}; lower --n (--n {} trains and validates on every pair, with no test \
             split and so no test score)",
            ids.len(),
            ids.len()
        );
    }
    let n_train = n - n_val;
    let mut order = ids.to_vec();
    order.sort();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let test = order.split_off(n_train + n_val);
    let val = order.split_off(n_train);
    Ok(Split { train: order, val, test, unlabelled: vec![] })
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
    Ok(Split { train, val, test, unlabelled: vec![] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarter_of_the_labelled_pairs_validates_at_least_two() {
        let counts: Vec<usize> = [3, 8, 16, 20, 32, 40].iter().map(|&n| validation_count(n, None).unwrap()).collect();
        assert_eq!(counts, [2, 2, 4, 5, 8, 10]);
        assert_eq!(validation_count(8, Some(0)).unwrap(), 0);
        assert!(validation_count(2, None).unwrap_err().to_string().contains("--n 2"));
        assert!(validation_count(4, Some(4)).unwrap_err().to_string().contains("--val-n"));
    }

    #[test]
    fn a_seeded_split_takes_n_labelled_cases_and_tests_the_rest() {
        let ids: Vec<String> = (0..30).map(|i| format!("c{i:02}")).collect();
        let split = seeded(&ids, 16, None, 7).unwrap();
        assert_eq!((split.train.len(), split.val.len(), split.test.len()), (12, 4, 14));
        let mut all: Vec<String> = split.train.iter().chain(&split.val).chain(&split.test).cloned().collect();
        all.sort();
        assert_eq!(all, ids);
        assert_eq!(seeded(&ids, 16, None, 7).unwrap(), split);
        let every = seeded(&ids, 30, None, 7).unwrap();
        assert_eq!((every.train.len(), every.val.len(), every.test.len()), (22, 8, 0));
        assert!(seeded(&ids, 31, None, 7).unwrap_err().to_string().contains("--n 30 trains"));
    }
}
