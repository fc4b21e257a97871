//! Reliability: bad flags and bad data are refused naming the flag or file (exit 1 or clap's 2,
//! never a panic's 101) before anything is written; a diverging run stops and keeps only finite
//! weights; two processes never share a run folder; a full disk is an error naming the file.
mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Files left in `dir` (none when it does not exist).
fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect())
        .unwrap_or_default()
}

fn assert_refused(o: &Output, needles: &[&str], what: &str) {
    let text = format!("{}{}", stdout(o), stderr(o));
    let code = o.status.code();
    assert!(matches!(code, Some(1) | Some(2)), "{what}: exit {code:?} (101 = panic):\n{text}");
    assert!(!text.contains("panicked"), "{what}: panicked:\n{text}");
    for n in needles {
        assert!(text.contains(n), "{what}: output does not name '{n}':\n{text}");
    }
}

const SMALL: &[&str] = &["--size", "32", "--n", "6", "--val-n", "2", "--width", "4", "--depth", "3", "--iters", "2"];

/// `train` with the SMALL settings, any of them replaced by the same flag in `extra`.
fn train(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["experimental", "train", s(data), "--out", s(out), "--device", "cpu"];
    for pair in SMALL.chunks(2) {
        if !extra.contains(&pair[0]) {
            args.extend_from_slice(pair);
        }
    }
    args.extend_from_slice(extra);
    genseg(&args)
}

#[test]
fn out_of_range_training_flags_are_refused_naming_the_flag() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 12);
    let ids = d.path().join("empty_ids.txt");
    std::fs::write(&ids, "# no ids\n").unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (&["--size", "0"], &["--size"]),
        (&["--val-every", "0"], &["--val-every"]),
        (&["--width", "0"], &["--width"]),
        (&["--depth", "0"], &["--depth"]),
        (&["--depth", "1"], &["--depth"]),
        (&["--batch-size", "0"], &["--batch-size"]),
        (&["--iters", "0"], &["--iters"]),
        (&["--lr", "-1"], &["--lr"]),
        (&["--lr", "nan"], &["--lr"]),
        (&["--lambda", "-1"], &["--lambda"]),
        (&["--lambda", "nan"], &["--lambda"]),
        (&["--synthetic-share", "1"], &["--synthetic-share"]),
        (&["--synthetic-share", "0"], &["--synthetic-share"]),
        (&["--synthetic-share", "nan"], &["--synthetic-share"]),
        (&["--gan-lr", "inf"], &["--gan-lr"]),
        (&["--code-length", "-2"], &["--code-length"]),
        (&["--mode-seeking", "nan", "--code-length", "8"], &["--mode-seeking"]),
        (&["--mode-seeking", "1"], &["--mode-seeking", "--code-length"]),
        (&["--fd-scale", "0"], &["--fd-scale"]),
        (&["--channels", "2"], &["--channels"]),
        (&["--shape", "0,4,4"], &["--shape"]),
        (&["--train-ids", s(&ids)], &["empty_ids.txt", "no case ids"]),
        (&["--method", "augment", "--augment", "nnunet", "--mirror-axes", "2"], &["--mirror-axes"]),
        (&["--weight-decay", "-1"], &["--weight-decay"]),
        (&["--elastic-p", "1.5"], &["--elastic-p"]),
        (&["--elastic-p", "nan"], &["--elastic-p"]),
        (&["--n", "2"], &["--n 2"]),
        (&["--n", "6", "--val-n", "6"], &["--val-n"]),
    ];
    for (i, (flags, needles)) in cases.iter().enumerate() {
        let out = d.path().join(format!("run{i}"));
        let o = train(&data, &out, flags);
        assert_refused(&o, needles, &format!("train {flags:?}"));
        assert!(files_in(&out).is_empty(), "train {flags:?} wrote {:?}", files_in(&out));
    }
    let gen = d.path().join("gen");
    let o = genseg(&["pretrain-generator", s(&data), "--size", "32", "--sample-every", "0", "--out", s(&gen)]);
    assert_refused(&o, &["--sample-every"], "pretrain-generator --sample-every 0");
    assert!(files_in(&gen).is_empty());
    let o = genseg(&["study", s(&data), "--n", "0", "--out", s(&d.path().join("study"))]);
    assert_refused(&o, &["--n"], "study --n 0");
    let o = genseg(&["study", s(&data), "--n", "8,2", "--out", s(&d.path().join("study"))]);
    assert_refused(&o, &["--n 2"], "study --n 8,2");
    assert!(files_in(&d.path().join("study")).is_empty());
}

