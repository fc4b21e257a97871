//! genseg: train medical image segmenters from a handful of labelled images, with classic
//! augmentation or with extra training pairs from a mask-to-image GAN tuned end to end (GenSeg,
//! Zhang et al., Nature Communications 2025).
//!
//! Read in the order of the pipeline, data -> models -> train -> eval (docs/ARCHITECTURE.md
//! draws it):
//! - [`data`]: finding, pairing, checking and loading image folders and NIfTI volume sets,
//!   unlabelled images, splits, augmentation (and the strong views of unlabelled images), the
//!   built-in phantom set;
//! - [`models`]: the segmenters (U-Net, DeepLabV3+, Swin-UNet), the Pix2Pix generator with mixed
//!   ops, the discriminators, one file each;
//! - [`learn`]: optimisers, losses and checkpoints, below both learners;
//! - [`gan`]: GenSeg's generator: configuration, folder format, training step, pretraining;
//! - [`upper`]: GenSeg's upper level, the exact hypergradient through a segmentation step;
//! - [`train`]: one training run of plain / augment / semi / separate / genseg into a run
//!   folder (`semi`: semi-supervised, with unlabelled images);
//! - [`infer`]: a trained model (or a fit's ensemble) on new images or volumes; [`eval`]: metrics and reports;
//!   [`export`]: a trained model as ONNX or TorchScript;
//! - [`fit`]: from a labelled folder and a time budget to a cross-validated ensemble (plan,
//!   k-fold cross-validation of candidate arms, the chosen arm's fold models);
//! - [`serve`]: the annotation server (`genseg serve`): a web page to annotate and correct the
//!   model's proposals, active learning, background retrains;
//! - [`study`]: many runs over (N, seed, method) and their paired comparison; [`synth`] and
//!   [`synth_eval`]: synthetic pairs and what they teach; [`demo`]: the demo;
//! - [`slurm`]: job scripts and `sbatch` for `study --slurm` and `fit --slurm`;
//! - [`viz`]: pictures and plots; [`bench`]: benchmarks and FLOP counts; [`runtime`]: device,
//!   threads, versions, atomic file output, weight files; [`precision`]: bf16 autocast regions;
//!   [`progress`]: a bar in a terminal, log lines elsewhere.
//!
//! The command line (`src/main.rs`, `src/cli/`) is a thin layer over these; every default lives
//! in the library ([`train::TrainConfig::new`]).
pub mod bench;
pub mod data;
pub mod demo;
pub mod eval;
pub mod export;
pub mod fit;
pub mod gan;
pub mod infer;
pub mod learn;
pub mod models;
pub mod precision;
pub mod progress;
pub mod runtime;
pub mod serve;
pub mod slurm;
pub mod study;
pub mod synth;
pub mod synth_eval;
pub mod train;
pub mod upper;
pub mod viz;
