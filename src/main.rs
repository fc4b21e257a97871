//! `genseg`: a thin command line over the library. Flags and the configurations they make live
//! in [`cli`]; this file only dispatches and prints.
mod cli;

use anyhow::{bail, Result};
use cli::experimental::{ExperimentalArgs, GanResearchArgs};
use cli::tools::{study_config, worker_args, PretrainArgs};
use cli::train::Methods;
use cli::{Command, Experimental, Given, StudyCommand, TrainCommand};
use genseg::gan::pretrain_on_split;
use genseg::out;
use std::path::Path;
use tch::Device;

fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colours only for a terminal: a log file gets plain lines.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    let (cli, given) = cli::parse();
    if let Err(e) = run(cli, &given) {
        // The reader of our output went away (`genseg ... | head`): nothing left to say.
        if genseg::runtime::is_broken_pipe(&e) {
            std::process::exit(0);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: cli::Cli, given: &Given) -> Result<()> {
    genseg::runtime::set_threads(cli.threads);
    let device = genseg::runtime::parse_device(&cli.device)?;
    match cli.command {
        Command::Check(args) => args.run()?,
        Command::Fit(f) => f.run(device)?,
        Command::Serve(s) => s.run(&cli.device, cli.threads, device)?,
        Command::Train(t) => train(&t, None, given, device)?,
        Command::Predict { run, input, out, tta, precision } => {
            let options = genseg::infer::PredictOptions { tta, precision };
            let written = genseg::infer::predict(&run, &input, &out, options, device)?;
            out!("{} masks in {} (overlays in {})", written.len(), out.display(), out.join("overlays").display());
        }
        Command::Evaluate(args) => args.run()?,
        Command::Export { run, out, format, python } => {
            let python = python.unwrap_or_else(genseg::export::default_python);
            let format = format.unwrap_or_else(|| genseg::export::Format::of_path(&out));
            let c = genseg::export::export(&run, &out, format, &python, device)?;
            let (diff, n) = (c.max_difference, c.images);
            out!(
                "{}: {}, max probability difference to genseg {diff:.2e} on {n} images",
                out.display(),
                format.describe()
            );
            if let Some(agreement) = c.mask_agreement {
                out!("masks: {agreement:.4} % of pixels as genseg predict's, on images at their own sizes");
            }
        }
        Command::Study(s) => study(&s, None, cli.threads, given, device)?,
        Command::Compare { base, arms, out } => {
            let md = genseg::study::compare(&base, &arms)?;
            out!("{}", md.trim_end());
            if let Some(out) = out {
                genseg::runtime::write_atomic(&out, md.as_bytes())?;
                out!("\ntables: {}", out.display());
            }
        }
        Command::PretrainGenerator { args, out } => pretrain(&args, None, &out, device)?,
        Command::Synth { run, masks, from_train, n, seed, out } => {
            let source = match (masks, from_train) {
                (Some(dir), _) => genseg::synth::MaskSource::Folder(dir),
                (None, true) => genseg::synth::MaskSource::GeneratorTraining,
                (None, false) => bail!("give --masks DIR or --from-train"),
            };
            genseg::synth::write(&run, &source, n, seed, &out, device)?;
            out!("{n} synthetic pairs in {} (images/ and masks/)", out.display());
        }
        Command::Bench(args) => {
            for line in genseg::bench::report(args.what, &args.options(), device)? {
                out!("{line}");
            }
        }
        Command::Phantom { out, n, size, seed } => {
            genseg::data::phantom::write_dataset(&out, n, size, seed)?;
            out!("{n} phantom pairs in {}", out.display());
        }
        Command::Demo { out, seed } => drop(genseg::demo::run(&out, seed, device)?),
        Command::Experimental(e) => match e {
            Experimental::Train { run, more } => train(&run, Some(&more), given, device)?,
            Experimental::Study { study: s, more } => study(&s, Some(&more), cli.threads, given, device)?,
            Experimental::PretrainGenerator { args, research, out } => pretrain(&args, Some(&research), &out, device)?,
            Experimental::AnnotationCampaign(c) => c.run(device)?,
            Experimental::SynthEval(s) => {
                let split = cli::data::SplitArgs { unlabelled_n: s.unlabelled_n, ..s.split.clone() };
                let mut run = s.args.config(&split, Some(&s.more), Methods::Arms(&[]), given)?;
                // The TRTR run is the teacher here; its own configuration keeps none.
                let pseudo = run.pseudo.take();
                let cfg =
                    genseg::synth_eval::SynthEvalConfig { run, synthetic_n: s.synthetic_n, samples: s.samples, pseudo };
                let r = genseg::synth_eval::run(&cfg, &s.out, device)?;
                out!("{r}");
                out!("report: {}", s.out.join("synth_eval.json").display());
            }
        },
    }
    Ok(())
}

fn train(t: &TrainCommand, more: Option<&ExperimentalArgs>, given: &Given, device: Device) -> Result<()> {
    let cfg = t.args.config(&t.split, more, Methods::Flag(t.method), given)?;
    let s = genseg::train::segment::run(&cfg, &t.out, device)?;
    out!("{}", s.headline());
    out!("run folder: {}", t.out.display());
    Ok(())
}

fn study(
    s: &StudyCommand,
    more: Option<&ExperimentalArgs>,
    threads: usize,
    given: &Given,
    device: Device,
) -> Result<()> {
    let cfg = study_config(s, more, given)?;
    if s.tables_only {
        let found = genseg::study::tables_from_finished(&cfg, &s.out)?;
        out!("{found} finished runs tabulated in {}", s.out.display());
        return Ok(());
    }
    if s.shard.is_some() {
        return genseg::study::run(&cfg, &s.out, device).map(drop);
    }
    if let Some(options) = &s.slurm {
        return cli::tools::submit_to_slurm(s, options, &cfg);
    }
    let threads = genseg::runtime::threads_per_worker(threads, s.jobs);
    genseg::study::run_in_workers(&cfg, &s.out, device, s.jobs, |i| worker_args(i, s.jobs, threads))?;
    out!("{}", std::fs::read_to_string(s.out.join("results.md"))?);
    out!("study folder: {}", s.out.display());
    Ok(())
}

fn pretrain(args: &PretrainArgs, research: Option<&GanResearchArgs>, out: &Path, device: Device) -> Result<()> {
    let (data, gan, pretrain) = args.config(research)?;
    let (trained, untrained) = pretrain_on_split(&data, gan, &pretrain, out, device)?;
    out!("held-out L1 (validation + test cases): trained {trained:.4}, untrained {untrained:.4}");
    out!("generator folder: {} (samples in {})", out.display(), out.join("samples").display());
    Ok(())
}
