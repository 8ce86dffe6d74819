//! shareworker: a serverless-style job worker runtime on Kafka share groups (KIP-932).
#![doc(html_no_source)]

mod broker;
mod config;
mod definition;
mod duration;
mod embedded;
mod error;
mod job;
#[allow(dead_code)] // wired into the Kafka broker step by step (issue 3)
mod kafka;
mod queue;
pub mod testing;
mod worker;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use broker::{
    AckKind, Broker, Delivery, GroupConfig, GroupLimits, Header, Headers, Member, OutgoingRecord,
    Produced, RecordId, SettleResult, StartFrom, TopicLag,
};
pub use bytes::Bytes;
pub use config::{
    BackoffConfig, Config, DEFAULT_FILE, DeadLetter, ENV_PREFIX, EmbeddedConfig, HandlerConfig,
    StartFromConfig,
};
pub use definition::{HandlerService, InnerService, JobDefinition};
pub use embedded::{EmbeddedBroker, EmbeddedBrokerBuilder};
pub use error::Error;
pub use job::{BoxError, DecodeError, Job, JobError};
pub use queue::{Message, Queue};
pub use shareworker_macros::{job, main};
pub use worker::{
    JobEvent, Outcome, RunSummary, ShutdownHandle, Worker, WorkerBuilder, WorkerStatus,
    dead_letter_headers, init_tracing, run,
};
