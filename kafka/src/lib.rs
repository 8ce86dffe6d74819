#![doc = include_str!("../README.md")]
//!
//! Inside, layered like hyper: wire codecs, then connections, then share sessions and
//! membership, then the [`Broker`] implementation ([`KafkaBroker`]). From the bottom: `config`
//! (the `[kafka]` settings) and `client` (a client's settings, ready to use: bootstrap,
//! timeouts, a TLS client, SASL credentials); `transport` (TCP and TLS, set up before a
//! connection exists); `conn` (one pipelined connection on a ready transport: API versions,
//! SASL, requests); `cluster` (metadata and one connection per broker); then `share`,
//! `producer`, `admin`, `reader`; and `broker` (`KafkaBroker`) on top. Each module imports only
//! from below it.

pub(crate) mod admin;
mod broker;
pub(crate) mod client;
pub(crate) mod cluster;
mod config;
pub(crate) mod conn;
mod error;
pub(crate) mod producer;
pub(crate) mod reader;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod samples;
pub(crate) mod sasl;
pub(crate) mod share;
pub(crate) mod stats;
pub(crate) mod tls;
pub(crate) mod transport;
pub(crate) mod wire;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzzing.rs"]
pub mod __fuzz;

pub use broker::KafkaBroker;
#[doc(hidden)]
pub use config::raw_env_credentials;
pub use config::{KafkaConfig, SaslMechanism, SecurityProtocol};
pub(crate) use error::KafkaError;
pub use shareworker_core;
#[doc(no_inline)]
pub use shareworker_core::{
    AckKind, Broker, BrokerAdmin, Delivery, Error, GroupLimits, Header, Headers, Member,
    OutgoingRecord, Produced, RecordId, Secret, SettleResult, StartFrom,
};
