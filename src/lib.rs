//! genseg: train medical image segmenters from a handful of labelled images by generating extra
//! training pairs with a mask-to-image GAN (GenSeg, Zhang et al., Nature Communications 2025).
//!
//! Layout follows the pipeline:
//! - [`data`]: loading and pairing image/mask folders, splits, augmentation, the built-in phantom set;
//! - [`models`]: the U-Net segmenter, the Pix2Pix generator with mixed ops, the PatchGAN discriminator;
//! - [`train`]: optimisers, losses, the supervised loop (plain/augment/separate/genseg), the GAN loop
//!   and the multi-level hypergradient;
//! - [`eval`]: metrics and reports; [`viz`]: pictures and plots; [`study`]: the low-data study;
//! - [`bench`]: training-step benchmarks and FLOP counts;
//! - [`runtime`]: device, threads, versions and atomic file output.
pub mod bench;
pub mod data;
pub mod eval;
pub mod infer;
pub mod models;
pub mod runtime;
pub mod study;
pub mod train;
pub mod viz;
