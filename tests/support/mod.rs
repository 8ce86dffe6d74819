//! Shared helpers of the integration tests.

pub mod conformance;
pub mod http;
pub mod kafka;
pub mod prometheus;
pub mod scenarios;
