//! The command line: the commands, their flags and the configurations they make. Flags of one
//! kind live in their own file ([`data`], [`train`], [`experimental`], [`tools`]); a flag's
//! default is the library's ([`genseg::train::TrainConfig::new`] and friends), so the CLI, the
//! demo and the tests share them.
pub mod data;
pub mod experimental;
pub mod fit;
pub mod serve;
pub mod tools;
pub mod train;
mod values;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use data::SplitArgs;
use experimental::{ExperimentalArgs, GanResearchArgs};
use genseg::precision::Precision;
use genseg::train::Method;
use std::collections::HashSet;
use std::path::PathBuf;
use tools::{BenchArgs, EvaluateArgs, PretrainArgs};
use train::{TrainArgs, OUTPUT, TRAINING};
use values::{at_least_1, shard};

#[derive(Parser)]
#[command(
    name = "genseg",
    version,
    about = "Segmentation from a handful of labelled images: check -> train -> predict -> evaluate -> export"
)]
pub struct Cli {
    /// auto (CUDA when present), cpu or cuda
    #[arg(long, global = true, default_value = "auto")]
    pub device: String,
    /// libtorch threads (0 = libtorch's default)
    #[arg(long, global = true, default_value_t = 0)]
    pub threads: usize,
    #[command(subcommand)]
    pub command: Command,
}

/// The command line, and which flags it gave (a configuration file keeps the rest).
pub fn parse() -> (Cli, Given) {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    (cli, Given::from_matches(&matches))
}

/// The flags given on the command line, by their argument ids (field names), or all of them.
#[derive(Clone, Default)]
pub struct Given {
    all: bool,
    ids: HashSet<String>,
}

impl Given {
    pub fn all() -> Given {
        Given { all: true, ids: HashSet::new() }
    }

    fn from_matches(matches: &ArgMatches) -> Given {
        let mut m = matches;
        while let Some((_, sub)) = m.subcommand() {
            m = sub;
        }
        let ids = m.ids().filter(|id| m.value_source(id.as_str()) == Some(ValueSource::CommandLine));
        Given { all: false, ids: ids.map(|id| id.to_string()).collect() }
    }

    pub fn has(&self, id: &str) -> bool {
        self.all || self.ids.contains(id)
    }

    /// Counts the flags `ids` as given.
    pub fn insert<const K: usize>(&mut self, ids: [&str; K]) {
        self.ids.extend(ids.map(String::from));
    }

    /// `*field = value` when the flag `id` counts.
    pub fn set<T: Clone>(&self, id: &str, field: &mut T, value: &T) {
        if self.has(id) {
            *field = value.clone();
        }
    }
}

/// `train`: one run into a folder.
#[derive(Args, Clone)]
pub struct TrainCommand {
    #[command(flatten)]
    pub args: TrainArgs,
    #[command(flatten)]
    pub split: SplitArgs,
    /// plain (real pairs), augment (classic augmentation), semi (augment plus unlabelled images,
    /// after UniMatch; needs --unlabelled), separate (plus a frozen generator's pairs) or genseg
    /// (the generator tuned end to end by the segmenter's validation loss)
    #[arg(long, value_enum, default_value_t = train::defaults().method, help_heading = TRAINING)]
    pub method: Method,
    /// The run folder (created; a folder holding this very run resumes it)
    #[arg(long, help_heading = OUTPUT)]
    pub out: PathBuf,
}

