//! What both learners, the segmenter and the GAN, stand on: optimisers with checkpointable state
//! ([`optim`]), the segmentation losses ([`loss`]) and resumable checkpoints ([`checkpoint`]).
pub mod checkpoint;
pub mod loss;
pub mod optim;
