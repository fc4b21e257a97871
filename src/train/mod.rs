//! Training: optimisers and losses, the supervised loop for all methods, the GAN loop and the
//! multi-level hypergradient.
pub mod checkpoint;
pub mod gan;
pub mod hypergrad;
pub mod loss;
pub mod optim;
pub mod segment;
