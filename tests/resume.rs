//! A killed training run resumes from its checkpoint and ends as if never interrupted.
mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn killed_run_resumes_from_its_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 20);
    let out = d.path().join("run");
    let args = [
        "train",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--size",
        "32",
        "--n",
        "12",
        "--val-n",
        "4",
        "--width",
        "4",
        "--depth",
        "3",
        "--iters",
        "600",
        "--val-every",
        "20",
        // The whole budget: this test is about resuming, not early stopping.
        "--patience",
        "0",
        "--device",
        "cpu",
        "--threads",
        "1",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_genseg")).args(args).spawn().unwrap();
    let state = out.join("checkpoint/state.json");
    let start = Instant::now();
    let mut killed_at = 0;
    while start.elapsed() < Duration::from_secs(120) {
        if let Some(iter) = std::fs::read_to_string(&state)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["iter"].as_u64())
        {
            if iter >= 100 {
                killed_at = iter;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(killed_at >= 100, "no checkpoint within two minutes");
    assert!(!out.join("summary.json").exists(), "the run finished before it could be killed");
    // Its best model so far predicts, saying that the run has not finished.
    let pred = d.path().join("pred");
    let o = genseg(&[
        "predict",
        "--run",
        out.to_str().unwrap(),
        data.join("images").to_str().unwrap(),
        "--out",
        pred.to_str().unwrap(),
    ]);
    assert!(o.status.success() && stderr(&o).contains("has not finished"), "{}", stderr(&o));
    // A different configuration may not reuse the folder.
    let mut other = args.to_vec();
    let i = other.iter().position(|a| *a == "600").unwrap();
    other[i] = "599";
    let o = genseg(&other);
    assert!(!o.status.success() && stderr(&o).contains("different configuration"), "{}", stderr(&o));
    // The same command resumes and finishes.
    let o = genseg(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));
    let iters: Vec<u64> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["iter"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=30).map(|k| k * 20).collect();
    assert_eq!(iters, expected, "metrics.jsonl must hold every validation exactly once");
    assert!(out.join("summary.json").is_file() && !out.join("checkpoint").exists());
    // The interrupted run ends exactly where an uninterrupted one does.
    let straight = d.path().join("straight");
    let mut again = args.to_vec();
    again[3] = straight.to_str().unwrap();
    assert!(genseg(&again).status.success());
    for f in ["model.safetensors", "test_cases.csv"] {
        let (a, b) = (std::fs::read(out.join(f)).unwrap(), std::fs::read(straight.join(f)).unwrap());
        assert!(a == b, "{f} differs between the resumed and the uninterrupted run");
    }
}

/// A finished generator pretraining keeps no checkpoint (three times the generator's size; a
/// study holds hundreds), is not redone by a run that finds it, and trains on exactly as a run
/// that pretrained in-process: a genseg run resumed after its pretraining ends as an
/// uninterrupted one. A folder pretrained with other settings is refused.
#[test]
fn finished_pretraining_is_reused_not_redone() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 16);
    let train = |out: &std::path::Path, pretrain_iters: &str| {
        let mut args = vec!["experimental", "train", arg(&data), "--out", arg(out), "--pretrain-iters", pretrain_iters];
        args.extend("--method genseg --size 32 --n 8 --val-n 4 --width 4 --depth 3 --ngf 8 --ndf 8".split(' '));
        args.extend("--iters 6 --val-every 3 --device cpu --threads 1".split(' '));
        genseg(&args)
    };
    let straight = d.path().join("straight");
    let o = train(&straight, "10");
    assert!(o.status.success(), "{}", stderr(&o));
    let generator = straight.join("generator");
    assert!(generator.join("generator.safetensors").is_file() && !generator.join("checkpoint").exists());
    // Killed after pretraining: only the generator folder is there.
    let resumed = d.path().join("resumed");
    std::fs::create_dir_all(resumed.join("generator")).unwrap();
    for f in std::fs::read_dir(&generator).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() {
            std::fs::copy(&f, resumed.join("generator").join(f.file_name().unwrap())).unwrap();
        }
    }
    let o = train(&resumed, "10");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("already holds this generator"), "{}", stderr(&o));
    for f in ["model.safetensors", "generator/generator.safetensors"] {
        let (a, b) = (std::fs::read(straight.join(f)).unwrap(), std::fs::read(resumed.join(f)).unwrap());
        assert!(a == b, "{f} differs between the run resumed after pretraining and the uninterrupted one");
    }
    // Other pretraining settings in the same generator folder: refused, the generator kept.
    let other = d.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::rename(resumed.join("generator"), other.join("generator")).unwrap();
    let before = std::fs::read(other.join("generator/generator.safetensors")).unwrap();
    let o = train(&other, "11");
    assert!(!o.status.success() && stderr(&o).contains("pretrained with other settings"), "{}", stderr(&o));
    assert!(std::fs::read(other.join("generator/generator.safetensors")).unwrap() == before);
}
