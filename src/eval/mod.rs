//! Evaluation: per-case overlap metrics, aggregation and report files.
pub mod metrics;
pub mod report;