/// `study`: every (N, seed, method) cell.
#[derive(Args, Clone)]
pub struct StudyCommand {
    #[command(flatten)]
    pub args: TrainArgs,
    /// Labelled-set sizes (training + validation), comma separated
    #[arg(long, value_delimiter = ',', default_value = "8,16,32", value_parser = at_least_1, help_heading = "Data")]
    pub n: Vec<usize>,
    /// Validation pairs among each N [default: a quarter of N, at least 2]
    #[arg(long, help_heading = "Data")]
    pub val_n: Option<usize>,
    /// Cases outside the labelled N set aside (masks unused) as unlabelled images for semi,
    /// separate and genseg; the test split is what remains, the same for every arm
    #[arg(long, help_heading = "Data")]
    pub unlabelled_n: Option<usize>,
    /// Number of seeds (1..=k)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..), help_heading = "Study")]
    pub seeds: u64,
    /// The arms, comma separated
    #[arg(long, value_delimiter = ',', default_value = "plain,augment,separate,genseg", help_heading = "Study")]
    pub methods: Vec<Method>,
    /// Study cells run in parallel worker processes, the threads split between them
    #[arg(long, default_value_t = 1, value_parser = at_least_1, help_heading = "Study")]
    pub jobs: usize,
    /// Internal: the worker of --jobs that runs cells i, i+k, ... (i/k)
    #[arg(long, hide = true, value_parser = shard)]
    pub shard: Option<(usize, usize)>,
    /// Write results.csv/md, the plots and report.html from the finished runs, training nothing
    #[arg(long, conflicts_with_all = ["jobs", "shard"], help_heading = "Study")]
    pub tables_only: bool,
    /// Hand the unfinished cells to Slurm as a job array, then a job that writes the tables
    /// (rerun to resubmit what did not finish); =OPTIONS go to every sbatch call, e.g.
    /// --slurm="--partition=gpu --gres=gpu:1 --time=2:00:00"
    #[arg(long, value_name = "SBATCH_OPTIONS", num_args = 0..=1, require_equals = true, default_missing_value = "",
          allow_hyphen_values = true, conflicts_with_all = ["jobs", "shard", "tables_only"], help_heading = "Study")]
    pub slurm: Option<String>,
    /// The study folder (created; rerun to resume)
    #[arg(long, help_heading = OUTPUT)]
    pub out: PathBuf,
}

/// `experimental synth-eval`: what a generator's synthetic pairs teach a segmenter.
#[derive(Args, Clone)]
pub struct SynthEvalCommand {
    #[command(flatten)]
    pub args: TrainArgs,
    #[command(flatten)]
    pub split: SplitArgs,
    #[command(flatten)]
    pub more: ExperimentalArgs,
    /// Synthetic pairs the TSTR segmenter trains on [default: 8 per training pair]
    #[arg(long, value_parser = at_least_1)]
    pub synthetic_n: Option<usize>,
    /// Draws per mask for the diversity figure and the picture
    #[arg(long, default_value_t = 4, value_parser = at_least_1)]
    pub samples: usize,
    /// Cases outside the labelled N set aside (masks unused) as unlabelled images; the test
    /// split is what remains
    #[arg(long)]
    pub unlabelled_n: Option<usize>,
    /// The report folder
    #[arg(long)]
    pub out: PathBuf,
}

