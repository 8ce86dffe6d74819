//! Configuration: built-in defaults < attributes in the code < `shareworker.toml` < environment.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::duration::serde_duration;

mod group;
mod handler;
mod http;
mod load;
#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures
mod tests;

pub use group::*;
pub use handler::*;
pub use http::*;
pub(crate) use load::*;
pub use shareworker_core::Secret;

/// The environment variable prefix; nested keys are separated by `__`, as in
/// `SHAREWORKER_HANDLERS__SEND_EMAIL__CONCURRENCY=8`.
pub const ENV_PREFIX: &str = "SHAREWORKER_";

/// The file read when present, in the working directory or the nearest of its parents;
/// `SHAREWORKER_CONFIG` names another, which must exist.
pub const DEFAULT_FILE: &str = "shareworker.toml";

/// The environment variable that names the configuration file instead of [`DEFAULT_FILE`].
const CONFIG_VAR: &str = "SHAREWORKER_CONFIG";

/// The whole configuration of a worker.
///
/// Every key can be set in `shareworker.toml` or as `SHAREWORKER_<KEY>` in the environment;
/// per-handler keys live under `handlers.<handler name>`.
///
/// ```toml
/// broker = "embedded"
/// concurrency = 512
/// shutdown_grace = "30s"
///
/// [handlers.send_email]
/// concurrency = 8
/// max_attempts = 3
/// backoff = { initial = "1s", max = "1m" }
///
/// [groups.send_email]              # the handler's share group (its name by default)
/// start_from = "earliest"
/// ```
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Which broker to use: `embedded` (default) or `kafka://host:port[,host:port...]`.
    pub broker: String,
    /// The most handlers running at once in this process, over all handlers (default 512).
    pub concurrency: u32,
    /// How long in-flight handlers may go on after a shutdown signal (default 30 s).
    #[serde(with = "serde_duration")]
    pub shutdown_grace: Duration,
    /// The longest a handler may run on one delivery, counted from its start, before it is
    /// cancelled and its record released (default 1 h).
    #[serde(with = "serde_duration")]
    pub max_lease: Duration,
    /// Settings of the embedded broker.
    pub embedded: EmbeddedConfig,
    /// The HTTP endpoint: `/metrics`, `/healthz`, `/readyz` (key `http`).
    #[serde(default)]
    pub http: HttpConfig,
    /// The replica-count hint `shareworker_desired_replicas` (key `autoscale`).
    #[serde(default)]
    pub autoscale: crate::autoscale::AutoscaleConfig,
    /// Logging (key `log`).
    #[serde(default)]
    pub log: LogConfig,
    /// Settings of the Kafka client: TLS and SASL (see [`KafkaConfig`](crate::kafka::KafkaConfig)).
    #[serde(default)]
    #[cfg(feature = "kafka")]
    pub kafka: crate::kafka::KafkaConfig,
    /// The handlers this process runs, by name (default: every handler of the binary). One
    /// binary, several deployments: `handlers_enabled = ["send_email"]`, or
    /// `SHAREWORKER_HANDLERS_ENABLED=send_email,resize`, or `--handlers send_email` on the
    /// command line of a `#[shareworker::main]` binary, which wins. Settings under `handlers`
    /// for the others are still checked and accepted.
    #[serde(default, deserialize_with = "names_or_list")]
    pub handlers_enabled: Option<Vec<String>>,
    /// Settings per handler, by handler name.
    pub handlers: BTreeMap<String, HandlerConfig>,
    /// Share-group configs the worker sets on the broker when it starts, by group name (key
    /// `groups.<group>`; see [`GroupSettings`]). Only groups of this binary's handlers.
    #[serde(default)]
    pub groups: BTreeMap<String, GroupSettings>,
}

/// Settings of the embedded broker (key `embedded`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EmbeddedConfig {
    /// Partitions of topics created on first use (default 1).
    pub partitions: i32,
    /// Where new groups start: `earliest` (default here, so jobs enqueued before the worker
    /// starts are seen) or `latest`.
    pub start_from: StartFromConfig,
    /// How long an acquisition lock lasts (default 30 s, as Kafka).
    #[serde(with = "serde_duration")]
    pub lock_duration: Duration,
    /// Deliveries after which a record is archived (default 5, range 2 to 10, as Kafka).
    pub delivery_count_limit: u16,
    /// The largest record accepted, in bytes of key, value and headers (default 1048576 = 1 MiB,
    /// Kafka's `max.message.bytes`). Enqueueing a larger one fails with an error for which
    /// [`Error::is_record_too_large`](crate::Error::is_record_too_large) is true, as it would
    /// on Kafka.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
}

fn default_max_message_bytes() -> usize {
    crate::embedded::DEFAULT_MAX_MESSAGE_BYTES
}

/// Logging (key `log`), used by [`init_tracing`](crate::init_tracing) and `#[shareworker::main]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LogConfig {
    /// `text` (default, for people) or `json` (one object per line, for log collectors);
    /// `SHAREWORKER_LOG__FORMAT=json`.
    pub format: LogFormat,
}

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the job's span fields (handler, topic, partition,
    /// offset, attempt).
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            broker: "embedded".into(),
            concurrency: 512,
            shutdown_grace: Duration::from_secs(30),
            max_lease: Duration::from_secs(3600),
            embedded: EmbeddedConfig {
                partitions: 1,
                start_from: StartFromConfig::Earliest,
                lock_duration: Duration::from_secs(30),
                delivery_count_limit: 5,
                max_message_bytes: default_max_message_bytes(),
            },
            http: HttpConfig::default(),
            autoscale: crate::autoscale::AutoscaleConfig::default(),
            log: LogConfig::default(),
            #[cfg(feature = "kafka")]
            kafka: crate::kafka::KafkaConfig::default(),
            handlers_enabled: None,
            handlers: BTreeMap::new(),
            groups: BTreeMap::new(),
        }
    }
}

impl Config {
    /// The configuration as a worker without code would see it: the built-in defaults, then
    /// `file` (default: the file `SHAREWORKER_CONFIG` names, else `shareworker.toml` if
    /// present), then `SHAREWORKER_*`. Tools that must reach the same broker as the worker (the
    /// `shareworker` CLI) read it. Handler sections are read with the topic they name, or their
    /// own name when they name none (the topic comes from the code).
    ///
    /// ```no_run
    /// let config = shareworker::Config::load(None)?;
    /// println!("the worker's broker: {}", config.broker);
    /// # Ok::<(), shareworker::Error>(())
    /// ```
    ///
    /// # Errors
    /// When `file`, or the file `SHAREWORKER_CONFIG` names, does not exist (only the default
    /// `shareworker.toml` may be absent); with the key's name and what is allowed when a value
    /// is bad.
    pub fn load(file: Option<&Path>) -> Result<Config, Error> {
        let sources = match file {
            Some(f) => Sources::File(f.to_owned()),
            None => Sources::Standard,
        };
        let layered = with_file_and_env(Figment::new(), sources.file()?.as_deref());
        let names: Vec<(String, String)> = layered
            .extract_inner::<figment::value::Dict>("handlers")
            .map(|dict| {
                dict.into_iter()
                    .map(|(name, value)| {
                        let topic = value
                            .find_ref("topic")
                            .and_then(|t| t.as_str())
                            .map_or_else(|| name.clone(), str::to_owned);
                        (name, topic)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let none = HandlerOverrides::default();
        let declared: Vec<Declared<'_>> = names
            .iter()
            .map(|(name, topic)| Declared {
                name,
                topic,
                overrides: &none,
            })
            .collect();
        load(&Config::default(), &declared, &sources)
    }
}
