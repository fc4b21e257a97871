//! `semi`: unlabelled images help where labels are few, never include a held-out case, and a
//! folder that cannot serve is refused before anything is written.
mod common;
use common::{arg, genseg, metrics_lines, phantom_dataset, stderr, stdout};
use std::path::Path;

fn phantom(dir: &Path, name: &str, n: usize, seed: u64) -> std::path::PathBuf {
    let data = dir.join(name);
    genseg::data::phantom::write_dataset(&data, n, 32, seed).unwrap();
    data
}

fn test_dice(run: &Path) -> f64 {
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    summary["test"]["dice"]["mean"].as_f64().unwrap()
}

/// Two labelled training pairs and 150 unlabelled images of the phantom set: over four seeds,
/// `semi` beats the same run without the unlabelled images (`augment`) on 150 test cases, and its
/// pseudo-labels end mostly confident. Eight validation pairs choose each run's checkpoint: with
/// two, the choice alone moved a seed's gain by 0.09. Measured on a 2-core Xeon (AVX-512): semi
/// minus augment +0.077, -0.001, +0.055, +0.062 (mean +0.048), confident share at the end 0.96 to
/// 0.98; another machine's numerics gave +0.14 and +0.07 for seeds 1 and 2 with two validation
/// pairs, this one -0.013 and 0.000, so the test asks the mean gain to be positive, not a size.
#[test]
#[ignore = "slow: eight 600-iteration runs (make test)"]
fn many_unlabelled_images_beat_the_same_run_without_them() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom(d.path(), "labelled", 160, 2);
    let unlabelled = phantom(d.path(), "unlabelled", 150, 9);
    let (mut gains, mut confident) = (Vec::new(), Vec::new());
    for seed in ["1", "2", "3", "4"] {
        let runs: Vec<_> = ["augment", "semi"]
            .iter()
            .map(|method| {
                let out = d.path().join(format!("{method}-{seed}"));
                let args: Vec<String> = [
                    "train",
                    arg(&data),
                    "--out",
                    arg(&out),
                    "--n",
                    "10",
                    "--val-n",
                    "8",
                    "--size",
                    "32",
                    "--method",
                    method,
                    "--unlabelled",
                    arg(&unlabelled),
                    "--seed",
                    seed,
                    "--iters",
                    "600",
                    "--val-every",
                    "50",
                    "--patience",
                    "0",
                    "--threads",
                    "1",
                    "--device",
                    "cpu",
                ]
                .map(String::from)
                .to_vec();
                (out, std::thread::spawn(move || genseg(&args.iter().map(String::as_str).collect::<Vec<_>>())))
            })
            .collect();
        let mut dice = Vec::new();
        for (out, child) in runs {
            let o = child.join().unwrap();
            assert!(o.status.success(), "{}", stderr(&o));
            dice.push(test_dice(&out));
        }
        gains.push(dice[1] - dice[0]);
        let last = metrics_lines(&d.path().join(format!("semi-{seed}"))).pop().unwrap();
        confident.push(last["confident"].as_f64().unwrap());
    }
    let mean = gains.iter().sum::<f64>() / gains.len() as f64;
    assert!(mean > 0.0, "semi minus augment per seed: {gains:?}");
    assert!(confident.iter().all(|&c| c > 0.5), "confident pseudo-label share at the end: {confident:?}");
}

