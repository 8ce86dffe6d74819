#![doc = include_str!("docs/crate.md")]

pub mod admin;
pub mod autoscale;
pub mod broker;
pub mod codec;
pub mod config;
pub mod dead_letter;
pub mod definition;
mod duration;
pub mod embedded;
pub mod exporter;
mod http;
mod job;
mod limits;
mod logging;
mod logs;
mod metrics;
pub mod queue;
pub mod state;
mod status;
pub mod testing;
pub mod worker;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

// The crate root holds what an application developer uses; the rest lives in its module
// (settings in `config`, the seam for backend authors in `broker`, ...).
pub use config::Config;
pub use definition::JobDefinition;
pub use embedded::EmbeddedBroker;
pub use job::{BoxError, Job, JobError};
pub use queue::Queue;
pub use shareworker_core::Error;
/// The Kafka share-group client (the crate `shareworker-kafka`): [`KafkaBroker`], its
/// [`KafkaConfig`](kafka::KafkaConfig) and security settings, usable without the worker.
#[cfg(feature = "kafka")]
pub use shareworker_kafka as kafka;
#[cfg(feature = "kafka")]
pub use shareworker_kafka::KafkaBroker;
/// Turns an `async fn(Job<T>) -> Result<(), E>` into a job handler.
///
/// ```no_run
/// use shareworker::{Job, JobError};
///
/// #[shareworker::job(topic = "emails", concurrency = 8, max_attempts = 3, timeout = "30s",
///     backoff(initial = "1s", max = "1m", multiplier = 2.0, jitter = 0.1))]
/// async fn send_email(job: Job<String>) -> Result<(), JobError> {
///     println!("to {}", job.payload());
///     Ok(())
/// }
///
/// // The generated `send_email::definition()` is what a hand-assembled worker takes.
/// let def: shareworker::JobDefinition = send_email::definition();
/// assert_eq!(def.topic(), "emails");
/// ```
///
/// Attributes: `topic` (required), `group` (default: the function's name), `concurrency`,
/// `prefetch`, `max_attempts`, `backoff(initial, max, multiplier, jitter)`, `timeout`,
/// `dead_letter` (a topic, or `"off"`). Every one can be changed without recompiling in
/// `shareworker.toml` or `SHAREWORKER_HANDLERS__<NAME>__<KEY>`.
pub use shareworker_macros::job;
/// Generates a `main` that runs every `#[job]` handler of the binary until SIGINT or SIGTERM,
/// after the body (setup) returns.
///
/// ```no_run
/// #[shareworker::job(topic = "emails")]
/// async fn send_email(job: shareworker::Job<String>) -> Result<(), shareworker::JobError> {
///     Ok(())
/// }
///
/// #[shareworker::main]
/// async fn main() {
///     // setup that must happen before the worker starts
/// }
/// ```
pub use shareworker_macros::main;
pub use state::State;
pub use worker::{App, Worker, init_tracing, run};

/// The Rust code of the `#[job]` and `#[main]` docs (in the macros crate, which cannot name
/// this one), compiled as doc-tests here.
#[cfg(doctest)]
#[doc = include_str!("../../macros/src/docs/job.md")]
#[doc = include_str!("../../macros/src/docs/main.md")]
struct MacroDocs;

/// The README's Rust code, compiled as doc-tests so it stays in step with the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
