//! GenSeg's upper level: the exact hypergradient of the segmenter's validation loss through one
//! unrolled segmentation step, with respect to the generator's architecture logits
//! ([`hypergrad`]).
pub mod hypergrad;
#[cfg(test)]
mod tests;
