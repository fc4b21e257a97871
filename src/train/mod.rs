//! Training a segmenter: the run loop for every method ([`segment`]) over named parts: what a
//! run is asked ([`config`]), what differs per method ([`method`]; `semi`'s unlabelled loss in
//! [`semi`]; genseg's synthetic pairs in [`synthetic`]; its generator's pseudo-labelled pairs in [`teacher`]), what a run folder records ([`record`])
//! and how a run ends ([`report`]).
pub mod batches;
pub mod config;
pub mod method;
pub mod real_augment;
pub mod record;
pub mod report;
pub mod segment;
pub mod semi;
pub mod synthetic;
pub mod teacher;
pub mod trainer;
pub mod upper_optim;

pub use config::{Method, TrainConfig};
pub use record::RunSummary;