/// A study's unlabelled cases come from outside its labelled and test cases, every arm is tested
/// on the same cases, and an unlabelled folder holding a test image under another name is
/// refused, leaving no run folder.
#[test]
fn held_out_cases_never_reach_training() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 24);
    let study = d.path().join("study");
    let o = genseg(&[
        "study",
        arg(&data),
        "--out",
        arg(&study),
        "--n",
        "8",
        "--seeds",
        "1",
        "--methods",
        "augment,semi",
        "--unlabelled-n",
        "10",
        "--size",
        "32",
        "--width",
        "4",
        "--depth",
        "3",
        "--iters",
        "6",
        "--val-every",
        "3",
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let read = |run: &str, file: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(study.join("runs").join(run).join(file)).unwrap()).unwrap()
    };
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
    };
    let usage = read("semi-n8-s1", "data_usage.json");
    let (unlabelled, val, test) = (ids(&usage["unlabelled_ids"]), ids(&usage["val_ids"]), ids(&usage["test_ids"]));
    assert_eq!((unlabelled.len(), val.len(), test.len()), (10, 2, 6));
    assert!(unlabelled.iter().all(|u| !val.contains(u) && !test.contains(u)), "{usage}");
    assert!(ids(&usage["seg_optimizer_ids"]).iter().all(|u| !unlabelled.contains(u) && !test.contains(u)));
    assert_eq!(read("augment-n8-s1", "split.json"), read("semi-n8-s1", "split.json"), "arms split alike");
    assert!(ids(&read("augment-n8-s1", "data_usage.json")["unlabelled_ids"]).is_empty());

    let split = read("semi-n8-s1", "split.json");
    let folder = d.path().join("unlabelled");
    std::fs::create_dir_all(&folder).unwrap();
    let copy = |case: &str, name: &str| {
        std::fs::copy(data.join("images").join(format!("{case}.png")), folder.join(name)).unwrap();
    };
    copy(split["train"][0].as_str().unwrap(), "a.png");
    let test_case = split["test"][0].as_str().unwrap();
    copy(test_case, "renamed.png");
    let run = d.path().join("run");
    let o = genseg(&[
        "train",
        arg(&data),
        "--out",
        arg(&run),
        "--n",
        "8",
        "--seed",
        "1",
        "--size",
        "32",
        "--method",
        "semi",
        "--unlabelled",
        arg(&folder),
        "--iters",
        "2",
        "--device",
        "cpu",
    ]);
    let text = stderr(&o);
    assert!(!o.status.success() && text.contains(&format!("'renamed' is test case '{test_case}'")), "{text}");
    assert!(!run.exists(), "a refused run left its folder");
}

/// Every unlabelled folder that cannot serve is refused naming it and the fix, with no run
/// folder left behind; `check` reports a good one.
#[test]
fn unusable_unlabelled_folders_are_refused_before_anything_is_written() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 12);
    let folder = |name: &str, files: &[(&str, &[u8])]| {
        let dir = d.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, bytes) in files {
            std::fs::write(dir.join(file), bytes).unwrap();
        }
        dir
    };
    let grey = {
        let mut bytes = Vec::new();
        let img = image::GrayImage::from_pixel(16, 16, image::Luma([90u8]));
        img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
        bytes
    };
    let cases = [
        (folder("empty", &[]), "holds no images"),
        (d.path().join("missing"), "not a folder"),
        (folder("notes", &[("readme.txt", b"x")]), "neither an image"),
        (folder("corrupt", &[("a.png", b"not a png")]), "a.png"),
        (folder("grey", &[("g.png", &grey)]), "has 1 channel(s) but the labelled images have 3"),
        (folder("volume", &[("v.nii.gz", b"x")]), "is a NIfTI volume, but the labelled set holds 2-D images"),
    ];
    for (i, (dir, says)) in cases.iter().enumerate() {
        let run = d.path().join(format!("run{i}"));
        let o = genseg(&[
            "train",
            arg(&data),
            "--out",
            arg(&run),
            "--n",
            "8",
            "--size",
            "32",
            "--method",
            "semi",
            "--unlabelled",
            arg(dir),
            "--iters",
            "2",
            "--device",
            "cpu",
        ]);
        let text = stderr(&o);
        assert!(!o.status.success(), "{} accepted", dir.display());
        assert!(text.contains(says) && text.contains(arg(dir)), "{}: {text}", dir.display());
        assert!(!run.exists(), "{}: a refused run left its folder", dir.display());
    }
    let o = genseg(&["train", arg(&data), "--out", arg(&d.path().join("r")), "--method", "semi", "--n", "8"]);
    assert!(!o.status.success() && stderr(&o).contains("give a folder of them with --unlabelled DIR"));
    let good = phantom(d.path(), "good", 5, 3);
    let o = genseg(&["check", arg(&data), "--unlabelled", arg(&good)]);
    assert!(o.status.success() && stdout(&o).contains("5 files (5 images, 0 volumes)"), "{}", stdout(&o));
    let o = genseg(&["check", arg(&data), "--unlabelled", arg(&cases[3].0)]);
    assert!(!o.status.success() && stderr(&o).contains("a.png"), "{}", stderr(&o));
}

