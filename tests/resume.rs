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
        "3000",
        "--val-every",
        "20",
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
    // A different configuration may not reuse the folder.
    let mut other = args.to_vec();
    let i = other.iter().position(|a| *a == "3000").unwrap();
    other[i] = "2999";
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
    let expected: Vec<u64> = (1..=150).map(|k| k * 20).collect();
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
