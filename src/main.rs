//! `genseg`: a thin command line over the library (check -> train -> predict -> evaluate, plus
//! generator pretraining, synthesis, the low-data study and a self-contained demo).
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use genseg::data::dataset::{self, LoadOptions, DEFAULT_MASK_SUFFIXES};
use genseg::data::{augment::AugmentConfig, phantom, volume::VolumeOptions};
use genseg::eval::metrics::EmptyPolicy;
use genseg::models::unet::Upsampling;
use genseg::runtime::{ensure_writable_dir, parse_device, set_threads, versions, write_json};
use genseg::train::gan::{pretrain, Gan, GanConfig, GanSpec, PretrainConfig};
use genseg::train::hypergrad::HypergradMode;
use genseg::train::loss::RegionLoss;
use genseg::train::optim::{OptimConfig, OptimKind};
use genseg::train::segment::{self, DataConfig, Method, TrainConfig};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "genseg", version, about = "Segmentation from a handful of labelled images, with generated training pairs (GenSeg)")]
struct Cli {
    /// auto (CUDA when present), cpu or cuda
    #[arg(long, global = true, default_value = "auto")]
    device: String,
    /// libtorch threads (0 = libtorch's default)
    #[arg(long, global = true, default_value_t = 0)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct DataArgs {
    /// Dataset folder: images/ + masks/, or nnU-Net's imagesTr/ + labelsTr/
    data: PathBuf,
    /// Square side images and masks are resized to
    #[arg(long, default_value_t = 256)]
    size: u32,
    /// 1 or 3 input channels (default: from the first image)
    #[arg(long)]
    channels: Option<usize>,
    /// Extra mask file suffix to strip when pairing (repeatable; _mask, _segmentation, _lesion, _manual1 are built in)
    #[arg(long = "mask-suffix")]
    mask_suffix: Vec<String>,
    /// Threshold masks with more than two values at half their range instead of refusing them;
    /// for NIfTI label maps: merge every foreground label into one
    #[arg(long)]
    binarize: bool,
    /// NIfTI volumes: shape every volume is centre-cropped/padded to (axis order of the files)
    #[arg(long, value_parser = parse_shape, default_value = "32,48,32")]
    shape: [usize; 3],
    /// NIfTI volumes: labels to segment, one output channel each (default: every label found)
    #[arg(long, value_delimiter = ',')]
    labels: Option<Vec<u32>>,
}

fn parse_shape(text: &str) -> std::result::Result<[usize; 3], String> {
    let sides: Vec<usize> = text.split(',').map(|v| v.trim().parse::<usize>()).collect::<std::result::Result<_, _>>().map_err(|e| format!("{e}"))?;
    <[usize; 3]>::try_from(sides).map_err(|_| format!("'{text}' is not three sides; write e.g. 32,48,32"))
}

impl DataArgs {
    fn suffixes(&self) -> Vec<String> {
        DEFAULT_MASK_SUFFIXES.iter().map(|s| s.to_string()).chain(self.mask_suffix.iter().cloned()).collect()
    }

    fn volume(&self) -> VolumeOptions {
        VolumeOptions { shape: self.shape, labels: self.labels.clone(), binarize: self.binarize }
    }

    fn config(&self, train_n: usize, val_n: usize) -> DataConfig {
        DataConfig {
            data: self.data.clone(),
            ood: None,
            size: self.size,
            channels: self.channels,
            mask_suffixes: self.suffixes(),
            binarize: self.binarize,
            train_n,
            val_n,
            train_ids: None,
            val_ids: None,
            volume: self.volume(),
        }
    }

    fn options(&self) -> LoadOptions {
        self.config(0, 0).load_options()
    }
}

#[derive(Args, Clone)]
struct GanArgs {
    /// Generator width (Pix2Pix ngf)
    #[arg(long, default_value_t = 64)]
    ngf: i64,
    /// Discriminator width (Pix2Pix ndf)
    #[arg(long, default_value_t = 64)]
    ndf: i64,
    #[arg(long, default_value_t = 2e-4)]
    gan_lr: f64,
    #[arg(long, default_value_t = 100.0)]
    lambda_l1: f64,
    /// Run the mixed ops as three separate transposed convs (the reference's form) instead of one fused conv
    #[arg(long)]
    separate_ops: bool,
}

