//! The flags of the commands around training: generator pretraining, evaluation, studies'
//! workers and benchmarks.
use super::experimental::{GanArgs, GanResearchArgs};
use super::train::{check_gan, defaults, Methods};
use super::values::{at_least_1, at_least_one, positive, share};
use super::{Given, StudyCommand};
use anyhow::{bail, Result};
use clap::Args;
use genseg::bench::{BenchOptions, BenchWhat};
use genseg::data::set::default_mask_suffixes;
use genseg::data::split::{validation_count, DataConfig};
use genseg::eval::metrics::{EmptyPolicy, MetricOptions};
use genseg::gan::{read_prior, GanConfig, PretrainConfig};
use genseg::models::resnet::Backbone;
use genseg::out;
use genseg::precision::Precision;
use genseg::study::StudyConfig;
use std::path::PathBuf;

#[derive(Args, Clone)]
pub struct PretrainArgs {
    #[command(flatten)]
    data: super::data::DataArgs,
    #[command(flatten)]
    split: super::data::SplitArgs,
    /// Seed of the split, the initial weights and every random draw
    #[arg(long, default_value_t = defaults().seed)]
    seed: u64,
    /// Pretraining steps
    #[arg(long, default_value_t = defaults().pretrain_iters)]
    iters: usize,
    /// Pairs per step
    #[arg(long, default_value_t = defaults().batch_size)]
    batch_size: i64,
    /// Write a sample grid (mask | real | generated) every k steps [default: a tenth of --iters]
    #[arg(long)]
    sample_every: Option<usize>,
    /// The GAN steps' forward passes: fp32, or bf16 autocast with float32 weights
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    precision: Precision,
    #[command(flatten)]
    gan: GanArgs,
}

impl PretrainArgs {
    /// The data, the generator and the pretraining; `research`: `genseg experimental`'s flags.
    pub fn config(&self, research: Option<&GanResearchArgs>) -> Result<(DataConfig, GanConfig, PretrainConfig)> {
        at_least_one("--iters", self.iters)?;
        at_least_one("--batch-size", self.batch_size.max(0) as usize)?;
        let all = Given::all();
        let mut data = DataConfig::new(&self.data.data);
        self.data.apply(&mut data.load, &all)?;
        self.split.apply(&mut data, &all)?;
        let mut gan = GanConfig::default();
        self.gan.apply(&mut gan, &all);
        if let Some(r) = research {
            r.apply(&mut gan, &all);
        }
        check_gan(&gan)?;
        let prior = research.and_then(|r| r.generator_prior.clone());
        if let Some(prior) = &prior {
            read_prior(prior, &gan)?;
        }
        let mut pretrain = PretrainConfig {
            precision: self.precision,
            prior,
            ..PretrainConfig::new(self.iters, self.batch_size, self.seed)
        };
        if let Some(k) = self.sample_every {
            at_least_one("--sample-every", k)?;
            pretrain.sample_every = k;
        }
        Ok((data, gan, pretrain))
    }
}

/// A study of every N (each checked against `val_n`), seeds 1..=`seeds`.
pub fn study_config(s: &StudyCommand, more: Option<&super::ExperimentalArgs>, given: &Given) -> Result<StudyConfig> {
    for &n in &s.n {
        validation_count(n, s.val_n)?;
    }
    let split = super::SplitArgs { n: s.n[0], val_n: s.val_n, unlabelled_n: s.unlabelled_n };
    let mut given = given.clone();
    given.insert(["n", "val_n"]);
    let base = s.args.config(&split, more, Methods::Arms(&s.methods), &given)?;
    Ok(StudyConfig {
        base,
        ns: s.n.clone(),
        seeds: (1..=s.seeds).collect(),
        methods: s.methods.clone(),
        shard: s.shard,
    })
}

/// This process's arguments without the flags `valued` (each with its value) and `switches`.
fn args_without(valued: &[&str], switches: &[&str]) -> Vec<String> {
    let mut args = Vec::new();
    let mut given = std::env::args().skip(1);
    while let Some(a) = given.next() {
        // `--flag value`, `--flag=value`, `--switch` and `--switch=value` forms.
        let flag = a.split('=').next().unwrap_or_default();
        if valued.contains(&a.as_str()) {
            given.next();
        } else if !(switches.contains(&flag) || valued.contains(&flag) && a.contains('=')) {
            args.push(a);
        }
    }
    args
}

