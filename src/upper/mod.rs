//! GenSeg's upper level: the exact hypergradient of the segmenter's validation loss through one
//! unrolled segmentation step, with respect to the generator's architecture logits
//! ([`hypergrad`]).
pub mod hypergrad;
use serde::{Deserialize, Serialize};

/// GenSeg's upper-level variables: what the segmenter's validation loss moves through the
/// unrolled segmentation step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum UpperTarget {
    /// The mixed ops' architecture logits (the paper's upper level).
    #[default]
    Alpha,
    /// The generator's decoder (up-sampling convolutions and their BatchNorm affine weights),
    /// moved by the hypergradient beside the GAN loss, so the images are pulled towards what
    /// helps the segmenter while the GAN keeps them realistic.
    Generator,
    /// Both.
    Both,
}

impl UpperTarget {
    pub fn moves_alpha(self) -> bool {
        matches!(self, UpperTarget::Alpha | UpperTarget::Both)
    }

    pub fn moves_generator(self) -> bool {
        matches!(self, UpperTarget::Generator | UpperTarget::Both)
    }
}
