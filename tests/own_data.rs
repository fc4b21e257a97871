//! The user's data is never written over, and a run knows its data: outputs that are inputs are
//! refused, a run resumed onto changed data is refused naming the change, a validation set that
//! cannot choose a model is refused before anything is written, and case names of any spelling
//! survive the CSVs.
mod common;
use common::{arg, genseg, phantom_dataset, stderr};
use std::path::Path;

const SMALL: &[&str] =
    &["--size", "32", "--width", "4", "--depth", "3", "--iters", "4", "--val-every", "2", "--device", "cpu"];

fn train(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["train", arg(data), "--n", "8", "--out", arg(out)];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(extra);
    genseg(&args)
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

fn refused(o: &std::process::Output, needles: &[&str]) {
    let text = stderr(o);
    assert!(!o.status.success(), "accepted:\n{text}");
    for n in needles {
        assert!(text.contains(n), "does not say '{n}':\n{text}");
    }
}

#[test]
fn no_command_writes_into_its_inputs() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 12);
    let run = d.path().join("run");
    assert!(train(&data, &run, &[]).status.success());
    let (images, masks) = (data.join("images"), data.join("masks"));
    let before = (listing(&images), listing(&masks));
    for out in [&images, &masks, &data] {
        let o = genseg(&["predict", "--run", arg(&run), arg(&images), "--out", arg(out)]);
        refused(&o, &["never writes into its inputs", "--out"]);
    }
    // Another spelling of the same folder is the same folder.
    let dotted = data.join("masks/../images");
    refused(&genseg(&["predict", "--run", arg(&run), arg(&images), "--out", arg(&dotted)]), &["--out"]);
    refused(&genseg(&["evaluate", arg(&masks), arg(&masks), "--out", arg(&masks)]), &["the predictions"]);
    refused(&train(&data, &data.join("run"), &[]), &["is inside the data folder"]);
    assert!(!data.join("run").exists());
    assert_eq!((listing(&images), listing(&masks)), before, "an input changed");
    // export: a folder as --out is named as the mistake; a run's own files are inputs.
    let o = genseg(&["export", "--run", arg(&run), "--out", arg(d.path())]);
    refused(&o, &["is a folder", "model.onnx"]);
    let o = genseg(&["export", "--run", arg(&run), "--out", arg(&run.join("model.json"))]);
    refused(&o, &["is a file of --run"]);
}

#[test]
fn a_run_refuses_to_resume_onto_changed_data() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 12);
    let run = d.path().join("run");
    assert!(train(&data, &run, &[]).status.success());
    let split = std::fs::read(run.join("split.json")).unwrap();
    // Two cases added.
    let extra = d.path().join("extra");
    genseg::data::phantom::write_dataset(&extra, 2, 64, 9).unwrap();
    for part in ["images", "masks"] {
        for entry in std::fs::read_dir(extra.join(part)).unwrap() {
            let p = entry.unwrap().path();
            std::fs::copy(&p, data.join(part).join(format!("new_{}", p.file_name().unwrap().to_string_lossy())))
                .unwrap();
        }
    }
    refused(&train(&data, &run, &[]), &["was trained on other data", "added 4", "images/new_", "a new --out"]);
    assert_eq!(std::fs::read(run.join("split.json")).unwrap(), split, "split.json was rewritten");
    // The same cases, one image edited (flipped): modified.
    for part in ["images", "masks"] {
        for entry in std::fs::read_dir(data.join(part)).unwrap() {
            let p = entry.unwrap().path();
            if p.file_name().unwrap().to_string_lossy().starts_with("new_") {
                std::fs::remove_file(p).unwrap();
            }
        }
    }
    assert!(train(&data, &run, &[]).status.success(), "the original data again");
    let first = std::fs::read_dir(data.join("images")).unwrap().map(|e| e.unwrap().path()).min().unwrap();
    let flipped = image::open(&first).unwrap().fliph();
    flipped.save(&first).unwrap();
    refused(&train(&data, &run, &[]), &["modified 1"]);
}

#[test]
fn a_validation_set_without_a_lesion_is_refused_before_training() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 12);
    let mut ids: Vec<String> = std::fs::read_dir(data.join("masks"))
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    ids.sort();
    for id in &ids[..2] {
        image::GrayImage::new(64, 64).save(data.join("masks").join(format!("{id}.png"))).unwrap();
    }
    let (train_ids, val_ids) = (d.path().join("train.txt"), d.path().join("val.txt"));
    std::fs::write(&train_ids, ids[2..8].join("\n")).unwrap();
    std::fs::write(&val_ids, ids[..2].join("\n")).unwrap();
    let run = d.path().join("run");
    let o = train(&data, &run, &["--train-ids", arg(&train_ids), "--val-ids", arg(&val_ids)]);
    refused(&o, &["every validation case's mask is empty at --size 32", &ids[0], "--val-ids"]);
    let left: Vec<_> = std::fs::read_dir(&run).map(|r| r.map(|e| e.unwrap().file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn case_names_with_commas_quotes_and_spaces_survive_the_csv() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 3);
    let hostile = ["a,b", "say \"hi\"", "x y"];
    let masks = data.join("masks");
    let mut files: Vec<_> = std::fs::read_dir(&masks).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for (file, name) in files.iter().zip(hostile) {
        std::fs::rename(file, masks.join(format!("{name}.png"))).unwrap();
    }
    let out = d.path().join("eval");
    let o = genseg(&["evaluate", arg(&masks), arg(&masks), "--out", arg(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut reader = csv::Reader::from_path(out.join("cases.csv")).unwrap();
    let mut ids: Vec<String> = reader.records().map(|r| r.unwrap()[0].to_string()).collect();
    ids.sort();
    let mut want: Vec<String> = hostile.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(ids, want);
}

/// The pids of processes whose command line holds `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle))
        })
        .collect()
}

#[test]
fn study_workers_end_with_their_parent() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 16);
    let study = d.path().join("workers-study");
    let mut args = vec!["study", arg(&data), "--n", "6,8", "--seeds", "2", "--methods", "plain", "--jobs", "2"];
    args.extend(["--size", "32", "--width", "4", "--depth", "3", "--iters", "100000", "--device", "cpu"]);
    args.extend(["--out", arg(&study)]);
    let mut parent = std::process::Command::new(env!("CARGO_BIN_EXE_genseg"))
        .args(&args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let needle = format!("{} --shard", study.display());
    let started = std::time::Instant::now();
    while processes_with(&needle).len() < 2 {
        assert!(started.elapsed().as_secs() < 60, "the workers did not start");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // SAFETY: a plain signal to our own child.
    assert_eq!(unsafe { libc::kill(parent.id() as i32, libc::SIGTERM) }, 0);
    parent.wait().unwrap();
    let stopped = std::time::Instant::now();
    while !processes_with(&needle).is_empty() {
        assert!(stopped.elapsed().as_secs() < 20, "workers outlived their parent: {:?}", processes_with(&needle));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
