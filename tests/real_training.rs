//! Short training runs on real data that must show learning.
mod common;
use common::*;
use genseg::train::{record::DataUsage, segment, Method};
use tch::Device;

/// kvasir_seg cases the other tests read: 180 test cases beside the 20 labelled ones (loading and
/// scoring all 1000 took most of their time; their claims need real polyps, not a thousand).
const KVASIR_CASES: usize = 200;

#[test]
#[ignore = "slow: trains on real data (make test)"]
fn kvasir_plain_training_beats_the_untrained_model() {
    let _rng = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    // All of kvasir_seg: its 0.3 below was set on this split and its 980 test cases.
    let cfg = small_config(&shared("kvasir_seg"), Method::Plain, 16, 200);
    let summary = segment::run(&cfg, &dir.path().join("run"), Device::Cpu).unwrap();
    let floor = untrained_dice(&cfg);
    println!("trained test Dice {:.3} vs untrained {:.3}", summary.test.dice.mean, floor);
    // Predicting every pixel as polyp scores about 0.25 here; an untrained model scores less.
    assert!(
        summary.test.dice.mean > 0.3 && summary.test.dice.mean > floor + 0.15,
        "trained {:.3} vs untrained {floor:.3}",
        summary.test.dice.mean
    );
    for f in [
        "config.json",
        "split.json",
        "metrics.jsonl",
        "curves.png",
        "summary.json",
        "model.safetensors",
        "test_cases.csv",
        "overlays_test.png",
    ] {
        assert!(dir.path().join("run").join(f).is_file(), "{f} missing");
    }
}