#[test]
fn out_of_range_evaluation_flags_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 4);
    let masks = data.join("masks");
    for flags in [["--spacing", "0,0"], ["--spacing", "-1,1"], ["--nsd-tolerance", "-1"], ["--nsd-tolerance", "nan"]] {
        let out = d.path().join("eval");
        let mut args = vec!["evaluate", s(&masks), s(&masks), "--out", s(&out)];
        args.extend_from_slice(&flags);
        let o = genseg(&args);
        assert_refused(&o, &[flags[0]], &format!("evaluate {flags:?}"));
        assert!(!out.join("summary.json").exists());
    }
}

/// (check output, its exit) for a set, and the same set refused by train with nothing written.
fn check_and_train_refuse(data: &Path, needles: &[&str], what: &str) {
    let o = genseg(&["check", s(data), "--size", "32"]);
    assert_refused(&o, needles, &format!("check: {what}"));
    let out = data.parent().unwrap().join(format!("run-{}", what.replace(' ', "-")));
    let o = train(data, &out, &[]);
    assert_refused(&o, needles, &format!("train: {what}"));
    assert!(files_in(&out).is_empty(), "train ({what}) wrote {:?}", files_in(&out));
}

#[test]
fn truncated_images_empty_mask_sets_and_unreadable_files_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 12);
    // A JPEG cut to a third of its bytes.
    let png = data.join("images/phantom_002.png");
    let img = image::open(&png).unwrap();
    std::fs::remove_file(&png).unwrap();
    let jpg = data.join("images/phantom_002.jpg");
    img.save(&jpg).unwrap();
    let bytes = std::fs::read(&jpg).unwrap();
    std::fs::write(&jpg, &bytes[..bytes.len() / 3]).unwrap();
    check_and_train_refuse(&data, &["phantom_002.jpg", "truncated"], "truncated jpeg");
    std::fs::write(&jpg, &bytes).unwrap();
    let o = genseg(&["check", s(&data), "--size", "32"]);
    assert!(o.status.success(), "the whole JPEG is fine:\n{}", stdout(&o));
    // Mask values in the file's own 8-bit scale.
    assert!(stdout(&o).contains("[0, 255]") && !stdout(&o).contains("65535"), "{}", stdout(&o));

    // A symlink loop in place of a mask.
    let mask = data.join("masks/phantom_004.png");
    let saved = std::fs::read(&mask).unwrap();
    std::fs::remove_file(&mask).unwrap();
    std::os::unix::fs::symlink(&mask, &mask).unwrap();
    check_and_train_refuse(&data, &["phantom_004.png", "cannot read it"], "symlink loop");
    std::fs::remove_file(&mask).unwrap();
    std::fs::write(&mask, saved).unwrap();

    // Every mask empty: refused unless asked for.
    for entry in std::fs::read_dir(data.join("masks")).unwrap().flatten() {
        image::GrayImage::new(64, 64).save(entry.path()).unwrap();
    }
    check_and_train_refuse(&data, &["every mask is empty", "--allow-empty-masks"], "all masks empty");
    let o = genseg(&["check", s(&data), "--size", "32", "--allow-empty-masks"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

/// A copy of `n` hippocampus cases (images/ + masks/).
fn small_volume_set(dir: &Path, n: usize) -> PathBuf {
    let src = shared("msd_hippocampus");
    let set = dir.join("volumes");
    for sub in ["images", "masks"] {
        std::fs::create_dir_all(set.join(sub)).unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(src.join(sub)).unwrap().flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files.iter().take(n) {
            std::fs::copy(f, set.join(sub).join(f.file_name().unwrap())).unwrap();
        }
    }
    set
}

/// Rewrites a NIfTI file through `change`, keeping its voxels unless `voxels` changes them.
fn rewrite_nifti(path: &Path, change: impl Fn(&mut nifti::NiftiHeader), voxels: impl Fn(&mut [f32])) {
    use nifti::{IntoNdArray, NiftiObject, ReaderOptions};
    let obj = ReaderOptions::new().read_file(path).unwrap();
    let mut header = obj.header().clone();
    let mut array = obj.into_volume().into_ndarray::<f32>().unwrap();
    change(&mut header);
    voxels(array.as_slice_memory_order_mut().unwrap());
    nifti::writer::WriterOptions::new(path).reference_header(&header).write_nifti(&array).unwrap();
}

#[test]
fn volumes_with_another_geometry_or_non_finite_voxels_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let set = small_volume_set(d.path(), 4);
    let first = |sub: &str| {
        let mut f: Vec<PathBuf> = std::fs::read_dir(set.join(sub)).unwrap().flatten().map(|e| e.path()).collect();
        f.sort();
        f[0].clone()
    };
    let (image, labels) = (first("images"), first("masks"));
    let name = labels.file_name().unwrap().to_string_lossy().to_string();
    let original = std::fs::read(&labels).unwrap();
    // Same grid, another spacing; then another origin.
    rewrite_nifti(&labels, |h| h.pixdim[1] *= 1.5, |_| {});
    check_and_train_refuse(&set, &[&name, "geometry differs", "spacing"], "label spacing");
    std::fs::write(&labels, &original).unwrap();
    rewrite_nifti(
        &labels,
        |h| {
            h.srow_x[3] += 5.0;
            h.quatern_x += 5.0
        },
        |_| {},
    );
    check_and_train_refuse(&set, &[&name, "geometry differs"], "label origin");
    std::fs::write(&labels, &original).unwrap();
    // A NaN voxel in an image.
    let saved = std::fs::read(&image).unwrap();
    rewrite_nifti(&image, |_| {}, |v| v[17] = f32::NAN);
    check_and_train_refuse(&set, &[image.file_name().unwrap().to_str().unwrap(), "NaN or infinite"], "nan voxel");
    std::fs::write(&image, saved).unwrap();
    let o = genseg(&["check", s(&set)]);
    assert!(o.status.success(), "restored set: {}{}", stdout(&o), stderr(&o));
    // evaluate: a prediction on another grid than its reference.
    let (pred, reference) = (d.path().join("pred"), d.path().join("reference"));
    for dir in [&pred, &reference] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::copy(&labels, dir.join(&name)).unwrap();
    }
    rewrite_nifti(&pred.join(&name), |h| h.pixdim[2] *= 2.0, |_| {});
    let eval = d.path().join("eval");
    let o = genseg(&["evaluate", s(&pred), s(&reference), "--out", s(&eval)]);
    assert_refused(&o, &[&name, "geometry differs"], "evaluate across grids");
    assert!(!eval.join("summary.json").exists());
}