// Parsed once per process: the size of the experimental variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Check a dataset folder: counts, sizes, mask values and every problem, naming the file
    Check(data::CheckArgs),
    /// The best model for a labelled folder within a time budget: plan, cross-validate candidate
    /// arms, deliver the chosen one's fold models as an ensemble (and model.onnx, report.html)
    Fit(fit::FitArgs),
    /// Annotate in the browser: the next image by active learning, the model's proposal to
    /// correct, a background retrain every few saves
    Serve(serve::ServeArgs),
    /// Train a segmenter into a run folder (augment by default; see docs/OPTIONS.md)
    #[command(allow_negative_numbers = true)]
    Train(TrainCommand),
    /// Predict masks for an image or a folder with a trained run or fit
    Predict {
        /// The run folder (from train) or fit folder (from fit: its ensemble, with each image's
        /// disagreement in OUT/uncertainty.csv)
        #[arg(long)]
        run: PathBuf,
        /// An image, a volume, or a folder of them
        input: PathBuf,
        /// Folder the masks (and overlays/) are written to
        #[arg(long)]
        out: PathBuf,
        /// Test-time augmentation: the mean over every mirroring of the spatial axes (nnU-Net's)
        #[arg(long)]
        tta: bool,
        /// The forward passes: fp32, or bf16 autocast (faster where the hardware has bf16)
        #[arg(long, value_enum, default_value_t = Precision::Fp32)]
        precision: Precision,
    },
    /// Compare predicted masks with reference masks (per-case CSV + summary.json)
    #[command(allow_negative_numbers = true)]
    Evaluate(EvaluateArgs),
    /// A trained run's segmenter as ONNX or TorchScript (checked against genseg's own prediction)
    Export {
        /// The run folder (from train), or a fit folder (ONNX: one graph averaging its models)
        #[arg(long)]
        run: PathBuf,
        /// The model file (.onnx for ONNX)
        #[arg(long)]
        out: PathBuf,
        /// torchscript or onnx [default: onnx for a .onnx --out, else torchscript]
        #[arg(long, value_enum)]
        format: Option<genseg::export::Format>,
        /// Python with torch [default: the venv genseg was built with]
        #[arg(long)]
        python: Option<PathBuf>,
    },
    /// Every (N, seed, method) combination; results.csv, results.md and data-efficiency plots
    #[command(allow_negative_numbers = true)]
    Study(StudyCommand),
    /// Paired differences between arms of different studies, by (N, seed), with 95 % bootstrap
    /// intervals, from their results.csv
    Compare {
        /// The arm the others are compared with, STUDY_DIR:METHOD
        #[arg(long)]
        base: genseg::study::StudyArm,
        /// The arms, each STUDY_DIR:METHOD
        #[arg(required = true)]
        arms: Vec<genseg::study::StudyArm>,
        /// Also write the tables to this markdown file
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Pretrain the mask-to-image generator (Pix2Pix with mixed ops) on training pairs
    #[command(allow_negative_numbers = true)]
    PretrainGenerator {
        #[command(flatten)]
        args: PretrainArgs,
        /// The generator folder
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
        /// Pairs to write
        #[arg(long, default_value_t = 16, value_parser = at_least_1)]
        n: usize,
        /// Seed of the mask augmentation and the generator's noise
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Folder the pairs are written to (images/ and masks/)
        #[arg(long)]
        out: PathBuf,
    },
    /// Time training steps (ms/step, GFLOP/s); bench/run.sh compares them with PyTorch
    Bench(BenchArgs),
    /// Write the built-in phantom dataset (textured blobs on a textured background)
    Phantom {
        /// The dataset folder (images/ and masks/)
        #[arg(long)]
        out: PathBuf,
        /// Pairs to write
        #[arg(long, default_value_t = 60, value_parser = at_least_1)]
        n: usize,
        /// Side in pixels (at least 8, so every blob covers pixels)
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..))]
        size: u32,
        /// Seed of the drawing
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Self-contained demo on generated phantom data: train, evaluate, draw
    Demo {
        /// The demo's folder
        #[arg(long, default_value = "demo-out")]
        out: PathBuf,
        /// Seed of the data and the runs
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Every setting as a flag, research options that did not help among them (docs/OPTIONS.md)
    #[command(subcommand)]
    Experimental(Experimental),
}

#[derive(Subcommand)]
pub enum Experimental {
    /// `train` with every setting as a flag
    #[command(allow_negative_numbers = true)]
    Train {
        #[command(flatten)]
        run: TrainCommand,
        #[command(flatten)]
        more: ExperimentalArgs,
    },
    /// `study` with every setting as a flag
    #[command(allow_negative_numbers = true)]
    Study {
        #[command(flatten)]
        study: StudyCommand,
        #[command(flatten)]
        more: ExperimentalArgs,
    },
    /// `pretrain-generator` with the generator's research options
    #[command(allow_negative_numbers = true)]
    PretrainGenerator {
        #[command(flatten)]
        args: PretrainArgs,
        #[command(flatten)]
        research: GanResearchArgs,
        /// The generator folder
        #[arg(long)]
        out: PathBuf,
    },
    /// What a generator's synthetic pairs teach a segmenter: TSTR vs TRTR Dice, memorisation,
    /// diversity, held-out L1 and a picture (pretrains the generator into OUT/generator first)
    #[command(allow_negative_numbers = true)]
    SynthEval(SynthEvalCommand),
    /// The serve loop with a simulated annotator (a labelled set's true masks): test Dice per
    /// round and the pixels corrected against drawn from scratch
    AnnotationCampaign(serve::CampaignArgs),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(cmd: &clap::Command) -> Vec<&clap::Arg> {
        cmd.get_arguments().filter(|a| !a.is_hide_set() && !a.is_positional()).collect()
    }

    #[test]
    fn every_option_of_every_command_says_what_it_does() {
        fn walk(cmd: &clap::Command, path: String, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                if arg.get_help().is_none() && arg.get_long_help().is_none() && arg.get_id() != "help" {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(sub, format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "genseg".into(), &mut missing);
        assert!(missing.is_empty(), "options without a description: {missing:?}");
    }

    #[test]
    fn train_and_study_show_few_options() {
        let mut cli = Cli::command();
        cli.build();
        let count = |name: &str| options(cli.find_subcommand(name).unwrap()).len();
        // --help and the global --device and --threads included.
        assert!(count("train") <= 30, "train has {} options", count("train"));
        assert!(count("study") <= 35, "study has {} options", count("study"));
    }
}
