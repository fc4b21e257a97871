//! Bad input: a clear error naming the file and the fix, a non-zero exit, nothing half-written.
mod common;
use common::*;
use std::path::Path;

fn dataset(dir: &Path) -> std::path::PathBuf {
    phantom_dataset(dir, 12)
}

/// `check` and `train` both refuse the set, name `needle`, and leave no run files behind.
fn assert_refused(data: &Path, needle: &str, hint: &str) {
    let o = genseg(&["check", data.to_str().unwrap(), "--size", "32"]);
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!o.status.success(), "check accepted a bad set:\n{text}");
    assert!(text.contains(needle), "check output does not name {needle}:\n{text}");
    assert!(text.contains(hint), "check output lacks the fix '{hint}':\n{text}");
    let out = data.parent().unwrap().join("run");
    let o = genseg(&[
        "train",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--size",
        "32",
        "--n",
        "6",
        "--val-n",
        "2",
        "--iters",
        "2",
        "--width",
        "4",
        "--depth",
        "2",
    ]);
    let text = stderr(&o);
    assert!(!o.status.success(), "train accepted a bad set");
    assert!(text.contains(needle), "train error does not name {needle}:\n{text}");
    let left = files_in(&out);
    assert!(left.is_empty(), "train left files behind: {left:?}");
}

/// What a refused run left in its folder (an empty folder or none: nothing).
fn files_in(out: &Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(out).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default()
}

#[test]
fn missing_mask() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(d.path());
    std::fs::remove_file(data.join("masks/phantom_003.png")).unwrap();
    assert_refused(&data, "phantom_003.png", "add the mask");
}

#[test]
fn image_mask_size_mismatch() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(d.path());
    image::GrayImage::new(20, 30).save(data.join("masks/phantom_004.png")).unwrap();
    assert_refused(&data, "phantom_004.png", "export the mask at the image's size");
}

#[test]
fn corrupt_image() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(d.path());
    std::fs::write(data.join("images/phantom_005.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    assert_refused(&data, "phantom_005.png", "corrupt");
}

#[test]
fn mask_with_more_than_two_values() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(d.path());
    image::GrayImage::from_fn(64, 64, |x, _| image::Luma([(x * 4) as u8]))
        .save(data.join("masks/phantom_006.png"))
        .unwrap();
    assert_refused(&data, "phantom_006.png", "--binarize");
    let o = genseg(&["check", data.to_str().unwrap(), "--size", "32", "--binarize"]);
    assert!(o.status.success(), "--binarize should accept it: {}", stdout(&o));
}

#[test]
fn empty_folder() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("empty");
    std::fs::create_dir_all(data.join("images")).unwrap();
    std::fs::create_dir_all(data.join("masks")).unwrap();
    let o = genseg(&["check", data.to_str().unwrap()]);
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!o.status.success());
    assert!(text.contains("images") && text.contains("holds no images"), "{text}");
}

#[test]
fn unknown_extension() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(d.path());
    std::fs::write(data.join("images/notes.xyz"), b"hello").unwrap();
    assert_refused(&data, "notes.xyz", "unknown extension");
}

/// What macOS and Windows leave in folders is skipped, not refused as an unknown file.
#[test]
fn operating_system_files_are_skipped() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(d.path());
    for (dir, name) in
        [("images", ".DS_Store"), ("images", "._c0.png"), ("masks", "Thumbs.db"), ("images", "desktop.ini")]
    {
        std::fs::write(data.join(dir).join(name), b"os").unwrap();
    }
    let o = genseg(&["check", arg(&data), "--size", "32"]);
    assert!(o.status.success() && stdout(&o).contains("ok: usable"), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn dicom_files_name_the_conversion() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(d.path());
    std::fs::write(data.join("images/scan.dcm"), b"DICM").unwrap();
    assert_refused(&data, "scan.dcm", "dcm2niix");
}

