//! genseg: train medical image segmenters from a handful of labelled images by generating extra
//! training pairs with a mask-to-image GAN (GenSeg, Zhang et al., Nature Communications 2025).
//!
//! Layout follows the pipeline (docs/ARCHITECTURE.md draws it):
//! - [`data`]: finding, pairing, checking and loading image folders and NIfTI volume sets, splits,
//!   augmentation, the built-in phantom set;
//! - [`models`]: the U-Net segmenter, the Pix2Pix generator with mixed ops, the PatchGAN discriminator;
//! - [`train`]: the run loop for plain/augment/separate/genseg, optimisers, losses, the GAN loop
//!   and the multi-level hypergradient;
//! - [`infer`]: a trained model on new images or volumes; [`eval`]: metrics and reports;
//!   [`export`]: a trained model as TorchScript for PyTorch users;
//! - [`study`]: the low-data study; [`demo`] and [`synth`]: the demo and synthetic-pair export;
//!   [`synth_eval`]: what a generator's synthetic pairs teach a segmenter (TSTR, memorisation);
//! - [`viz`]: pictures and plots; [`bench`]: training-step benchmarks and FLOP counts;
//! - [`runtime`]: device, threads, versions, atomic file output and weight files; [`precision`]:
//!   bf16 autocast regions.
pub mod bench;
pub mod data;
pub mod demo;
pub mod eval;
pub mod export;
pub mod infer;
pub mod models;
pub mod precision;
pub mod runtime;
pub mod study;
pub mod synth;
pub mod synth_eval;
pub mod train;
pub mod viz;