/// A killed `semi` run resumes from its checkpoint and ends exactly where an uninterrupted one
/// does: its unlabelled draws, views and dropout come from the run's checkpointed stream.
#[test]
fn a_killed_semi_run_resumes_as_if_never_interrupted() {
    use std::time::{Duration, Instant};
    let d = tempfile::tempdir().unwrap();
    let data = phantom(d.path(), "labelled", 20, 2);
    let unlabelled = phantom(d.path(), "unlabelled", 12, 9);
    let args = |out: &Path| -> Vec<String> {
        [
            "train",
            arg(&data),
            "--out",
            arg(out),
            "--n",
            "8",
            "--size",
            "32",
            "--width",
            "4",
            "--depth",
            "3",
            "--method",
            "semi",
            "--unlabelled",
            arg(&unlabelled),
            "--iters",
            "300",
            "--val-every",
            "20",
            "--patience",
            "0",
            "--threads",
            "1",
            "--device",
            "cpu",
        ]
        .map(String::from)
        .to_vec()
    };
    let out = d.path().join("run");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_genseg")).args(args(&out)).spawn().unwrap();
    let state = out.join("checkpoint/state.json");
    let start = Instant::now();
    let mut killed_at = 0;
    while start.elapsed() < Duration::from_secs(120) && killed_at < 100 {
        let iter = std::fs::read_to_string(&state)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["iter"].as_u64());
        killed_at = iter.unwrap_or(0);
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(killed_at >= 100 && !out.join("summary.json").exists(), "not killed midway ({killed_at})");
    let strings = |v: &[String]| v.iter().map(String::as_str).collect::<Vec<_>>().join(" ");
    let o = genseg(&args(&out).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success() && stderr(&o).contains("resuming"), "{}: {}", strings(&args(&out)), stderr(&o));
    let straight = d.path().join("straight");
    assert!(genseg(&args(&straight).iter().map(String::as_str).collect::<Vec<_>>()).status.success());
    for f in ["model.safetensors", "test_cases.csv"] {
        let (a, b) = (std::fs::read(out.join(f)).unwrap(), std::fs::read(straight.join(f)).unwrap());
        assert!(a == b, "{f} differs between the resumed and the uninterrupted run");
    }
}