/// The command line of `--jobs` worker `i` of `jobs`: this process's arguments without `--jobs`
/// and `--threads`, with `threads` libtorch threads and `--shard i/jobs`.
pub fn worker_args(i: usize, jobs: usize, threads: usize) -> Vec<String> {
    let mut args = vec!["--threads".to_string(), threads.to_string()];
    args.extend(args_without(&["--jobs", "--threads"], &[]));
    args.extend(["--shard".to_string(), format!("{i}/{jobs}")]);
    args
}

/// `study --slurm`: submits the unfinished cells and says what went where.
pub fn submit_to_slurm(s: &StudyCommand, options: &str, cfg: &StudyConfig) -> Result<()> {
    let extra = genseg::slurm::options(options);
    match genseg::study::slurm::submit(cfg, &s.out, &slurm_worker()?, &extra)? {
        Some(sub) => genseg::out!(
            "submitted cells {:?} as Slurm job array {} and the tables as job {} (after the array); logs in {}",
            sub.cells,
            sub.array_job,
            sub.tables_job,
            s.out.join("slurm").display()
        ),
        None => genseg::out!("every cell has finished; tables in {}", s.out.display()),
    }
    Ok(())
}

/// The command line of a Slurm task of this study: this program and its arguments without the
/// submission's `--slurm` and `--jobs`, `--threads` (the task script
/// adds the threads Slurm gives it and its cell).
fn slurm_worker() -> Result<Vec<String>> {
    own_command(&["--jobs", "--threads"], &["--slurm"])
}

/// This program and its arguments without the flags `valued` (with their values) and
/// `switches`: the command line a job script runs.
pub fn own_command(valued: &[&str], switches: &[&str]) -> Result<Vec<String>> {
    let mut command = vec![std::env::current_exe()?.to_string_lossy().to_string()];
    command.extend(args_without(valued, switches));
    Ok(command)
}

#[derive(Args, Clone)]
pub struct EvaluateArgs {
    /// Folder of predicted masks
    pub pred: PathBuf,
    /// Folder of reference masks (or a dataset folder with masks/)
    pub reference: PathBuf,
    /// Folder cases.csv and summary.json are written to
    #[arg(long)]
    pub out: PathBuf,
    /// Score of a case whose prediction and reference are both empty
    #[arg(long, value_enum, default_value_t = EmptyPolicy::Nan)]
    empty_policy: EmptyPolicy,
    /// Extra mask file suffix to strip when pairing (repeatable)
    #[arg(long = "mask-suffix")]
    mask_suffix: Vec<String>,
    /// Pixel spacing in mm, rows,columns [default: none: distances in pixels]
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    spacing: Option<Vec<f64>>,
    /// Normalised surface Dice tolerance, in the unit of the distances (mm with a spacing, else px)
    #[arg(long, default_value_t = 1.0)]
    pub nsd_tolerance: f64,
    /// Labels to score in NIfTI label maps, each as its own binary mask [default: every label of
    /// the reference volumes]
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<u32>>,
}

impl EvaluateArgs {
    /// Metric options; `volumes` takes the spacing from each reference header instead.
    pub fn options(&self, volumes: bool) -> Result<MetricOptions> {
        let spacing = self.spacing.clone().unwrap_or_else(|| vec![1.0, 1.0]);
        if !volumes && spacing.len() != 2 {
            bail!("--spacing takes two values (rows,columns) for 2-D masks");
        }
        for &s in &spacing {
            positive("--spacing", s)?;
        }
        positive("--nsd-tolerance", self.nsd_tolerance)?;
        Ok(MetricOptions { empty: self.empty_policy, spacing, nsd_tolerance: self.nsd_tolerance })
    }