#[test]
fn missing_dataset_layout() {
    let d = tempfile::tempdir().unwrap();
    let o = genseg(&["check", d.path().to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("expected images/ and masks/"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("--unlabelled"), "{}", stderr(&o));
    // A folder of bare images: the error also says where unlabelled images go.
    let image = std::fs::read_dir(dataset(d.path()).join("images")).unwrap().next().unwrap().unwrap().path();
    std::fs::copy(&image, d.path().join(image.file_name().unwrap())).unwrap();
    let o = genseg(&["check", d.path().to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("expected images/ and masks/") && stderr(&o).contains("--unlabelled"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn unwritable_output_folder() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(d.path());
    // A path below a regular file cannot be created, even by root.
    let blocker = d.path().join("file");
    std::fs::write(&blocker, b"").unwrap();
    let out = blocker.join("run");
    let o = genseg(&["train", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--size", "32", "--iters", "1"]);
    assert!(!o.status.success());
    let text = stderr(&o);
    assert!(text.contains(out.to_str().unwrap()) && text.contains("writable --out"), "{text}");
}

/// A `--generator-prior` that is not a generator folder, or was pretrained with other networks
/// or on data of another shape, is refused by flag before the run writes anything; so is a
/// `--generator` of another shape, and either flag given to methods that train no generator,
/// which would otherwise ignore it.
#[test]
fn generator_prior_that_does_not_fit() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(d.path());
    let prior = d.path().join("prior");
    let common = ["--n", "6", "--val-n", "2", "--ndf", "4"];
    let o = genseg(
        &[
            &["pretrain-generator", data.to_str().unwrap(), "--iters", "1", "--ngf", "4", "--size", "32"][..],
            &common,
            &["--out", prior.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = d.path().join("run");
    let run = |command: &[&str], flag: &str, prior: &Path, ngf: &str, size: &str| {
        let base = [data.to_str().unwrap(), "--iters", "1", "--width", "4", "--depth", "2", "--size", size];
        let flags = [flag, prior.to_str().unwrap(), "--out", out.to_str().unwrap()];
        genseg(&[command, &base[..], &common, &["--ngf", ngf], &flags].concat())
    };
    let separate = ["experimental", "train", "--method", "separate"];
    let train = |prior: &Path, ngf: &str| run(&separate, "--generator-prior", prior, ngf, "32");
    let no_generator = |command: &[&str], flag: &str| run(command, flag, &prior, "4", "32");
    let cases: [(&dyn Fn() -> std::process::Output, &str); 7] = [
        (&|| train(d.path(), "4"), "pretrain-generator"),
        (&|| train(&prior, "8"), "--ngf"),
        (&|| run(&separate, "--generator-prior", &prior, "4", "16"), "--size"),
        (&|| run(&separate, "--generator", &prior, "4", "16"), "--size"),
        (
            &|| no_generator(&["experimental", "train", "--method", "augment"], "--generator-prior"),
            "separate or genseg",
        ),
        (&|| no_generator(&["experimental", "train", "--method", "plain"], "--generator"), "separate or genseg"),
        (
            &|| {
                no_generator(
                    &["experimental", "study", "--methods", "plain,augment", "--seeds", "1"],
                    "--generator-prior",
                )
            },
            "separate or genseg",
        ),
    ];
    for (case, fix) in cases {
        let o = case();
        let text = stderr(&o);
        assert!(!o.status.success() && text.contains("--generator") && text.contains(fix), "{text}");
        let left = files_in(&out);
        assert!(left.is_empty(), "the run refused for {fix} left {left:?}: {text}");
    }
}

#[test]
fn predict_with_a_folder_that_is_not_a_run() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(d.path());
    let o = genseg(&[
        "predict",
        "--run",
        d.path().to_str().unwrap(),
        data.join("images").to_str().unwrap(),
        "--out",
        d.path().join("p").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("model.json") && stderr(&o).contains("genseg train"), "{}", stderr(&o));
}

#[test]
fn evaluate_names_an_unmatched_prediction() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(d.path());
    let pred = d.path().join("pred");
    std::fs::create_dir_all(&pred).unwrap();
    std::fs::copy(data.join("masks/phantom_000.png"), pred.join("phantom_000.png")).unwrap();
    std::fs::copy(data.join("masks/phantom_001.png"), pred.join("other.png")).unwrap();
    let o = genseg(&[
        "evaluate",
        pred.to_str().unwrap(),
        data.join("masks").to_str().unwrap(),
        "--out",
        d.path().join("e").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("other.png"), "{}", stderr(&o));
    assert!(!d.path().join("e/summary.json").exists());
}

/// A study handed to several workers checks its data first: one message naming the folder, not
/// one per worker, and no study folder.
#[test]
fn a_study_with_missing_data_is_refused_before_its_workers_start() {
    let d = tempfile::tempdir().unwrap();
    let (missing, out) = (d.path().join("no-such-set"), d.path().join("study"));
    let o = genseg(&[
        "experimental",
        "study",
        missing.to_str().unwrap(),
        "--methods",
        "plain",
        "--seeds",
        "2",
        "--jobs",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = stderr(&o);
    assert!(!o.status.success(), "{text}");
    assert_eq!(text.matches("no-such-set").count(), 1, "{text}");
    assert!(text.contains("not found"), "{text}");
    assert!(!out.exists(), "{text}");
}

/// A fit budget too short for the first fold's least iterations is refused at planning, naming
/// a budget that would do, instead of being overrun.
#[test]
fn a_fit_budget_too_short_for_one_fold_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(d.path());
    let out = d.path().join("fit");
    let o = genseg(&["fit", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--budget", "1s", "--no-onnx"]);
    let text = stderr(&o);
    assert!(!o.status.success() && text.contains("--budget 1 s is too short") && text.contains("or more"), "{text}");
    assert!(!out.join("plan.json").exists(), "{:?}", files_in(&out));
}