#[test]
fn a_volume_set_as_out_of_domain_data_of_a_2d_run_is_refused_before_training() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 12);
    let volumes = small_volume_set(d.path(), 2);
    let out = d.path().join("run");
    let o = train(&data, &out, &["--ood", s(&volumes)]);
    assert_refused(&o, &["--ood", "volumes"], "3-D --ood for a 2-D run");
    assert!(!out.join("config.json").exists() && !out.join("summary.json").exists(), "{:?}", files_in(&out));
}

/// Every tensor of every safetensors file below `dir` is finite.
fn saved_weights_are_finite(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            n += saved_weights_are_finite(&p);
        } else if p.extension().is_some_and(|e| e == "safetensors") {
            for (name, t) in tch::Tensor::read_safetensors(&p).unwrap() {
                assert!(bool::try_from(t.isfinite().all()).unwrap(), "{}: {name} is not finite", p.display());
            }
            n += 1;
        }
    }
    n
}

#[test]
fn a_diverging_run_stops_naming_iteration_and_phase_and_keeps_finite_weights() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 12);
    let out = d.path().join("run");
    let o = train(&data, &out, &["--lr", "1e30", "--iters", "40", "--val-every", "1"]);
    assert_refused(&o, &["diverged at iteration", "--lr"], "--lr 1e30");
    assert!(!out.join("summary.json").exists());
    let kept = saved_weights_are_finite(&out);
    println!("{kept} weight files kept, all finite");

    let out = d.path().join("gan");
    let gan = ["--method", "separate", "--ngf", "4", "--ndf", "4", "--pretrain-iters", "20", "--gan-lr", "1e30"];
    let o = train(&data, &out, &gan);
    assert_refused(&o, &["generator pretraining diverged at step", "--gan-lr"], "--gan-lr 1e30");
    saved_weights_are_finite(&out);
}