impl GanArgs {
    fn config(&self) -> GanConfig {
        GanConfig { ngf: self.ngf, ndf: self.ndf, lr: self.gan_lr, beta1: 0.5, lambda_l1: self.lambda_l1, fused: !self.separate_ops }
    }
}

#[derive(Args, Clone)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Out-of-domain dataset evaluated with the final model
    #[arg(long)]
    ood: Option<PathBuf>,
    #[arg(long, default_value_t = 16)]
    train_n: usize,
    #[arg(long, default_value_t = 4)]
    val_n: usize,
    /// File of training case ids (one a line) instead of a seeded split
    #[arg(long)]
    train_ids: Option<PathBuf>,
    /// File of validation case ids (with --train-ids)
    #[arg(long)]
    val_ids: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = Method::Plain)]
    method: Method,
    /// U-Net width (channels of the first level)
    #[arg(long, default_value_t = 64)]
    width: i64,
    /// U-Net levels
    #[arg(long, default_value_t = 5)]
    depth: usize,
    #[arg(long, value_enum, default_value_t = Upsampling::Transposed)]
    upsampling: Upsampling,
    #[arg(long, value_enum, default_value_t = RegionLoss::Dice)]
    loss: RegionLoss,
    #[arg(long, value_enum, default_value_t = OptimKind::Adam)]
    optimizer: OptimKind,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 2000)]
    iters: usize,
    #[arg(long, default_value_t = 4)]
    batch_size: i64,
    /// Validate (and checkpoint) every k iterations
    #[arg(long, default_value_t = 50)]
    val_every: usize,
    /// Weight of the synthetic-pair loss
    #[arg(long, default_value_t = 1.0)]
    lambda: f64,
    #[command(flatten)]
    gan: GanArgs,
    /// Generator pretraining steps (separate/genseg without --generator)
    #[arg(long, default_value_t = 1000)]
    pretrain_iters: usize,
    /// Pretrained generator folder (from pretrain-generator)
    #[arg(long)]
    generator: Option<PathBuf>,
    /// Learning rate of the architecture logits alpha (Adam)
    #[arg(long, default_value_t = 3e-3)]
    arch_lr: f64,
    /// Architecture step every k iterations
    #[arg(long, default_value_t = 1)]
    arch_every: usize,
    /// Inner step of the unrolled update (default: --lr)
    #[arg(long)]
    xi: Option<f64>,
    /// Hypergradient finite-difference perturbation norm (eps = scale / |v|)
    #[arg(long, default_value_t = 0.01)]
    fd_scale: f64,
    /// fd: DARTS finite difference; exact: double backward (for comparison)
    #[arg(long, value_enum, default_value_t = HypergradMode::Fd)]
    hypergrad: HypergradMode,
    /// Score of a case whose prediction and reference are both empty
    #[arg(long, value_enum, default_value_t = EmptyPolicy::Nan)]
    empty_policy: EmptyPolicy,
}

