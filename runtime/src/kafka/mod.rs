//! The Kafka backend: a native share-group client (KIP-932), layered like hyper: wire codecs,
//! then connections, then share sessions and membership, then the `Broker` implementation.

pub(crate) mod admin;
pub(crate) mod broker;
pub(crate) mod cluster;
pub(crate) mod config;
pub(crate) mod conn;
pub(crate) mod producer;
pub(crate) mod reader;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod samples;
pub(crate) mod sasl;
pub(crate) mod share;
pub(crate) mod stats;
pub(crate) mod tls;
pub(crate) mod wire;
