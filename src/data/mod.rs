//! Data: loading and pairing image/mask folders, NIfTI volumes, splits, augmentation and the
//! phantom demo set.
pub mod augment;
pub mod dataset;
pub mod image_io;
pub mod phantom;
pub mod split;
pub mod volume;

pub use dataset::{LoadOptions, SegDataset};