/// genseg with unlabelled images keeps `semi`'s loss beside its synthetic pairs: the run logs
/// how many pseudo-labels counted, lists the unlabelled images it drew from, trains another
/// model than without them, and repeats itself exactly.
#[test]
fn genseg_learns_from_unlabelled_images_beside_its_synthetic_pairs() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom(d.path(), "labelled", 16, 2);
    let unlabelled = phantom(d.path(), "unlabelled", 10, 9);
    let train = |out: &Path, with_unlabelled: bool| {
        let mut args = vec!["experimental", "train", arg(&data), "--out", arg(out), "--method", "genseg"];
        args.extend("--size 32 --n 8 --val-n 4 --width 4 --depth 3 --ngf 8 --ndf 8 --pretrain-iters 10".split(' '));
        args.extend("--iters 6 --val-every 3 --device cpu --threads 1".split(' '));
        if with_unlabelled {
            args.extend(["--unlabelled", arg(&unlabelled)]);
        }
        let o = genseg(&args);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    let (with, again, without) = (d.path().join("with"), d.path().join("again"), d.path().join("without"));
    train(&with, true);
    train(&again, true);
    train(&without, false);
    let read = |run: &Path, file: &str| std::fs::read(run.join(file)).unwrap();
    assert!(read(&with, "model.safetensors") == read(&again, "model.safetensors"), "not reproducible");
    assert!(read(&with, "model.safetensors") != read(&without, "model.safetensors"), "unlabelled images unused");
    let metrics = |run: &Path| -> Vec<serde_json::Value> {
        let text = String::from_utf8(read(run, "metrics.jsonl")).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    assert!(metrics(&with).iter().all(|m| m["confident"].as_f64().is_some_and(|c| (0.0..=1.0).contains(&c))));
    assert!(metrics(&without).iter().all(|m| m["confident"].is_null()));
    let unlabelled_ids = |run: &Path| {
        let usage: serde_json::Value = serde_json::from_slice(&read(run, "data_usage.json")).unwrap();
        usage["unlabelled_ids"].as_array().unwrap().len()
    };
    assert_eq!((unlabelled_ids(&with), unlabelled_ids(&without)), (10, 0));
}

/// `--pseudo-labels`: a teacher (augment on the same split) labels the unlabelled images, the
/// confident ones join the pairs the generator is pretrained on, and data_usage.json lists them
/// among the generator's cases, never a validation or test case. The filter comes from the
/// configuration (looser here than the default, which a 100-iteration teacher does not pass).
/// Where it cannot work it is refused before anything is written.
#[test]
fn the_generator_learns_from_confident_pseudo_labelled_pairs() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom(d.path(), "labelled", 16, 2);
    let unlabelled = phantom(d.path(), "unlabelled", 12, 9);
    let train = |out: &Path, extra: &[&str]| {
        let mut args = vec!["experimental", "train", arg(&data), "--out", arg(out), "--method", "separate"];
        args.extend("--size 32 --n 12 --val-n 4 --width 8 --depth 3 --ngf 8 --ndf 8 --pretrain-iters 10".split(' '));
        args.extend("--iters 100 --val-every 50 --device cpu --threads 1 --unlabelled".split(' '));
        args.push(arg(&unlabelled));
        args.extend(extra);
        genseg(&args)
    };
    let without = d.path().join("without");
    let o = train(&without, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let read = |path: &Path| -> serde_json::Value { serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap() };
    let mut config = read(&without.join("config.json"));
    config["config"]["pseudo"] =
        serde_json::json!({"confidence": 0.6, "confident_share": 0.5, "min_foreground": 0.005, "cap": 400});
    let config_file = d.path().join("pseudo.json");
    std::fs::write(&config_file, config.to_string()).unwrap();
    let with = d.path().join("with");
    let o = train(&with, &["--config", arg(&config_file)]);
    assert!(o.status.success(), "{}", stderr(&o));

    let record = read(&with.join("generator-teacher").join("pseudo_labels.json"));
    let kept: Vec<String> =
        record["kept"].as_array().unwrap().iter().map(|k| k[0].as_str().unwrap().to_string()).collect();
    assert_eq!(record["offered"], 12);
    assert!(!kept.is_empty(), "the teacher labelled nothing confidently: {record}");
    let usage = read(&with.join("data_usage.json"));
    let ids = |key: &str| -> Vec<String> {
        usage[key].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
    };
    let (generator, unlabelled_ids, train_ids) =
        (ids("generator_ids"), ids("unlabelled_ids"), ids("seg_optimizer_ids"));
    assert_eq!(generator.len(), train_ids.len() + kept.len(), "{usage}");
    assert!(kept.iter().all(|k| generator.contains(k) && unlabelled_ids.contains(k)));
    let held_out: Vec<String> = [ids("val_ids"), ids("test_ids")].concat();
    assert!(generator.iter().all(|g| !held_out.contains(g) || unlabelled_ids.contains(g)), "{usage}");
    let weights = |run: &Path| std::fs::read(run.join("generator").join("generator.safetensors")).unwrap();
    assert!(weights(&with) != weights(&without), "the pseudo-labelled pairs did not reach the generator");
    assert_eq!(read(&without.join("data_usage.json"))["generator_ids"].as_array().unwrap().len(), train_ids.len());

    for (method, extra, expected) in [
        ("augment", vec![], "has no generator to pretrain"),
        ("genseg", vec!["--generator", arg(&with.join("generator"))], "is already trained"),
    ] {
        let out = d.path().join(format!("refused-{method}"));
        let mut args = vec!["experimental", "train", arg(&data), "--out", arg(&out), "--method", method];
        args.extend("--size 32 --n 12 --val-n 4 --iters 2 --device cpu --pseudo-labels --unlabelled".split(' '));
        args.push(arg(&unlabelled));
        args.extend(extra);
        let o = genseg(&args);
        assert!(!o.status.success() && stderr(&o).contains(expected), "{}", stderr(&o));
        assert!(!out.exists(), "a refused run left its folder");
    }
    let out = d.path().join("refused-no-pool");
    let o = genseg(&[
        "experimental",
        "train",
        arg(&data),
        "--out",
        arg(&out),
        "--method",
        "separate",
        "--pseudo-labels",
        "--size",
        "32",
        "--n",
        "12",
        "--iters",
        "2",
        "--device",
        "cpu",
    ]);
    assert!(!o.status.success() && stderr(&o).contains("--pseudo-labels needs unlabelled images"), "{}", stderr(&o));
    assert!(!out.exists());
    let out = d.path().join("refused-study");
    let mut args = vec!["experimental", "study", arg(&data), "--out", arg(&out), "--methods", "augment,semi"];
    args.extend("--n 12 --seeds 1 --size 32 --iters 2 --device cpu --pseudo-labels --unlabelled".split(' '));
    args.push(arg(&unlabelled));
    let o = genseg(&args);
    assert!(!o.status.success() && stderr(&o).contains("none of the study's methods pretrains"), "{}", stderr(&o));
    assert!(!out.exists());
    // A study's shared generator gets its teacher too, beside it.
    let study = d.path().join("study");
    let mut args = vec!["experimental", "study", arg(&data), "--out", arg(&study), "--methods", "augment,separate"];
    args.extend("--n 12 --val-n 4 --seeds 1 --size 32 --width 4 --depth 3 --ngf 8 --ndf 8".split(' '));
    args.extend("--pretrain-iters 4 --iters 4 --val-every 2 --device cpu --threads 1 --pseudo-labels".split(' '));
    args.extend(["--unlabelled", arg(&unlabelled)]);
    let o = genseg(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let record = read(&study.join("generators").join("n12-s1-teacher").join("pseudo_labels.json"));
    assert_eq!(record["offered"], 12, "{record}");
}
