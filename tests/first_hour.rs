//! What a new user sees in the first hour: the plan before training, progress lines in a log
//! (stderr not a terminal) with the loss metrics.jsonl records, every pair able to train,
//! distances in the unit they have, and no verdict from one seed.
mod common;
use common::{arg, genseg, phantom_dataset, stderr, stdout};

const SMALL: &[&str] = &["--size", "32", "--width", "4", "--depth", "3", "--device", "cpu", "--threads", "1"];

#[test]
fn train_logs_its_plan_first_then_progress_with_the_recorded_loss() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 12);
    let run = d.path().join("run");
    let mut args = vec!["train", arg(&data), "--n", "8", "--iters", "40", "--val-every", "10", "--out", arg(&run)];
    args.extend_from_slice(SMALL);
    let o = genseg(&args);
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    let plan = log.find("plan: augment on 6 training and 2 validation pairs (4 test), 32 px").expect("a plan line");
    let first_step = log.find("augment: step ").expect("progress lines in a log");
    assert!(plan < first_step, "the plan comes first:\n{log}");
    assert!(log.contains("s per step so far; the whole budget of 40 steps would take"), "{log}");
    // One line per validation, each with the loss metrics.jsonl holds for it.
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    for line in metrics.lines() {
        let m: serde_json::Value = serde_json::from_str(line).unwrap();
        let want = format!("augment: step {}/40, loss {:.3}, val Dice", m["iter"], m["loss"].as_f64().unwrap());
        assert!(log.contains(&want), "no '{want}' in:\n{log}");
    }
}

#[test]
fn every_labelled_pair_can_train_and_no_test_score_is_invented() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 8);
    let run = d.path().join("run");
    let mut args = vec!["train", arg(&data), "--n", "8", "--iters", "4", "--val-every", "2", "--out", arg(&run)];
    args.extend_from_slice(SMALL);
    let o = genseg(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("no test score"), "{}", stdout(&o));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["test"]["cases"], 0);
    assert!(!run.join("overlays_test.png").exists());
    let split: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("split.json")).unwrap()).unwrap();
    assert_eq!((split["train"].as_array().unwrap().len(), split["val"].as_array().unwrap().len()), (6, 2));
    // More than there is: refused, naming the count that works.
    let more = d.path().join("more");
    let mut args = vec!["train", arg(&data), "--n", "9", "--out", arg(&more)];
    args.extend_from_slice(SMALL);
    let o = genseg(&args);
    assert!(!o.status.success() && stderr(&o).contains("--n 8 trains and validates on every pair"), "{}", stderr(&o));
}

#[test]
fn evaluate_names_pixels_unless_a_spacing_gives_millimetres() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 4);
    let masks = data.join("masks");
    let o = genseg(&["evaluate", arg(&masks), arg(&masks), "--out", arg(&d.path().join("e1"))]);
    let hd95 = |o: &std::process::Output| {
        assert!(o.status.success(), "{}", stderr(o));
        stdout(o).lines().find(|l| l.starts_with("HD95")).expect("an HD95 line").to_string()
    };
    let line = hd95(&o);
    assert!(line.contains(" px (") && line.contains("NSD@1px") && !line.contains("mm"), "{line}");
    let o = genseg(&["evaluate", arg(&masks), arg(&masks), "--spacing", "0.5,0.5", "--out", arg(&d.path().join("e2"))]);
    let line = hd95(&o);
    assert!(line.contains(" mm (") && line.contains("NSD@1mm"), "{line}");
}

#[test]
fn a_one_seed_study_gives_numbers_but_no_verdict() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 14);
    let study = d.path().join("study");
    let mut args = vec!["study", arg(&data), "--n", "6,8", "--seeds", "1", "--methods", "plain,augment"];
    args.extend(["--iters", "4", "--val-every", "2", "--out", arg(&study)]);
    args.extend_from_slice(SMALL);
    let o = genseg(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(study.join("results.md")).unwrap();
    assert!(md.contains("| too few seeds |"), "{md}");
    for verdict in ["| better |", "| worse |", "| within noise |"] {
        assert!(!md.contains(verdict), "a verdict from one seed: {verdict}\n{md}");
    }
}

#[test]
fn a_run_without_validation_cases_says_so_instead_of_a_nan_dice() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 4);
    let ids = d.path().join("all.txt");
    let names: String = std::fs::read_dir(data.join("images"))
        .unwrap()
        .map(|e| format!("{}\n", e.unwrap().path().file_stem().unwrap().to_string_lossy()))
        .collect();
    std::fs::write(&ids, names).unwrap();
    let run = d.path().join("run");
    let mut args = vec!["train", arg(&data), "--train-ids", arg(&ids), "--iters", "4", "--val-every", "2"];
    args.extend_from_slice(&["--out", arg(&run)]);
    args.extend_from_slice(SMALL);
    let o = genseg(&args);
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    assert!(
        log.contains("augment: step 4/4, loss ") && log.contains("no validation cases (the last model is kept)"),
        "{log}"
    );
    assert!(!log.contains("NaN"), "{log}");
}