#[test]
#[ignore = "slow: trains on real data (make test)"]
fn predict_then_evaluate_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = shared_subset("kvasir_seg", KVASIR_CASES, d);
    let run = d.join("run");
    let o = genseg(&[
        "train",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--size",
        "64",
        "--n",
        "16",
        "--val-n",
        "4",
        "--width",
        "16",
        "--depth",
        "4",
        "--iters",
        "150",
        "--val-every",
        "50",
        "--seed",
        "3",
        "--method",
        "plain",
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Predict a few original-size images, then score them against their masks.
    let input = d.join("input");
    let reference = d.join("reference");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&reference).unwrap();
    let split: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("split.json")).unwrap()).unwrap();
    let test_ids: Vec<String> =
        split["test"].as_array().unwrap().iter().take(10).map(|v| v.as_str().unwrap().to_string()).collect();
    for id in &test_ids {
        std::fs::copy(data.join("images").join(format!("{id}.jpg")), input.join(format!("{id}.jpg"))).unwrap();
        std::fs::copy(data.join("masks").join(format!("{id}.png")), reference.join(format!("{id}.png"))).unwrap();
    }
    let pred = d.join("pred");
    let o = genseg(&[
        "predict",
        "--run",
        run.to_str().unwrap(),
        input.to_str().unwrap(),
        "--out",
        pred.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for id in &test_ids {
        let m = image::open(pred.join(format!("{id}.png"))).unwrap();
        let r = image::open(reference.join(format!("{id}.png"))).unwrap();
        assert_eq!((m.width(), m.height()), (r.width(), r.height()), "prediction not at the original size");
        assert!(pred.join("overlays").join(format!("{id}.png")).is_file());
    }
    let eval = d.join("eval");
    let o = genseg(&["evaluate", pred.to_str().unwrap(), reference.to_str().unwrap(), "--out", eval.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(eval.join("cases.csv")).unwrap();
    assert_eq!(csv.lines().count(), test_ids.len() + 1);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eval.join("summary.json")).unwrap()).unwrap();
    let dice = summary["summary"]["dice"]["mean"].as_f64().unwrap();
    // At the original size the score tracks the run's own 64 px score on the same cases.
    let cases = std::fs::read_to_string(run.join("test_cases.csv")).unwrap();
    let same: Vec<f64> = cases
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            test_ids.contains(&f[0].to_string()).then(|| f[1].parse::<f64>().unwrap())
        })
        .collect();
    assert_eq!(same.len(), test_ids.len());
    let run_dice = same.iter().sum::<f64>() / same.len() as f64;
    println!("round-trip Dice {dice:.3}, the run's own Dice on these cases {run_dice:.3}");
    assert!(dice > 0.1, "round-trip Dice {dice}");
    assert!((dice - run_dice).abs() < 0.1, "round trip {dice:.3} vs the run's {run_dice:.3}");
    // The ONNX model is predict end to end: kvasir's test images at their own sizes (other than
    // the 64 px the run trained at) give predict's masks, pixel for pixel.
    let onnx = d.join("model.onnx");
    let o = genseg(&["export", "--run", run.to_str().unwrap(), "--out", onnx.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Every pixel, but for a probability tied with the threshold (export refuses any other).
    assert!(mask_agreement(&stdout(&o)) >= 99.99, "{}", stdout(&o));
}

#[test]
#[ignore = "slow: trains on real data (make test)"]
fn generator_pretraining_lowers_held_out_l1() {
    let _rng = one_at_a_time();
    use genseg::data::split::load_splits;
    use genseg::gan::{pretrain, Gan, GanConfig, GanSpec, PretrainConfig};
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(&shared_subset("kvasir_seg", KVASIR_CASES, dir.path()), Method::Separate, 16, 0);
    let splits = load_splits(&cfg.data, 1).unwrap();
    let spec = GanSpec {
        gan: GanConfig { ngf: 16, ndf: 16, ..Default::default() },
        shape: vec![64, 64],
        channels: 3,
        mask_channels: 1,
    };
    tch::manual_seed(0);
    let untrained = Gan::new(&spec, Device::Cpu).unwrap().l1_on(&splits.test, Device::Cpu);
    let pcfg = PretrainConfig { sample_every: 50, ..PretrainConfig::new(150, 4, 1) };
    let gan = pretrain(&spec, &pcfg, &splits.train, &splits.val, &dir.path().join("gen"), Device::Cpu).unwrap();
    // Reloading gives the same generator, alpha included.
    let again = Gan::load(&dir.path().join("gen"), Device::Cpu).unwrap();
    for (a, b) in [(&gan.g_vs, &again.g_vs), (&gan.arch_vs, &again.arch_vs)] {
        let (va, vb) = (a.variables(), b.variables());
        assert_eq!(va.len(), vb.len());
        for (name, t) in va {
            assert!(t.equal(&vb[&name]), "{name} differs after reload");
        }
    }
    let trained = gan.l1_on(&splits.test, Device::Cpu);
    println!("held-out L1: trained {trained:.4}, untrained {untrained:.4}");
    assert!(trained < 0.75 * untrained, "trained {trained} vs untrained {untrained}");
    assert!(dir.path().join("gen/samples/step_000150.png").is_file());
    // The fidelity curve: held-out L1 at every sample point, falling from the first to the last.
    let metrics = std::fs::read_to_string(dir.path().join("gen/gan_metrics.jsonl")).unwrap();
    let heldout: Vec<f64> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["heldout_l1"].as_f64().unwrap())
        .collect();
    assert_eq!(heldout.len(), 3, "{metrics}");
    assert!(heldout[2] < heldout[0], "held-out L1 {heldout:?}");
    assert!(dir.path().join("gen/curves.png").is_file());
    // As a prior, it is where pretraining starts: one step at a negligible learning rate keeps its
    // held-out L1; networks of another width are refused by flag before anything is written.
    let still = GanSpec { gan: GanConfig { lr: 1e-12, ..spec.gan.clone() }, ..spec.clone() };
    let from_prior = PretrainConfig { prior: Some(dir.path().join("gen")), ..PretrainConfig::new(1, 4, 2) };
    let tuned = pretrain(&still, &from_prior, &splits.train, &splits.val, &dir.path().join("tuned"), Device::Cpu);
    // Same dropout draws for both.
    let l1 = |g: &Gan| {
        tch::manual_seed(7);
        g.l1_on(&splits.test, Device::Cpu)
    };
    let (tuned, prior) = (l1(&tuned.unwrap()), l1(&gan));
    assert!((tuned - prior).abs() < 1e-4, "from the prior {tuned} vs the prior {prior}");
    let narrow = GanSpec { gan: GanConfig { ngf: 8, ..spec.gan.clone() }, ..spec.clone() };
    let refused = pretrain(&narrow, &from_prior, &splits.train, &splits.val, &dir.path().join("narrow"), Device::Cpu);
    let refused = format!("{:#}", refused.err().expect("a prior of other networks"));
    assert!(refused.contains("--generator-prior") && refused.contains("--ngf"), "{refused}");
    assert!(!dir.path().join("narrow").exists());
}

#[test]
#[ignore = "slow: trains on real data (make test)"]
fn genseg_run_moves_alpha_and_never_trains_on_validation_cases() {
    let _rng = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(&shared_subset("kvasir_seg", KVASIR_CASES, dir.path()), Method::Genseg, 8, 30);
    cfg.val_every = 10;
    let out = dir.path().join("run");
    let summary = segment::run(&cfg, &out, Device::Cpu).unwrap();
    // alpha starts at 1e-3 N(0,1), i.e. softmax within ~1e-3 of 1/3.
    let alpha = summary.alpha.unwrap();
    let moved = alpha.iter().flatten().map(|p| (p - 1.0 / 3.0).abs()).fold(0.0, f64::max);
    assert!(moved > 5e-3, "alpha did not move: max |softmax - 1/3| = {moved}");
    let usage: DataUsage =
        serde_json::from_str(&std::fs::read_to_string(out.join("data_usage.json")).unwrap()).unwrap();
    assert!(!usage.seg_optimizer_ids.is_empty());
    for id in &usage.val_ids {
        assert!(!usage.seg_optimizer_ids.contains(id), "validation case {id} reached the segmentation optimiser");
    }
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let norms: Vec<f64> = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["hypergrad_norm"].as_f64())
        .collect();
    assert!(!norms.is_empty() && norms.iter().all(|n| *n > 0.0), "hypergradient norms {norms:?}");
    assert!(out.join("samples.png").is_file());
}
