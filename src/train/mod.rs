//! Training: the run loop for all four methods ([`segment`]) over named parts: what a run is
//! asked ([`config`]), what differs per method ([`method`]), what a run folder records
//! ([`record`]) and how a run ends ([`report`]); plus optimisers, losses, the GAN loop and the
//! multi-level hypergradient.
pub mod checkpoint;
pub mod config;
pub mod diffaug;
pub mod gan;
pub mod hypergrad;
pub mod loss;
pub mod method;
pub mod optim;
pub mod record;
pub mod report;
pub mod segment;

pub use config::{Method, TrainConfig};
pub use record::RunSummary;
