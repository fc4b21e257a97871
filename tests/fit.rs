//! `genseg fit` end to end on a phantom set: killed midway, it resumes without retraining a
//! finished fold run, keeps its budget, delivers an ensemble that predicts (with uncertainty),
//! an ONNX file of it, a report, and refuses to resume onto changed data.
mod common;
use common::{arg, genseg, one_at_a_time, phantom_dataset, stderr, stdout};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn modified(path: &std::path::Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
#[ignore = "slow: a 150 s fit, killed and resumed (make test)"]
fn a_killed_fit_resumes_keeps_its_budget_and_predicts_with_its_ensemble() {
    let _alone = one_at_a_time();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("phantom");
    genseg::data::phantom::write_dataset(&data, 24, 32, 5).unwrap();
    let out = d.path().join("fit");
    let budget = 150.0;
    let args = [
        "fit",
        arg(&data),
        "--out",
        arg(&out),
        "--budget",
        "150s",
        "--folds",
        "3",
        "--candidates",
        "augment,copy-paste",
        "--device",
        "cpu",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_genseg")).args(args).spawn().unwrap();
    let first = out.join("runs/augment/fold0/summary.json");
    let start = Instant::now();
    while !first.exists() && start.elapsed() < Duration::from_secs(150) {
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(first.exists(), "no fold run finished within 150 s");
    assert!(!out.join("ensemble.json").exists(), "the fit ended before it could be killed");
    let kept = modified(&first);

    let o = genseg(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("chosen:"), "{}", stdout(&o));
    assert_eq!(modified(&first), kept, "a finished fold run was trained again");
    // The budget over both sessions, within 10 %.
    let spent = json(&out.join("clock.json"))["spent_s"].as_f64().unwrap();
    assert!(spent <= budget * 1.1, "spent {spent:.0} s of a {budget} s budget");

    let record = json(&out.join("plan.json"));
    let plan = &record["plan"];
    assert_eq!(plan["folds"], 3);
    assert_eq!(plan["candidates"], serde_json::json!(["augment", "copy-paste"]), "{plan}");
    let cv = &record["cv"];
    let chosen = cv["chosen"].as_str().unwrap();
    let rows = cv["rows"].as_array().unwrap();
    // Every candidate has the same folds (all 3 unless a loaded machine spent the budget first),
    // and each of their 8 pairs validates once.
    let folds_done = rows[0]["runs"].as_array().unwrap().len();
    assert!(folds_done >= 1);
    for row in rows {
        assert_eq!(row["runs"].as_array().unwrap().len(), folds_done, "{}", row["candidate"]);
        let mut ids: Vec<&str> = row["cases"].as_array().unwrap().iter().map(|c| c[0].as_str().unwrap()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 8 * folds_done, "{}", row["candidate"]);
    }
    let ensemble = json(&out.join("ensemble.json"));
    assert_eq!(ensemble["candidate"], chosen);
    assert_eq!(ensemble["members"].as_array().unwrap().len(), folds_done);
    for file in ["report.html", "overlays_val.png", "model.onnx"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }

    // predict with the fit folder: one mask per image, and the members' disagreement.
    let pred = d.path().join("pred");
    let o = genseg(&["predict", "--run", arg(&out), arg(&data.join("images")), "--out", arg(&pred)]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A fit cut to one fold on a loaded machine is one model, with no disagreement to report
    // (the two-member case is tested on its own below, independent of the machine's speed).
    assert_eq!(pred.join("uncertainty.csv").is_file(), folds_done >= 2, "{folds_done} fold models");
    let o = genseg(&["evaluate", arg(&pred), arg(&data), "--out", arg(&d.path().join("eval"))]);
    assert!(o.status.success(), "{}", stderr(&o));

    // TorchScript holds one network: a fit folder of several exports as ONNX only, one of a
    // single fold model (a budget spent after the first fold) exports that model.
    let o = genseg(&["export", "--run", arg(&out), "--out", arg(&d.path().join("m.pt"))]);
    match folds_done {
        1 => assert!(o.status.success(), "{}", stderr(&o)),
        _ => assert!(!o.status.success() && stderr(&o).contains("exports as ONNX"), "{}", stderr(&o)),
    }

    // A finished fit resumed onto changed data is refused, naming the change.
    std::fs::copy(data.join("images/phantom_000.png"), data.join("images/extra.png")).unwrap();
    std::fs::copy(data.join("masks/phantom_000.png"), data.join("masks/extra.png")).unwrap();
    let o = genseg(&args);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("other data") && stderr(&o).contains("extra.png"), "{}", stderr(&o));
}

/// An ensemble of two runs (what a fit folder's ensemble.json lists) predicts with the mean of
/// their probabilities and writes each image's disagreement, most uncertain first; an ensemble of
/// one exports as TorchScript.
#[test]
fn an_ensemble_predicts_with_each_images_disagreement() {
    let _alone = one_at_a_time();
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 24);
    let ensemble = d.path().join("ensemble");
    for seed in ["1", "2"] {
        let run = ensemble.join(format!("seed{seed}"));
        let o = genseg(&["train", arg(&data), "--out", arg(&run), "--size", "32", "--iters", "3", "--seed", seed]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let file = serde_json::json!({"members": ["seed1", "seed2"], "candidate": "augment"});
    std::fs::write(ensemble.join("ensemble.json"), file.to_string()).unwrap();
    let pred = d.path().join("pred");
    let o = genseg(&["predict", "--run", arg(&ensemble), arg(&data.join("images")), "--out", arg(&pred)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(pred.join("uncertainty.csv")).unwrap();
    let scores: Vec<f64> = text.lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect();
    assert_eq!(scores.len(), 24, "{text}");
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "not most uncertain first: {text}");
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)) && scores[0] > 0.0, "{text}");

    // TorchScript holds one network: two members are refused, one (a fit whose budget ended
    // after its first fold) exports as its run would.
    let pt = d.path().join("m.pt");
    let o = genseg(&["export", "--run", arg(&ensemble), "--out", arg(&pt)]);
    assert!(!o.status.success() && stderr(&o).contains("exports as ONNX"), "{}", stderr(&o));
    let file = serde_json::json!({"members": ["seed1"], "candidate": "augment"});
    std::fs::write(ensemble.join("ensemble.json"), file.to_string()).unwrap();
    let o = genseg(&["export", "--run", arg(&ensemble), "--out", arg(&pt)]);
    assert!(o.status.success() && pt.is_file(), "{}", stderr(&o));
}

/// fit with unlabelled images: semi and genseg get every one in their fold runs, genseg with the
/// verdict's generator pretrained as many steps as its fold trains (a fixed 1000 steps of the
/// 64-wide generator once took a 90 s fit to 735 s); an unlabelled image that is one of the
/// labelled pairs (each validates in some fold) is refused before anything is written.
#[test]
#[ignore = "slow: a semi and a genseg fold run, about 2 minutes (make test)"]
fn a_fit_gives_its_unlabelled_images_to_semi_and_genseg_and_never_a_labelled_one() {
    let _alone = one_at_a_time();
    let d = tempfile::tempdir().unwrap();
    let (data, pool) = (d.path().join("labelled"), d.path().join("pool"));
    genseg::data::phantom::write_dataset(&data, 12, 32, 1).unwrap();
    genseg::data::phantom::write_dataset(&pool, 8, 32, 2).unwrap();
    let fit = |out: &std::path::Path, unlabelled: &std::path::Path| {
        genseg(&[
            "fit",
            arg(&data),
            "--out",
            arg(out),
            "--unlabelled",
            arg(unlabelled),
            // The first fold's semi and genseg runs at their least 50 iterations took about 40 s
            // (36 ms a step measured): 90 s without the export leaves them twice that.
            "--budget",
            "90s",
            "--no-onnx",
            "--folds",
            "2",
            "--candidates",
            "semi,genseg",
            "--device",
            "cpu",
        ])
    };

    let leaky = d.path().join("leaky");
    std::fs::create_dir(&leaky).unwrap();
    std::fs::copy(pool.join("images/phantom_000.png"), leaky.join("fresh.png")).unwrap();
    std::fs::copy(data.join("images/phantom_003.png"), leaky.join("copy.png")).unwrap();
    let refused = d.path().join("refused");
    let o = fit(&refused, &leaky);
    assert!(!o.status.success() && stderr(&o).contains("'copy' is validation case 'phantom_003'"), "{}", stderr(&o));
    assert!(!refused.exists(), "a refused fit left {}", refused.display());

    let out = d.path().join("fit");
    let o = fit(&out, &pool.join("images"));
    assert!(o.status.success(), "{}", stderr(&o));
    for candidate in ["semi", "genseg"] {
        let run = out.join("runs").join(candidate).join("fold0");
        let usage = json(&run.join("data_usage.json"));
        assert_eq!(usage["unlabelled_ids"].as_array().unwrap().len(), 8, "{candidate}: {usage}");
        let config = &json(&run.join("config.json"))["config"];
        if candidate == "genseg" {
            assert_eq!(config["pretrain_iters"], config["iters"], "{config}");
            assert_eq!(config["gan"]["ngf"], config["width"], "{config}");
            assert_eq!(config["gan"]["diff_augment"], true, "{config}");
        }
    }
    let cv = &json(&out.join("plan.json"))["cv"];
    let rows: Vec<&str> = cv["rows"].as_array().unwrap().iter().map(|r| r["candidate"].as_str().unwrap()).collect();
    assert_eq!(rows, ["semi", "genseg"], "{cv}");
}