impl TrainArgs {
    fn config(&self) -> TrainConfig {
        let optim = match self.optimizer {
            OptimKind::Adam => OptimConfig::adam(self.lr, 0.9),
            OptimKind::Rmsprop => OptimConfig::rmsprop(self.lr),
        };
        TrainConfig {
            data: DataConfig {
                ood: self.ood.clone(),
                train_ids: self.train_ids.clone(),
                val_ids: self.val_ids.clone(),
                ..self.data.config(self.train_n, self.val_n)
            },
            method: self.method,
            seed: self.seed,
            width: self.width,
            depth: self.depth,
            upsampling: self.upsampling,
            region_loss: self.loss,
            optim,
            iters: self.iters,
            batch_size: self.batch_size,
            val_every: self.val_every,
            lambda: self.lambda,
            augment: AugmentConfig::default(),
            jitter: 0.2,
            gan: self.gan.config(),
            pretrain_iters: self.pretrain_iters,
            generator: self.generator.clone(),
            arch_lr: self.arch_lr,
            arch_every: self.arch_every.max(1),
            xi: self.xi,
            fd_scale: self.fd_scale,
            hypergrad: self.hypergrad,
            empty_policy: self.empty_policy,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Check a dataset folder: counts, sizes, mask values and every problem, naming the file
    Check {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Train a segmenter (plain, augment, separate or genseg) into a run folder
    Train {
        #[command(flatten)]
        args: TrainArgs,
        #[arg(long)]
        out: PathBuf,
    },
    /// Predict masks for an image or a folder with a trained run
    Predict {
        #[arg(long)]
        run: PathBuf,
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Compare predicted masks with reference masks (per-case CSV + summary.json)
    Evaluate {
        pred: PathBuf,
        reference: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = EmptyPolicy::Nan)]
        empty_policy: EmptyPolicy,
        #[arg(long = "mask-suffix")]
        mask_suffix: Vec<String>,
        /// Pixel spacing in mm, rows,columns
        #[arg(long, value_delimiter = ',', default_value = "1,1")]
        spacing: Vec<f64>,
        /// Normalised surface Dice tolerance in mm
        #[arg(long, default_value_t = 1.0)]
        nsd_tolerance: f64,
        /// Labels to score in NIfTI label maps (each as its own binary mask)
        #[arg(long, value_delimiter = ',', default_value = "1")]
        labels: Vec<u32>,
    },
    /// Pretrain the mask-to-image generator (Pix2Pix with mixed ops) on training pairs
    PretrainGenerator {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, default_value_t = 16)]
        train_n: usize,
        #[arg(long, default_value_t = 4)]
        val_n: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 1000)]
        iters: usize,
        #[arg(long, default_value_t = 4)]
        batch_size: i64,
        /// Write a sample grid (mask | real | generated) every k steps
        #[arg(long, default_value_t = 100)]
        sample_every: usize,
        #[command(flatten)]
        gan: GanArgs,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write synthetic image/mask pairs from augmented masks with a pretrained generator
    Synth {
        /// Generator folder (pretrain-generator output, or a run's generator/)
        #[arg(long)]
        run: PathBuf,
        /// Folder of binary masks to augment
        #[arg(long, conflicts_with = "from_train")]
        masks: Option<PathBuf>,
        /// Use the generator's own training masks
        #[arg(long)]
        from_train: bool,
        #[arg(long, default_value_t = 16)]
        n: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Every (N, seed, method) combination; results.csv, results.md and data-efficiency plots
    Study {
        #[command(flatten)]
        args: TrainArgs,
        /// Training-set sizes, comma separated
        #[arg(long, value_delimiter = ',', default_value = "8,16,32")]
        n: Vec<usize>,
        /// Number of seeds (1..=k)
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        #[arg(long, value_delimiter = ',', default_value = "plain,augment,separate,genseg")]
        methods: Vec<Method>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Time training steps (ms/step, GFLOP/s); bench/run.sh compares them with PyTorch
    Bench {
        /// unet, gan or metrics
        what: String,
        #[arg(long, default_value_t = 64)]
        width: i64,
        #[arg(long, default_value_t = 5)]
        depth: usize,
        #[arg(long, default_value_t = 128)]
        size: i64,
        #[arg(long, default_value_t = 4)]
        batch: i64,
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// gan: three separate transposed convs per mixed op instead of the fused one
        #[arg(long)]
        separate_ops: bool,
        /// hypergrad: dataset whose cases feed the batches
        #[arg(long)]
        data: Option<PathBuf>,
        /// hypergrad: pretrained generator folder
        #[arg(long)]
        generator: Option<PathBuf>,
    },
    /// Write the built-in phantom dataset (textured blobs on a textured background)
    Phantom {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 60)]
        n: usize,
        #[arg(long, default_value_t = 64)]
        size: u32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Self-contained demo on generated phantom data: train plain and genseg briefly, evaluate, draw
    Demo {
        #[arg(long, default_value = "demo-out")]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

fn main() {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    set_threads(cli.threads);
    let device = parse_device(&cli.device)?;
    match cli.command {
        Command::Check { data } => check(&data),
        Command::Train { args, out } => {
            let s = segment::run(&args.config(), &out, device)?;
            println!("test Dice {:.4} ± {:.4} (n={}), IoU {:.4}", s.test.dice.mean, s.test.dice.sd, s.test.dice.n, s.test.iou.mean);
            if let Some(o) = &s.ood {
                println!("out-of-domain Dice {:.4} ± {:.4} (n={}), IoU {:.4}", o.dice.mean, o.dice.sd, o.dice.n, o.iou.mean);
            }
            println!("run folder: {}", out.display());
            Ok(())
        }
        Command::Predict { run, input, out } => {
            let written = genseg::infer::predict(&run, &input, &out, device)?;
            println!("{} masks in {} (overlays in {})", written.len(), out.display(), out.join("overlays").display());
            Ok(())
        }
        Command::Evaluate { pred, reference, out, empty_policy, mask_suffix, spacing, nsd_tolerance, labels } => {
            let is_nifti_folder = std::fs::read_dir(&reference)
                .map(|d| d.flatten().any(|e| genseg::data::volume::is_nifti(&e.path())))
                .unwrap_or(false);
            if is_nifti_folder {
                let opts = genseg::eval::metrics::MetricOptions { empty: empty_policy, spacing, nsd_tolerance };
                for (l, s) in genseg::eval::evaluate_nifti_folders(&pred, &reference, &labels, &opts, &out)? {
                    let h = s.hd95.as_ref().map(|h| h.mean).unwrap_or(f64::NAN);
                    println!("label {l}: Dice {:.4} ± {:.4} (n={}), IoU {:.4}, HD95 {h:.3} mm", s.dice.mean, s.dice.sd, s.dice.n, s.iou.mean);
                }
                println!("per-case: {}", out.join("cases.csv").display());
                return Ok(());
            }
            if spacing.len() != 2 {
                bail!("--spacing takes two values (rows,columns) for 2-D masks");
            }
            let suffixes: Vec<String> = DEFAULT_MASK_SUFFIXES.iter().map(|s| s.to_string()).chain(mask_suffix).collect();
            let opts = genseg::eval::metrics::MetricOptions { empty: empty_policy, spacing, nsd_tolerance };
            let s = genseg::eval::evaluate_folders(&pred, &reference, &suffixes, &opts, &out)?;
            println!("Dice {:.4} ± {:.4} (n={}, {} NaN), IoU {:.4} ± {:.4}", s.dice.mean, s.dice.sd, s.dice.n, s.dice.n_nan, s.iou.mean, s.iou.sd);
            if let (Some(h), Some(n)) = (&s.hd95, &s.nsd) {
                println!("HD95 {:.3} mm (n={}, {} infinite), NSD@{nsd_tolerance}mm {:.4}", h.mean, h.n, h.n_inf, n.mean);
            }
            println!("per-case: {}", out.join("cases.csv").display());
            Ok(())
        }
        Command::PretrainGenerator { data, train_n, val_n, seed, iters, batch_size, sample_every, gan, out } => {
            let splits = segment::load_splits(&data.config(train_n, val_n), seed)?;
            let spec = GanSpec::for_data(gan.config(), &splits.train);
            let cfg = PretrainConfig { iters, batch_size, sample_every, seed };
            let trained = pretrain(&spec, &cfg, &splits.train, &out, device)?;
            write_json(&out.join("train_data.json"), &serde_json::json!({"data": data.data, "train_ids": splits.split.train, "versions": versions(device)}))?;
            let untrained = Gan::new(&spec, device)?;
            println!(
                "held-out L1 (validation + test cases): trained {:.4}, untrained {:.4}",
                trained.l1_on(&splits.test, device),
                untrained.l1_on(&splits.test, device)
            );
            println!("generator folder: {} (samples in {})", out.display(), out.join("samples").display());
            Ok(())
        }
        Command::Synth { run, masks, from_train, n, seed, out } => synth(&run, masks.as_deref(), from_train, n, seed, &out, device),
        Command::Study { args, n, seeds, methods, out } => {
            let cfg = genseg::study::StudyConfig { base: args.config(), train_ns: n, seeds: (1..=seeds).collect(), methods };
            genseg::study::run(&cfg, &out, device)?;
            println!("{}", std::fs::read_to_string(out.join("results.md"))?);
            println!("study folder: {}", out.display());
            Ok(())
        }
        Command::Demo { out, seed } => demo(&out, seed, device),
        Command::Phantom { out, n, size, seed } => {
            phantom::write_dataset(&out, n, size, seed)?;
            println!("{n} phantom pairs in {}", out.display());
            Ok(())
        }
        Command::Bench { what, width, depth, size, batch, steps, separate_ops, data, generator } => {
            let r = match what.as_str() {
                "unet" => {
                    let cfg = genseg::models::unet::UNetConfig { in_channels: 3, out_channels: 1, width, depth, upsampling: Upsampling::Transposed, dims: 2 };
                    genseg::bench::unet_step(&cfg, size, batch, steps, device)?
                }
                "gan" => genseg::bench::gan_step(width, size, batch, !separate_ops, steps, device)?,
                "hypergrad" => {
                    let (Some(data), Some(generator)) = (data, generator) else { bail!("bench hypergrad needs --data and --generator") };
                    let gan = Gan::load(&generator, device)?;
                    let set = dataset::load(&data, &LoadOptions { size: gan.spec.shape[0] as u32, ..Default::default() })?;
                    let cfg = genseg::models::unet::UNetConfig {
                        in_channels: set.channels as i64,
                        out_channels: set.labels.len() as i64,
                        width,
                        depth,
                        upsampling: Upsampling::Transposed,
                        dims: set.dims(),
                    };
                    for (scale, cosine, ratio) in genseg::bench::hypergrad_accuracy(&set, &gan, &cfg, batch, steps, &[1.0, 0.1, 0.01, 1e-3], device) {
                        println!("fd_scale {scale:e}: cosine to exact {cosine:.3}, norm ratio fd/exact {ratio:.2} (mean of {steps} batches)");
                    }
                    return Ok(());
                }
                "metrics" => {
                    let (two_d, three_d) = genseg::bench::metrics_speed(1000);
                    println!("metrics: 1000 pairs of 512x512 masks (all metrics) {two_d:.2} s; surface metrics of one 256^3 pair {three_d:.2} s");
                    return Ok(());
                }
                other => bail!("unknown benchmark '{other}': use unet, gan or metrics"),
            };
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
    }
}

fn check(data: &DataArgs) -> Result<()> {
    if genseg::data::volume::is_volume_dataset(&data.data) {
        return check_volumes(data);
    }
    let report = dataset::check(&data.data, &data.options())?;
    println!("dataset {} ({:?})", report.root.display(), report.layout);
    println!("pairs: {} found, {} decoded", report.pairs, report.usable_pairs);
    println!("channels used: {} ({} colour images)", report.channels, report.color_images);
    println!("widths {}..{}, heights {}..{}", report.width_range.0, report.width_range.1, report.height_range.0, report.height_range.1);
    println!("mask values (before binarisation): {:?}", report.mask_value_sets);
    println!("empty masks: {}, mean foreground fraction {:.3}", report.empty_masks, report.mean_foreground_fraction);
    for p in &report.problems {
        println!("{p}");
    }
    if !report.usable() {
        bail!("{} cannot be used as it is: fix the errors above", data.data.display());
    }
    println!("ok: usable");
    Ok(())
}

fn check_volumes(data: &DataArgs) -> Result<()> {
    let opts = data.volume();
    let r = genseg::data::volume::check(&data.data, &opts)?;
    println!("dataset {} (NIfTI volumes)", data.data.display());
    println!("pairs: {} found, {} readable", r.pairs, r.usable);
    println!("shapes {:?}..{:?} voxels, spacing {:?}..{:?} mm", r.shape_min, r.shape_max, r.spacing_min, r.spacing_max);
    println!("labels found: {:?}", r.labels);
    println!("training shape {:?}: {:.3} % of foreground voxels fall outside the centred crop", opts.shape, 100.0 * r.cropped_foreground);
    for p in &r.problems {
        println!("error: {p}");
    }
    if !r.problems.is_empty() || r.usable == 0 {
        bail!("{} cannot be used as it is: fix the errors above", data.data.display());
    }
    println!("ok: usable");
    Ok(())
}

fn synth(run: &Path, masks: Option<&Path>, from_train: bool, n: usize, seed: u64, out: &Path, device: tch::Device) -> Result<()> {
    use rand::SeedableRng;
    let gan = Gan::load(run, device)?;
    if gan.spec.shape.len() != 2 {
        bail!("{}: synth writes 2-D image/mask pairs and this generator makes 3-D volumes; its samples.png shows middle slices", run.display());
    }
    let size = gan.spec.shape[0] as u32;
    let source = match (masks, from_train) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, true) => {
            let path = run.join("train_data.json");
            let text = std::fs::read_to_string(&path).with_context(|| format!("{} not found: --from-train needs a folder written by pretrain-generator", path.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)?;
            PathBuf::from(v["data"].as_str().context("train_data.json lacks data")?).join("masks")
        }
        (None, false) => bail!("give --masks DIR or --from-train"),
    };
    let (files, masks, _) = dataset::load_images(&source, 1, size)?;
    let masks = masks.gt(0.5).to_kind(tch::Kind::Float);
    ensure_writable_dir(&out.join("images"))?;
    ensure_writable_dir(&out.join("masks"))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    tch::manual_seed(seed as i64);
    let base: Vec<i64> = (0..n as i64).map(|i| i % files.len() as i64).collect();
    let chosen = masks.index_select(0, &tch::Tensor::from_slice(&base));
    let augmented = genseg::data::augment::augment_masks(&chosen, &AugmentConfig::default(), &mut rng);
    let images = tch::no_grad(|| gan.synthesize(&augmented.to_device(device))).to_device(tch::Device::Cpu);
    for i in 0..n as i64 {
        let name = format!("synth_{i:04}.png");
        genseg::viz::save_png(&out.join("images").join(&name), &genseg::viz::tensor_to_rgb(&images.get(i)))?;
        genseg::viz::save_png(&out.join("masks").join(&name), &genseg::viz::tensor_to_rgb(&augmented.get(i)))?;
    }
    println!("{n} synthetic pairs in {} (images/ and masks/)", out.display());
    Ok(())
}

/// Phantom data, a short generator pretraining, then plain and genseg training and a comparison.
fn demo(out: &Path, seed: u64, device: tch::Device) -> Result<()> {
    ensure_writable_dir(out)?;
    let data = out.join("data");
    if !data.join("masks").is_dir() {
        phantom::write_dataset(&data, 60, 64, seed)?;
    }
    println!("phantom dataset: {} (60 pairs, 64 px)", data.display());
    #[derive(Parser)]
    struct DemoArgs {
        #[command(flatten)]
        args: TrainArgs,
    }
    let base = DemoArgs::parse_from([
        "demo", data.to_str().context("non-UTF-8 path")?, "--size", "64", "--train-n", "8", "--val-n", "4", "--width", "16", "--depth", "4",
        "--iters", "300", "--val-every", "25", "--ngf", "16", "--ndf", "16", "--pretrain-iters", "300", "--batch-size", "4",
    ])
    .args;
    let mut rows = Vec::new();
    for method in [Method::Plain, Method::Genseg] {
        let mut cfg = base.config();
        cfg.method = method;
        cfg.seed = seed;
        let dir = out.join(method.name());
        let s = segment::run(&cfg, &dir, device)?;
        rows.push((method, s, dir));
    }
    println!("\nmethod   test Dice (n)        pictures");
    for (m, s, dir) in &rows {
        println!("{:<8} {:.3} ± {:.3} ({})  {}", m.name(), s.test.dice.mean, s.test.dice.sd, s.test.dice.n, dir.join("overlays_test.png").display());
    }
    let gen = out.join("genseg").join("samples.png");
    println!("generator samples (mask | real | synthetic | augmented mask | synthetic): {}", gen.display());
    println!("curves: {}", out.join("genseg").join("curves.png").display());
    Ok(())
}
