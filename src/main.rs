//! `genseg`: a thin command line over the library (check -> train -> predict -> evaluate, plus
//! generator pretraining, synthesis, the low-data study, benchmarks and a self-contained demo).
//! Flags and their validation live in [`cli`]; this file only dispatches and prints.
mod cli;

use anyhow::{bail, Result};
use clap::Parser;
use cli::{BenchArgs, BenchWhat, Cli, Command, EvaluateArgs};
use genseg::data::files::holds_volumes;
use genseg::export::Format;
use genseg::models::unet::UNetConfig;
use genseg::out;
use genseg::runtime::{parse_device, set_threads};
use genseg::train::gan::pretrain_on_split;
use genseg::train::segment;
use tch::Device;

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    if let Err(e) = run(Cli::parse()) {
        // The reader of our output went away (`genseg ... | head`): nothing left to say.
        if genseg::runtime::is_broken_pipe(&e) {
            std::process::exit(0);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let threads = cli.threads;
    set_threads(threads);
    let device = parse_device(&cli.device)?;
    match cli.command {
        Command::Check { data } => {
            let report = genseg::data::check(&data.data, &data.options()?)?;
            out!("{}", report.to_string().trim_end());
            if !report.usable() {
                let first = report.problems.iter().find(|p| p.fatal);
                let first = first.map(|p| format!(", first: {}: {}", p.file.display(), p.message)).unwrap_or_default();
                bail!("{} cannot be used as it is{first}; fix the errors above", data.data.display());
            }
            out!("ok: usable");
        }
        Command::Train { args, split, out } => {
            let s = segment::run(&args.train_config(&split)?, &out, device)?;
            out!(
                "test Dice {:.4} ± {:.4} (n={}), IoU {:.4}",
                s.test.dice.mean,
                s.test.dice.sd,
                s.test.dice.n,
                s.test.iou.mean
            );
            if let Some(o) = &s.ood {
                out!(
                    "out-of-domain Dice {:.4} ± {:.4} (n={}), IoU {:.4}",
                    o.dice.mean,
                    o.dice.sd,
                    o.dice.n,
                    o.iou.mean
                );
            }
            out!("run folder: {}", out.display());
        }
        Command::Predict { run, input, out, tta, precision } => {
            let options = genseg::infer::PredictOptions { tta, precision };
            let written = genseg::infer::predict(&run, &input, &out, options, device)?;
            out!("{} masks in {} (overlays in {})", written.len(), out.display(), out.join("overlays").display());
        }
        Command::Evaluate(args) => evaluate(&args)?,
        Command::Export { run, out, format, python } => {
            let python = python.unwrap_or_else(genseg::export::default_python);
            let format = format.unwrap_or_else(|| Format::of_path(&out));
            let (diff, n) = genseg::export::export(&run, &out, format, &python, device)?;
            let (name, meta) = match format {
                Format::Torchscript => ("TorchScript", "the file's extra file genseg.json"),
                Format::Onnx => ("ONNX, checked in onnxruntime", "the model's metadata property genseg"),
            };
            out!("{}: {name}, max probability difference to genseg {diff:.2e} on {n} images", out.display());
            out!("preprocessing and outputs: {meta}");
        }
        Command::PretrainGenerator { args, out } => {
            let (data, gan, pcfg) = args.config()?;
            let (trained, untrained) = pretrain_on_split(&data, gan, &pcfg, &out, device)?;
            out!("held-out L1 (validation + test cases): trained {trained:.4}, untrained {untrained:.4}");
            out!("generator folder: {} (samples in {})", out.display(), out.join("samples").display());
        }
        Command::Synth { run, masks, from_train, n, seed, out } => {
            let source = match (masks, from_train) {
                (Some(dir), _) => genseg::synth::MaskSource::Folder(dir),
                (None, true) => genseg::synth::MaskSource::GeneratorTraining,
                (None, false) => bail!("give --masks DIR or --from-train"),
            };
            genseg::synth::write(&run, &source, n, seed, &out, device)?;
            out!("{n} synthetic pairs in {} (images/ and masks/)", out.display());
        }
        Command::Study { args, n, val_n, seeds, methods, jobs, shard, tables_only, out } => {
            let cfg = cli::study_config(&args, n, val_n, seeds, methods, shard)?;
            if tables_only {
                let found = genseg::study::tables_from_finished(&cfg, &out)?;
                out!("{found} finished runs tabulated in {}", out.display());
                return Ok(());
            }
            if shard.is_some() {
                genseg::study::run(&cfg, &out, device)?;
                return Ok(());
            }
            if jobs > 1 {
                let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
                let threads = if threads == 0 { (cores / jobs).max(1) } else { (threads / jobs).max(1) };
                genseg::study::run_in_workers(&cfg, &out, device, jobs, |i| cli::worker_args(i, jobs, threads))?;
            } else {
                genseg::study::run(&cfg, &out, device)?;
            }
            out!("{}", std::fs::read_to_string(out.join("results.md"))?);
            out!("study folder: {}", out.display());
        }
        Command::Compare { base, arms, out } => {
            let md = genseg::study::compare(&base, &arms)?;
            out!("{}", md.trim_end());
            if let Some(out) = out {
                genseg::runtime::write_atomic(&out, md.as_bytes())?;
                out!("\ntables: {}", out.display());
            }
        }
        Command::SynthEval { args, split, synthetic_n, samples, out } => {
            let cfg = genseg::synth_eval::SynthEvalConfig { run: args.config(&split)?, synthetic_n, samples };
            let r = genseg::synth_eval::run(&cfg, &out, device)?;
            out!(
                "TSTR Dice {:.3}, TRTR Dice {:.3} (ratio {:.2}); memorisation ratio {:.2} (from training masks {:.2}); \
                 diversity {:.4}; held-out L1 {:.4}",
                r.tstr_dice,
                r.trtr_dice,
                r.tstr_over_trtr,
                r.memorisation_ratio,
                r.memorisation_ratio_training_masks,
                r.diversity,
                r.heldout_l1
            );
            out!("report: {}", out.join("synth_eval.json").display());
        }
        Command::Bench(args) => bench(&args, device)?,
        Command::Phantom { out, n, size, seed } => {
            genseg::data::phantom::write_dataset(&out, n, size, seed)?;
            out!("{n} phantom pairs in {}", out.display());
        }
        Command::Demo { out, seed } => {
            genseg::demo::run(&out, seed, device)?;
        }
    }
    Ok(())
}

fn evaluate(args: &EvaluateArgs) -> Result<()> {
    let volumes = holds_volumes(&args.reference);
    let opts = args.options(volumes)?;
    if volumes {
        for (l, s) in genseg::eval::evaluate_nifti_folders(&args.pred, &args.reference, &args.labels, &opts, &args.out)?
        {
            let h = s.hd95.as_ref().map(|h| h.mean).unwrap_or(f64::NAN);
            out!(
                "label {l}: Dice {:.4} ± {:.4} (n={}), IoU {:.4}, HD95 {h:.3} mm",
                s.dice.mean,
                s.dice.sd,
                s.dice.n,
                s.iou.mean
            );
        }
    } else {
        let s = genseg::eval::evaluate_folders(&args.pred, &args.reference, &args.suffixes(), &opts, &args.out)?;
        let (d, i) = (&s.dice, &s.iou);
        out!("Dice {:.4} ± {:.4} (n={}, {} NaN), IoU {:.4} ± {:.4}", d.mean, d.sd, d.n, d.n_nan, i.mean, i.sd);
        if let (Some(h), Some(n)) = (&s.hd95, &s.nsd) {
            out!("HD95 {:.3} mm (n={}, {} infinite), NSD@{}mm {:.4}", h.mean, h.n, h.n_inf, args.nsd_tolerance, n.mean);
        }
    }
    out!("per-case: {}", args.out.join("cases.csv").display());
    Ok(())
}

fn bench(a: &BenchArgs, device: Device) -> Result<()> {
    let result = match a.what {
        BenchWhat::Unet => {
            let unet = UNetConfig { width: a.width, depth: a.depth, ..UNetConfig::reference() };
            genseg::bench::unet_step(&unet, a.size, a.batch, a.steps, device, a.precision)?
        }
        BenchWhat::Deeplab => genseg::bench::segmenter_step(a.backbone, None, a.size, a.batch, a.steps, device)?,
        BenchWhat::SwinUnet => {
            genseg::bench::segmenter_step(a.backbone, Some(a.window), a.size, a.batch, a.steps, device)?
        }
        BenchWhat::Gan => {
            genseg::bench::gan_step(a.width, a.size, a.batch, !a.separate_ops, a.steps, device, a.precision)?
        }
        BenchWhat::Hypergrad => {
            let (Some(data), Some(generator)) = (&a.data, &a.generator) else {
                bail!("bench hypergrad needs --data and --generator")
            };
            let net = (a.width, a.depth, a.batch, a.steps);
            for (scale, cosine, ratio) in genseg::bench::hypergrad_report(data, generator, net, device)? {
                let steps = a.steps;
                out!("fd_scale {scale:e}: cosine to exact {cosine:.3}, norm ratio fd/exact {ratio:.2} (mean of {steps} batches)");
            }
            return Ok(());
        }
        BenchWhat::Augment => {
            let unet = UNetConfig { width: a.width, depth: a.depth, ..UNetConfig::reference() };
            let (plain, with) = genseg::bench::augment_overhead(&unet, a.size, a.batch, a.steps, device);
            let extra = 100.0 * (with / plain - 1.0);
            out!("unet w{} d{} {}px b{}: plain step {plain:.1} ms, with nnunet augmentation {with:.1} ms ({extra:+.0} %)", a.width, a.depth, a.size, a.batch);
            return Ok(());
        }
        BenchWhat::Predict => {
            let unet = UNetConfig { width: a.width, depth: a.depth, ..UNetConfig::reference() };
            for tta in [false, true] {
                let options = genseg::infer::PredictOptions { tta, precision: a.precision };
                let per_s = genseg::bench::predict_speed(&unet, a.size, a.batch, a.steps, options, device);
                let what = if tta { ", mirror TTA" } else { "" };
                // Without TTA: the convolution arithmetic this rate sustains, to set against the CPU's peak.
                let gflop = genseg::bench::unet_forward_flops(&unet, a.size) / 1e9;
                let rate = if tta {
                    String::new()
                } else {
                    format!(" ({:.0} GFLOP/s at {gflop:.2} GFLOP/image)", per_s * gflop)
                };
                out!(
                    "predict unet w{} d{} {}px b{}{}{what}: {per_s:.1} images/s{rate}",
                    a.width,
                    a.depth,
                    a.size,
                    a.batch,
                    a.precision.label()
                );
            }
            return Ok(());
        }
        BenchWhat::Phases => {
            let unet = UNetConfig { width: a.width, depth: a.depth, ..UNetConfig::reference() };
            let ngf = a.ngf.unwrap_or(a.width);
            let phases = genseg::bench::genseg_phases(&unet, ngf, a.size, a.batch, a.steps, device)?;
            let plain = phases[0].1;
            out!("unet w{} d{}, gan ngf{ngf}, {}px b{}:", a.width, a.depth, a.size, a.batch);
            for (phase, ms) in phases {
                out!("  {phase:<48} {ms:8.1} ms  {:5.2} plain steps", ms / plain);
            }
            if let Some(mib) = genseg::bench::peak_resident_mib() {
                out!("  peak resident memory of the process: {mib:.0} MiB");
            }
            return Ok(());
        }
        BenchWhat::Schedule => {
            let bench = genseg::bench::ScheduleBench {
                unet: UNetConfig { width: a.width, depth: a.depth, ..UNetConfig::reference() },
                ngf: a.ngf.unwrap_or(a.width),
                size: u32::try_from(a.size)?,
                batch: a.batch,
                steps: a.steps,
                every: a.every.clone(),
                synthetic_share: a.synthetic_share,
                rounds: a.rounds,
                precision: a.precision,
            };
            let arms = bench.run(device)?;
            let plain = arms[0].1;
            out!(
                "training loop, unet w{} d{}, gan ngf{}, {}px b{}, synthetic share {}, {} iterations, median of {} rounds:",
                a.width, a.depth, bench.ngf, a.size, a.batch, a.synthetic_share, a.steps, a.rounds
            );
            for (arm, seconds) in arms {
                out!("  {arm:<40} {:8.1} ms/iteration  {:5.2} plain iterations", 1e3 * seconds, seconds / plain);
            }
            return Ok(());
        }
        BenchWhat::GanRecipe => {
            let [old, new, diverse, inpainting, pasting, segmenting] =
                genseg::bench::gan_recipe_overhead(a.width, a.size, a.batch, a.steps, device)?;
            let extra = |ms: f64| 100.0 * (ms / old - 1.0);
            out!(
                "gan ngf{} {}px b{}: default step {old:.1} ms, data-efficient step {new:.1} ms ({:+.0} %), with --code-length 8 --mode-seeking 1 {diverse:.1} ms ({:+.0} %), data-efficient with --inpaint {inpainting:.1} ms ({:+.0} %), with --inpaint --paste {pasting:.1} ms ({:+.0} %), --diff-augment --joint-augment --discriminator segmenting {segmenting:.1} ms ({:+.0} %)",
                a.width, a.size, a.batch, extra(new), extra(diverse), extra(inpainting), extra(pasting), extra(segmenting)
            );
            return Ok(());
        }
        BenchWhat::Metrics => {
            let (two_d, three_d) = genseg::bench::metrics_speed(1000);
            out!("metrics: 1000 pairs of 512x512 masks (all metrics) {two_d:.2} s; surface metrics of one 256^3 pair {three_d:.2} s");
            return Ok(());
        }
    };
    out!("{}", serde_json::to_string(&result)?);
    Ok(())
}
