//! `genseg compare`: paired differences between arms of different studies.
use super::tables::*;
use super::*;

/// One arm of `genseg compare`: a method of a study folder.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyArm {
    pub study: PathBuf,
    pub method: String,
}

impl std::str::FromStr for StudyArm {
    type Err = String;

    /// `STUDY_DIR:METHOD`.
    fn from_str(text: &str) -> std::result::Result<StudyArm, String> {
        match text.rsplit_once(':') {
            Some((study, method)) if !study.is_empty() && !method.is_empty() => {
                Ok(StudyArm { study: study.into(), method: method.into() })
            }
            _ => Err(format!("'{text}' is not STUDY_DIR:METHOD (e.g. studies/kvasir:augment)")),
        }
    }
}

impl std::fmt::Display for StudyArm {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let name = self.study.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        write!(f, "{name}:{}", self.method)
    }
}

/// `genseg compare`: arms of different studies (a variant study against the one it varies)
/// paired by (N, seed) with `base`, as results.md pairs the methods of one study: a markdown
/// table per paired metric, from each study's results.csv.
pub fn compare(base: &StudyArm, arms: &[StudyArm]) -> Result<String> {
    let base_scores = arm_scores(base)?;
    let arm_scores: Vec<Scores> = arms.iter().map(arm_scores).collect::<Result<_>>()?;
    let mut ns: Vec<usize> = arm_scores.iter().flat_map(|s| s.keys().map(|k| k.0)).collect();
    ns.sort_unstable();
    ns.dedup();
    let mut seeds: Vec<u64> = arm_scores.iter().flat_map(|s| s.keys().map(|k| k.1)).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let mut md = String::new();
    for (i, title) in PAIRED_METRICS.iter().enumerate() {
        let rows: Vec<(String, Difference)> = arms
            .iter()
            .zip(&arm_scores)
            .map(|(arm, scores)| {
                let base_scores = &base_scores;
                let d: Difference = Box::new(move |n, s| {
                    let (a, b) = (scores.get(&(n, s))?[i], base_scores.get(&(n, s))?[i]);
                    (a - b).is_finite().then_some(a - b)
                });
                (arm.to_string(), d)
            })
            .collect();
        let table = difference_table(format!("{title}: each arm minus {base}"), &ns, &seeds, &rows, "arm");
        if table.rows.iter().any(|r| r.iter().skip(1).any(|c| c != "-")) {
            md.push_str(&table.markdown());
        }
    }
    Ok(md)
}

/// (N, seed) -> [best validation, test, out-of-domain Dice] of one arm, from results.csv.
type Scores = std::collections::BTreeMap<(usize, u64), [f64; 3]>;

pub(super) fn arm_scores(arm: &StudyArm) -> Result<Scores> {
    let path = arm.study.join("results.csv");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; give a study folder (run `genseg study ... --tables-only` on it to write its tables)",
            path.display()
        )
    })?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| {
        header.iter().position(|h| *h == name).ok_or_else(|| anyhow::anyhow!("{} has no column {name}", path.display()))
    };
    let cols = [column("method")?, column("n")?, column("seed")?];
    let metrics = [column("best_val_dice")?, column("test_dice")?, column("ood_dice")?];
    let mut scores = Scores::new();
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        let bad = || anyhow::anyhow!("{} line {}: cannot read '{line}'", path.display(), i + 2);
        if cells.get(cols[0]) != Some(&arm.method.as_str()) {
            continue;
        }
        let n = cells.get(cols[1]).and_then(|c| c.parse().ok()).ok_or_else(bad)?;
        let seed = cells.get(cols[2]).and_then(|c| c.parse().ok()).ok_or_else(bad)?;
        let mut values = [f64::NAN; 3];
        for (v, &c) in values.iter_mut().zip(&metrics) {
            *v = cells.get(c).and_then(|c| c.parse().ok()).ok_or_else(bad)?;
        }
        scores.insert((n, seed), values);
    }
    if scores.is_empty() {
        anyhow::bail!("{} has no finished run of method '{}'", path.display(), arm.method);
    }
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn study(dir: &Path, rows: &[&str]) {
        std::fs::create_dir_all(dir).unwrap();
        let header = "method,n,seed,test_dice,test_iou,test_cases,ood_dice,ood_iou,ood_cases,best_iter,stopped_iter,iters,seconds_per_iter,best_val_dice";
        std::fs::write(dir.join("results.csv"), format!("{header}\n{}\n", rows.join("\n"))).unwrap();
    }

    #[test]
    fn compare_pairs_arms_of_two_studies_by_cell() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("base"), tmp.path().join("variant"));
        study(&a, &["augment,8,1,0.5,0,1,NaN,NaN,0,1,1,1,0,0.4", "augment,8,2,0.6,0,1,NaN,NaN,0,1,1,1,0,0.5"]);
        // Seed 3 has no base run: it is left out of the pairs.
        study(
            &b,
            &[
                "separate,8,1,0.6,0,1,NaN,NaN,0,1,1,1,0,0.5",
                "separate,8,2,0.8,0,1,NaN,NaN,0,1,1,1,0,0.6",
                "separate,8,3,0.9,0,1,NaN,NaN,0,1,1,1,0,0.9",
            ],
        );
        let arm = |d: &Path, m: &str| format!("{}:{m}", d.display()).parse::<StudyArm>().unwrap();
        let md = compare(&arm(&a, "augment"), &[arm(&b, "separate")]).unwrap();
        // Two paired cells give the numbers but no verdict.
        assert!(
            md.contains(
                "| variant:separate | +0.100 [+0.100, +0.100] (2) | +0.100 [+0.100, +0.100] (2) | too few cells |"
            ),
            "{md}"
        );
        assert!(md.contains("| variant:separate | +0.150 [+0.100, +0.200] (2) |"), "{md}");
        assert!(!md.contains("Out-of-domain"), "no table without out-of-domain scores: {md}");
        let missing = compare(&arm(&a, "genseg"), &[arm(&b, "separate")]).unwrap_err().to_string();
        assert!(missing.contains("no finished run of method 'genseg'"), "{missing}");
        let no_file = compare(&arm(&tmp.path().join("nowhere"), "augment"), &[arm(&b, "separate")]).unwrap_err();
        assert!(no_file.to_string().contains("nowhere/results.csv"), "{no_file}");
        assert!("no-colon".parse::<StudyArm>().is_err());
    }
}
