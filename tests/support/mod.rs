//! Shared helpers of the integration tests.

pub mod app;
pub mod brokers;
pub mod conformance;
pub mod http;
pub mod kafka;
pub mod probe;
pub mod prometheus;
pub mod proxy;
pub mod scenarios;
pub mod tally;