#[test]
fn two_processes_never_share_a_run_folder_and_stale_temporaries_are_removed() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 12);
    let out = d.path().join("run");
    std::fs::create_dir_all(out.join(".checkpoint.tmp-999999")).unwrap();
    std::fs::write(out.join(".tmp-999999-model.safetensors"), b"half").unwrap();
    let spawn = |seed: &str| {
        let mut args = vec!["train", s(&data), "--out", s(&out), "--device", "cpu", "--threads", "1", "--seed", seed];
        args.extend_from_slice(&SMALL[..SMALL.len() - 2]);
        args.extend_from_slice(&["--iters", "300", "--val-every", "50"]);
        Command::new(env!("CARGO_BIN_EXE_genseg")).args(args).output()
    };
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| spawn("1").unwrap());
        let b = scope.spawn(|| spawn("2").unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    let (winner_seed, loser) = match (a.status.success(), b.status.success()) {
        (true, false) => (1, b),
        (false, true) => (2, a),
        _ => panic!("exactly one may run:\n{}\n{}", stderr(&a), stderr(&b)),
    };
    assert_refused(&loser, &["in use by another genseg process (pid"], "second process");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(summary["seed"], winner_seed);
    assert_eq!(config["config"]["seed"], winner_seed);
    let left = files_in(&out);
    assert!(!left.iter().any(|f| f.contains(".tmp-") || f == ".lock"), "left behind: {left:?}");
}

/// On a 300 kB tmpfs the first checkpoint does not fit: an error naming the file, exit 1, no
/// temporaries left. Needs root to mount; says so and passes without it.
#[test]
fn a_full_disk_is_an_error_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 12);
    let mnt = d.path().join("small-disk");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=300k", "tmpfs", s(&mnt)]).status();
    if !mounted.is_ok_and(|st| st.success()) {
        println!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    }
    let out = mnt.join("run");
    let o = train(&data, &out, &["--width", "16", "--iters", "4", "--val-every", "2"]);
    let left = files_in(&out);
    let _ = Command::new("umount").arg(s(&mnt)).status();
    assert_refused(&o, &["No space left", "run/"], "disk full");
    assert!(!left.iter().any(|f| f.contains(".tmp-")), "temporaries left: {left:?}");
}

#[test]
fn predict_reads_every_input_before_writing_and_says_error_once() {
    let d = tempfile::tempdir().unwrap();
    let set = small_volume_set(d.path(), 6);
    let run = d.path().join("run3d");
    let o = genseg(&[
        "train",
        s(&set),
        "--out",
        s(&run),
        "--n",
        "4",
        "--val-n",
        "1",
        "--width",
        "4",
        "--depth",
        "2",
        "--iters",
        "2",
        "--batch-size",
        "2",
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let input = d.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    let mut images: Vec<PathBuf> = std::fs::read_dir(set.join("images")).unwrap().flatten().map(|e| e.path()).collect();
    images.sort();
    std::fs::copy(&images[0], input.join("a_good.nii.gz")).unwrap();
    std::fs::write(input.join("b_corrupt.nii.gz"), b"not a volume").unwrap();
    let pred = d.path().join("pred");
    let o = genseg(&["predict", "--run", s(&run), s(&input), "--out", s(&pred), "--device", "cpu"]);
    assert_refused(&o, &["b_corrupt.nii.gz"], "predict with a corrupt volume");
    assert!(files_in(&pred).is_empty(), "predict wrote {:?} before failing", files_in(&pred));
    assert!(!stderr(&o).contains("error: error:"), "{}", stderr(&o));

    // 2-D: a file of unknown type in the input folder.
    let data = phantom_dataset(d.path(), 12);
    let run2d = d.path().join("run2d");
    assert!(train(&data, &run2d, &[]).status.success());
    std::fs::write(data.join("images/notes.xyz"), b"hello").unwrap();
    let o = genseg(&["predict", "--run", s(&run2d), s(&data.join("images")), "--out", s(&pred)]);
    assert_refused(&o, &["notes.xyz", "unknown extension"], "predict with an unknown file");
    assert!(!stderr(&o).contains("error: error:"), "{}", stderr(&o));
    assert!(files_in(&pred).is_empty());
    std::fs::remove_file(data.join("images/notes.xyz")).unwrap();

    // A model with a non-finite weight is refused.
    let model = run2d.join("model.safetensors");
    let mut weights = tch::Tensor::read_safetensors(&model).unwrap();
    let _ = weights[0].1.fill_(f64::NAN);
    tch::Tensor::write_safetensors(&weights, &model).unwrap();
    let o = genseg(&["predict", "--run", s(&run2d), s(&data.join("images")), "--out", s(&pred)]);
    assert_refused(&o, &["run2d", "not finite"], "predict with NaN weights");
    assert!(files_in(&pred).is_empty());
}

/// A reader that goes away before genseg writes (`genseg check DATA | head -0`) ends genseg
/// quietly: exit 0, no panic.
#[test]
fn a_closed_output_pipe_ends_quietly() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 6);
    let mut child = Command::new(env!("CARGO_BIN_EXE_genseg"))
        .args(["check", s(&data)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}
