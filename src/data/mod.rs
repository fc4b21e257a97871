//! Data: loading and pairing image/mask folders, splits, augmentation and the phantom demo set.
pub mod augment;
pub mod dataset;
pub mod image_io;
pub mod nifti_io;
pub mod phantom;
pub mod split;

pub use dataset::{LoadOptions, SegDataset};