    /// The unit of the distances: mm from a spacing or a NIfTI header, else pixels.
    pub fn unit(&self, volumes: bool) -> &'static str {
        if volumes || self.spacing.is_some() {
            "mm"
        } else {
            "px"
        }
    }

    /// Scores the predictions and prints the summary.
    pub fn run(&self) -> Result<()> {
        let args = self;
        let volumes = genseg::data::files::holds_volumes(&args.reference);
        let opts = args.options(volumes)?;
        let unit = args.unit(volumes);
        if volumes {
            let per_label = genseg::eval::evaluate_nifti_folders(
                &args.pred,
                &args.reference,
                args.labels.as_deref(),
                &opts,
                &args.out,
            )?;
            for (l, s) in per_label {
                let h = s.hd95.as_ref().map(|h| h.mean).unwrap_or(f64::NAN);
                let (d, i) = (&s.dice, &s.iou);
                out!("label {l}: Dice {:.4} ± {:.4} (n={}), IoU {:.4}, HD95 {h:.3} {unit}", d.mean, d.sd, d.n, i.mean);
            }
        } else {
            let s = genseg::eval::evaluate_folders(&args.pred, &args.reference, &args.suffixes(), &opts, &args.out)?;
            let (d, i) = (&s.dice, &s.iou);
            out!("Dice {:.4} ± {:.4} (n={}, {} NaN), IoU {:.4} ± {:.4}", d.mean, d.sd, d.n, d.n_nan, i.mean, i.sd);
            if let (Some(h), Some(n)) = (&s.hd95, &s.nsd) {
                let tol = args.nsd_tolerance;
                out!("HD95 {:.3} {unit} (n={}, {} infinite), NSD@{tol}{unit} {:.4}", h.mean, h.n, h.n_inf, n.mean);
            }
        }
        out!("per-case: {}", args.out.join("cases.csv").display());
        Ok(())
    }

    pub fn suffixes(&self) -> Vec<String> {
        default_mask_suffixes().into_iter().chain(self.mask_suffix.iter().cloned()).collect()
    }
}

#[derive(Args, Clone)]
pub struct BenchArgs {
    /// What to time
    #[arg(value_enum)]
    pub what: BenchWhat,
    /// U-Net (and default generator) width
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(i64).range(1..))]
    width: i64,
    /// U-Net levels
    #[arg(long, default_value_t = 5, value_parser = at_least_1)]
    depth: usize,
    /// Image side in pixels
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(i64).range(1..))]
    size: i64,
    /// Cases per step
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i64).range(1..))]
    batch: i64,
    /// Timed steps
    #[arg(long, default_value_t = 10, value_parser = at_least_1)]
    steps: usize,
    /// phases, schedule: generator and discriminator width [default: --width]
    #[arg(long)]
    ngf: Option<i64>,
    /// deeplab: the ResNet encoder
    #[arg(long, value_enum, default_value_t = Backbone::Resnet18)]
    backbone: Backbone,
    /// swin-unet: the attention window side
    #[arg(long, default_value_t = 7)]
    window: i64,
    /// gan: three separate transposed convs per mixed op instead of the fused one
    #[arg(long)]
    separate_ops: bool,
    /// schedule: the genseg arms' --gan-every / --arch-every, one run each
    #[arg(long, value_delimiter = ',', default_values_t = [1, 4, 8], value_parser = at_least_1)]
    every: Vec<usize>,
    /// schedule: the genseg arms' --synthetic-share
    #[arg(long, default_value_t = defaults().synthetic_share, value_parser = share)]
    synthetic_share: f64,
    /// schedule: rounds over all arms; each arm's median is reported (the machine's timings vary)
    #[arg(long, default_value_t = 3, value_parser = at_least_1)]
    rounds: usize,
    /// hypergrad: dataset whose cases feed the batches
    #[arg(long)]
    data: Option<PathBuf>,
    /// hypergrad: pretrained generator folder
    #[arg(long)]
    generator: Option<PathBuf>,
    /// unet, gan, predict, schedule: forward passes in fp32 or bf16 autocast
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    precision: Precision,
}

impl BenchArgs {
    pub fn options(&self) -> BenchOptions {
        BenchOptions {
            width: self.width,
            depth: self.depth,
            size: self.size,
            batch: self.batch,
            steps: self.steps,
            ngf: self.ngf.unwrap_or(self.width),
            backbone: self.backbone,
            window: self.window,
            separate_ops: self.separate_ops,
            every: self.every.clone(),
            synthetic_share: self.synthetic_share,
            rounds: self.rounds,
            data: self.data.clone(),
            generator: self.generator.clone(),
            precision: self.precision,
        }
    }
}
