//! synth-eval end to end on phantom data: a segmenter trained on synthetic pairs only learns,
//! and the report and picture are written; the data-efficient GAN options train.
mod common;
use common::*;
use genseg::synth_eval::{self, SynthEvalConfig};
use genseg::train::Method;
use tch::Device;

#[test]
fn synthetic_pairs_alone_teach_a_segmenter_on_phantoms() {
    let _rng = one_at_a_time();
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 30);
    // 300 steps each: at 150 the synthetic-only segmenter scored 0.23-0.26 test Dice against 0.14
    // untrained (the float rounding of libtorch's threads moved it across the 0.1 margin); at 300
    // it scores 0.52 on one thread and two. The guard: a test beside it drawing from libtorch's
    // generator dropped it to 0.23 once.
    let mut run = small_config(&data, Method::Plain, 8, 300);
    run.data.load.size = 32;
    run.depth = 3;
    run.width = 8;
    run.gan.ngf = 8;
    run.gan.ndf = 8;
    run.gan.diff_augment = true;
    run.gan.joint_augment = true;
    run.gan.feature_matching = 10.0;
    run.pretrain_iters = 300;
    let floor = untrained_dice(&run);
    let cfg = SynthEvalConfig { run, synthetic_n: None, samples: 3, pseudo: None };
    let out = d.path().join("eval");
    let r = synth_eval::run(&cfg, &out, Device::Cpu).unwrap();
    println!("{}", serde_json::to_string(&r).unwrap());
    assert!(r.tstr_dice > floor + 0.1, "TSTR Dice {} vs untrained {floor}", r.tstr_dice);
    assert_eq!(r.synthetic_n, 64, "8 per training pair");
    for v in [r.memorisation_ratio, r.memorisation_ratio_training_masks, r.diversity, r.heldout_l1] {
        assert!(v.is_finite() && v >= 0.0, "{r:?}");
    }
    assert!(out.join("synth_eval.png").is_file() && out.join("tstr/summary.json").is_file());
    // A rerun reuses the generator and both runs.
    let again = synth_eval::run(&cfg, &out, Device::Cpu).unwrap();
    assert_eq!((again.tstr_dice, again.trtr_dice), (r.tstr_dice, r.trtr_dice));
}

/// With --pseudo-labels the generator also learns from unlabelled images the TRTR segmenter
/// labels confidently; every one of them is an unlabelled case of the split, never a
/// validation or test case.
#[test]
fn the_generator_learns_from_confident_pseudo_labels_of_unlabelled_cases_only() {
    let _rng = one_at_a_time();
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 40);
    let mut run = small_config(&data, Method::Augment, 8, 300);
    (run.data.load.size, run.data.unlabelled_n, run.patience) = (32, Some(20), 0);
    (run.depth, run.width, run.gan.ngf, run.gan.ndf, run.pretrain_iters) = (3, 8, 8, 8, 100);
    // A 300-step phantom teacher is unsure (median confident share about 0.05 at 0.95): this test
    // is about which images may join, so its filter asks less.
    let filter = genseg::gan::pseudo::PseudoFilter { confidence: 0.7, confident_share: 0.5, ..Default::default() };
    let cfg = SynthEvalConfig { run: run.clone(), synthetic_n: Some(16), samples: 2, pseudo: Some(filter) };
    let out = d.path().join("eval");
    let r = synth_eval::run(&cfg, &out, Device::Cpu).unwrap();
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("pseudo_labels.json")).unwrap()).unwrap();
    let kept: Vec<String> =
        record["kept"].as_array().unwrap().iter().map(|k| k[0].as_str().unwrap().to_string()).collect();
    assert_eq!(r.pseudo_pairs, Some(kept.len()));
    assert!(!kept.is_empty(), "the teacher labels some images confidently: {record}");
    let split = genseg::data::split::load_splits(&run.data, run.seed).unwrap().split;
    for id in &kept {
        assert!(split.unlabelled.contains(id), "{id} is not an unlabelled case");
        assert!(!split.val.contains(id) && !split.test.contains(id) && !split.train.contains(id), "{id} leaked");
    }
}

/// An inpainting generator, pretrained from the command line, writes pairs with `synth` from a
/// masks folder and from its training masks (its backgrounds are its training images, found
/// through train_data.json). A pasting one takes its lesions from the training images too: a
/// masks folder, which has none, is refused naming `--from-train`.
#[test]
fn inpainting_generator_draws_lesions_into_training_images() {
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 12);
    let pretrain = |gen: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "experimental",
            "pretrain-generator",
            arg(&data),
            "--n",
            "8",
            "--size",
            "32",
            "--ngf",
            "8",
            "--ndf",
            "8",
        ];
        args.extend(["--iters", "40", "--inpaint", "--out", arg(gen)]);
        args.extend(extra);
        let o = genseg(&args);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    let synth = |gen: &std::path::Path, source: &[&str], out: &std::path::Path| {
        let mut args = vec!["synth", "--run", arg(gen), "--n", "5", "--out", arg(out)];
        args.extend(source);
        genseg(&args)
    };
    let (gen, pasting) = (d.path().join("gen"), d.path().join("paste"));
    pretrain(&gen, &[]);
    pretrain(&pasting, &["--paste"]);
    let masks_dir = data.join("masks");
    let masks = ["--masks", arg(&masks_dir)];
    for (g, source) in [(&gen, &masks[..]), (&gen, &["--from-train"][..]), (&pasting, &["--from-train"][..])] {
        let out = d.path().join(format!("synth-{}-{}", g.display().to_string().len(), source.len()));
        let o = synth(g, source, &out);
        assert!(o.status.success(), "{}", stderr(&o));
        for part in ["images", "masks"] {
            assert_eq!(std::fs::read_dir(out.join(part)).unwrap().count(), 5, "{part}");
        }
    }
    let o = synth(&pasting, &masks, &d.path().join("refused"));
    assert!(!o.status.success() && stderr(&o).contains("--from-train"), "{}", stderr(&o));
    // A generator folder without its training record cannot find backgrounds: a clear refusal.
    std::fs::remove_file(gen.join("train_data.json")).unwrap();
    let o =
        genseg(&["synth", "--run", arg(&gen), "--masks", arg(&data.join("masks")), "--out", arg(&d.path().join("x"))]);
    assert!(!o.status.success() && stderr(&o).contains("train_data.json"), "{}", stderr(&o));
}

/// The genseg loop with an inpainting generator, and with a pasting one: each synthetic mask is
/// drawn into the next real case of the batch, and the architecture hypergradient reaches alpha
/// through the hole.
#[test]
fn genseg_trains_with_an_inpainting_generator() {
    let _rng = one_at_a_time();
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 16);
    for paste in [false, true] {
        let mut cfg = small_config(&data, Method::Genseg, 8, 4);
        (cfg.val_every, cfg.pretrain_iters, cfg.gan.inpaint, cfg.gan.paste) = (2, 4, true, paste);
        let out = d.path().join(format!("run-{paste}"));
        let summary = genseg::train::segment::run(&cfg, &out, Device::Cpu).unwrap();
        assert!(summary.test.dice.mean.is_finite());
        let norms: Vec<f64> = metrics_lines(&out).iter().filter_map(|l| l["hypergrad_norm"].as_f64()).collect();
        assert!(!norms.is_empty() && norms.iter().all(|&h| h.is_finite() && h > 0.0), "paste {paste}: {norms:?}");
        assert!(out.join("samples.png").is_file());
    }
}
