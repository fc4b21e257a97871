//! The segmenters other than the U-Net through every method, and learning on real data.
mod common;
use common::*;
use genseg::models::resnet::Backbone;
use genseg::models::segnet::ModelKind;
use genseg::train::hypergrad::HypergradMode;
use genseg::train::{segment, Method, TrainConfig};
use tch::Device;

fn deeplab(cfg: TrainConfig) -> TrainConfig {
    TrainConfig { model: ModelKind::Deeplabv3plus, backbone: Backbone::Resnet18, ..cfg }
}

/// plain, augment, separate and genseg (both hypergradient modes) run with DeepLabV3+, write
/// a DeepLab model.json and give finite scores; `predict` rebuilds the model from it.
#[test]
fn deeplab_runs_every_method() {
    let dir = tempfile::tempdir().unwrap();
    let data = phantom_dataset(dir.path(), 24);
    let runs = [
        (Method::Plain, HypergradMode::Exact),
        (Method::Augment, HypergradMode::Exact),
        (Method::Separate, HypergradMode::Exact),
        (Method::Genseg, HypergradMode::Exact),
        (Method::Genseg, HypergradMode::Fd),
    ];
    for (i, (method, hypergrad)) in runs.into_iter().enumerate() {
        let mut cfg = deeplab(small_config(&data, method, 8, 4));
        (cfg.val_every, cfg.pretrain_iters, cfg.hypergrad) = (2, 4, hypergrad);
        let out = dir.path().join(format!("run{i}"));
        let summary = segment::run(&cfg, &out, Device::Cpu).unwrap();
        let dice = summary.test.dice.mean;
        assert!(dice.is_finite(), "{method:?} {hypergrad:?}: test Dice {dice}");
        let spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("model.json")).unwrap()).unwrap();
        assert_eq!(spec["deeplabv3plus"]["backbone"], "resnet18", "{spec}");
    }
    let o = genseg(&[
        "predict",
        "--run",
        arg(&dir.path().join("run0")),
        arg(&data.join("images")),
        "--out",
        arg(&dir.path().join("pred")),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Settings DeepLabV3+ cannot train with are refused before anything is written.
#[test]
fn deeplab_refuses_what_it_cannot_train() {
    let dir = tempfile::tempdir().unwrap();
    let data = phantom_dataset(dir.path(), 12);
    let cases: &[(&[&str], &str)] = &[
        (&["--size", "72"], "multiples of its output stride 16"),
        (&["--batch-size", "1"], "--batch-size 1"),
        (&["--deep-supervision"], "--deep-supervision"),
        (&["--method", "separate", "--synthetic-share", "0.2"], "--synthetic-share"),
    ];
    for (i, (flags, want)) in cases.iter().enumerate() {
        let out = dir.path().join(format!("run{i}"));
        let mut args =
            vec!["train", arg(&data), "--n", "8", "--model", "deeplabv3plus", "--iters", "2", "--out", arg(&out)];
        args.extend_from_slice(flags);
        let o = genseg(&args);
        assert!(!o.status.success(), "{flags:?} was accepted");
        assert!(stderr(&o).contains(want), "{flags:?}: {}", stderr(&o));
        assert!(!out.join("config.json").exists(), "{flags:?} wrote a run");
    }
}

#[test]
#[ignore = "slow: trains on real data (make test)"]
fn deeplab_on_kvasir_beats_the_untrained_model() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = deeplab(small_config(&shared("kvasir_seg"), Method::Plain, 16, 200));
    let summary = segment::run(&cfg, &dir.path().join("run"), Device::Cpu).unwrap();
    let floor = untrained_dice(&cfg);
    println!("trained test Dice {:.3} vs untrained {:.3}", summary.test.dice.mean, floor);
    assert!(
        summary.test.dice.mean > 0.3 && summary.test.dice.mean > floor + 0.15,
        "trained {:.3} vs untrained {floor:.3}",
        summary.test.dice.mean
    );
}
