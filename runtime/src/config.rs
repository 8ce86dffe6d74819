//! Configuration: built-in defaults < attributes in the code < `shareworker.toml` < environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;
use crate::duration::{serde_duration, serde_opt_duration};

/// The environment variable prefix; nested keys are separated by `__`, as in
/// `SHAREWORKER_HANDLERS__SEND_EMAIL__CONCURRENCY=8`.
pub const ENV_PREFIX: &str = "SHAREWORKER_";

/// The file read when present, relative to the working directory; `SHAREWORKER_CONFIG` names
/// another.
pub const DEFAULT_FILE: &str = "shareworker.toml";

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
    /// Settings of the Kafka client: TLS and SASL (see [`KafkaConfig`](crate::KafkaConfig)).
    #[serde(default)]
    pub kafka: crate::KafkaConfig,
    /// Settings per handler, by handler name.
    pub handlers: BTreeMap<String, HandlerConfig>,
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

/// The worker's HTTP endpoint (key `http`): Prometheus metrics at `/metrics`, liveness at
/// `/healthz`, readiness at `/readyz`. It starts with [`Worker::run`](crate::Worker::run) and
/// stops when the worker has stopped.
///
/// ```toml
/// [http]
/// address = "0.0.0.0:9464"   # SHAREWORKER_HTTP__ADDRESS
/// enabled = true             # SHAREWORKER_HTTP__ENABLED=false turns it off
/// ```
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Whether to serve at all (default true).
    pub enabled: bool,
    /// Where to listen (default `0.0.0.0:9464`; port 0 picks a free port, see
    /// [`Worker::http_address`](crate::Worker::http_address)).
    pub address: String,
    /// Whether the routes that change things (enqueue, dead-letter replay, group configs) are
    /// served; read-only routes always are (default false).
    pub admin: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            address: "0.0.0.0:9464".into(),
            admin: false,
        }
    }
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

/// `earliest` or `latest`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartFromConfig {
    /// From the start of each partition.
    Earliest,
    /// From the end of each partition.
    Latest,
}

impl From<StartFromConfig> for crate::StartFrom {
    fn from(s: StartFromConfig) -> Self {
        match s {
            StartFromConfig::Earliest => crate::StartFrom::Earliest,
            StartFromConfig::Latest => crate::StartFrom::Latest,
        }
    }
}

/// Settings of one handler (key `handlers.<name>`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HandlerConfig {
    /// The topic the handler reads.
    pub topic: String,
    /// The share group (default: the handler's name).
    pub group: String,
    /// The most jobs of this handler running at once (default 32).
    pub concurrency: u32,
    /// Records acquired ahead of a free slot, so a finished job is followed at once by the next
    /// (default 16). They hold a lock (renewed) but no slot.
    pub prefetch: u32,
    /// Attempts before a record goes to the dead-letter topic (default: the group's delivery
    /// count limit, 5 on Kafka; never more than that limit).
    pub max_attempts: Option<u16>,
    /// Delays between attempts.
    pub backoff: BackoffConfig,
    /// How long one attempt may run before it fails (retryable); none by default.
    #[serde(with = "serde_opt_duration", default)]
    pub timeout: Option<Duration>,
    /// Where records go after the last attempt: a topic (default `<topic>.dlq`) or `off`.
    pub dead_letter: DeadLetter,
    /// The most records held while waiting out a backoff delay; past it a failed record is
    /// released at once (default 1000, under Kafka's 2000 locks per partition).
    pub max_held: u32,
}

/// Exponential backoff: `delay(n) = min(max, initial * multiplier^(n-1))`, minus up to
/// `jitter` of it at random, where `n` is the attempt that failed.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BackoffConfig {
    /// The delay after the first attempt (default 1 s).
    #[serde(with = "serde_duration")]
    pub initial: Duration,
    /// The longest delay (default 5 m).
    #[serde(with = "serde_duration")]
    pub max: Duration,
    /// The factor between consecutive delays (default 2.0, at least 1.0).
    pub multiplier: f64,
    /// The fraction of each delay taken off at random, from 0.0 to 1.0 (default 0.1).
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: 0.1,
        }
    }
}

impl BackoffConfig {
    /// The delay after attempt `attempt` failed, without jitter.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = shareworker::BackoffConfig::default();
    /// assert_eq!(b.base_delay(1), Duration::from_secs(1));
    /// assert_eq!(b.base_delay(3), Duration::from_secs(4));
    /// assert_eq!(b.base_delay(30), Duration::from_secs(300));
    /// ```
    pub fn base_delay(&self, attempt: u16) -> Duration {
        let exp = i32::from(attempt.max(1)) - 1;
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exp);
        let max = self.max.as_secs_f64();
        Duration::from_secs_f64(if secs.is_finite() { secs.min(max) } else { max })
    }

    /// The delay after attempt `attempt` failed, with jitter drawn at random.
    pub fn delay(&self, attempt: u16) -> Duration {
        let base = self.base_delay(attempt);
        base.mul_f64(1.0 - self.jitter * fastrand::f64())
    }
}

/// Where a record goes after its last attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeadLetter {
    /// Produce it to this topic, then reject the original.
    Topic(String),
    /// Only reject it (the broker archives it).
    Off,
}

impl Serialize for DeadLetter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DeadLetter::Topic(t) => s.serialize_str(t),
            DeadLetter::Off => s.serialize_str("off"),
        }
    }
}

impl<'de> Deserialize<'de> for DeadLetter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(false) => Ok(DeadLetter::Off),
            Raw::Text(t) if t == "off" || t == "none" || t == "false" => Ok(DeadLetter::Off),
            Raw::Text(t) if !t.is_empty() => Ok(DeadLetter::Topic(t)),
            _ => Err(serde::de::Error::custom("expected a topic name or \"off\"")),
        }
    }
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
            kafka: crate::KafkaConfig::default(),
            handlers: BTreeMap::new(),
        }
    }
}

impl Config {
    /// The configuration as a worker without code would see it: the built-in defaults, then
    /// `file` (default: `shareworker.toml`, or the file `SHAREWORKER_CONFIG` names, if present),
    /// then `SHAREWORKER_*`. Tools that must reach the same broker as the worker (the
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
    /// With the key's name and what is allowed when a value is bad.
    pub fn load(file: Option<&Path>) -> Result<Config, Error> {
        let sources = match file {
            Some(f) => Sources::File(f.to_owned()),
            None => Sources::Standard,
        };
        let layered = match &sources {
            Sources::File(f) => with_file_and_env(Figment::new(), f),
            _ => {
                let file = std::env::var_os("SHAREWORKER_CONFIG")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_FILE));
                with_file_and_env(Figment::new(), &file)
            }
        };
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

impl HandlerConfig {
    /// The built-in defaults of a handler named `name` on `topic`.
    pub fn defaults(name: &str, topic: &str) -> Self {
        Self {
            topic: topic.to_owned(),
            group: name.to_owned(),
            concurrency: 32,
            prefetch: 16,
            max_attempts: None,
            backoff: BackoffConfig::default(),
            timeout: None,
            dead_letter: DeadLetter::Topic(format!("{topic}.dlq")),
            max_held: 1000,
        }
    }
}

/// Settings written in the code (`#[job(...)]` or [`JobDefinition`](crate::JobDefinition)
/// methods); `None` keeps the default.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub(crate) struct HandlerOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) concurrency: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) prefetch: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_attempts: Option<u16>,
    #[serde(skip_serializing_if = "BackoffOverrides::is_empty")]
    pub(crate) backoff: BackoffOverrides,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serde_opt_duration::serialize"
    )]
    pub(crate) timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dead_letter: Option<DeadLetter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_held: Option<u32>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub(crate) struct BackoffOverrides {
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serde_opt_duration::serialize"
    )]
    pub(crate) initial: Option<Duration>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serde_opt_duration::serialize"
    )]
    pub(crate) max: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) multiplier: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) jitter: Option<f64>,
}

impl BackoffOverrides {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Where configuration comes from, beyond the defaults and the code.
#[derive(Clone, Debug)]
pub(crate) enum Sources {
    /// `shareworker.toml` (or `$SHAREWORKER_CONFIG`) and `SHAREWORKER_*`.
    Standard,
    /// Only what the code says (tests).
    CodeOnly,
    /// A given file, then the environment.
    File(PathBuf),
    /// A figment the user assembled, layered over defaults and code.
    Custom(Box<Figment>),
}

/// A handler as the configuration needs to know it.
pub(crate) struct Declared<'a> {
    pub(crate) name: &'a str,
    pub(crate) topic: &'a str,
    pub(crate) overrides: &'a HandlerOverrides,
}

/// Loads and checks the configuration for these handlers.
pub(crate) fn load(
    base: &Config,
    handlers: &[Declared<'_>],
    sources: &Sources,
) -> Result<Config, Error> {
    let mut defaults = base.clone();
    defaults.handlers.clear();
    let mut code: BTreeMap<String, &HandlerOverrides> = BTreeMap::new();
    for h in handlers {
        defaults
            .handlers
            .insert(h.name.to_owned(), HandlerConfig::defaults(h.name, h.topic));
        code.insert(h.name.to_owned(), h.overrides);
    }
    #[derive(Serialize)]
    struct CodeLayer<'a> {
        handlers: BTreeMap<String, &'a HandlerOverrides>,
    }
    let mut figment = Figment::from(Serialized::defaults(&defaults))
        .merge(Serialized::defaults(CodeLayer { handlers: code }));
    figment = match sources {
        Sources::CodeOnly => figment,
        Sources::Standard => {
            let file = std::env::var_os("SHAREWORKER_CONFIG")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_FILE));
            with_file_and_env(figment, &file)
        }
        Sources::File(path) => with_file_and_env(figment, path),
        Sources::Custom(custom) => figment.merge((**custom).clone()),
    };
    check_handler_names(&figment, handlers)?;
    let config: Config = figment.extract().map_err(config_error)?;
    validate(&config)?;
    Ok(config)
}

fn with_file_and_env(figment: Figment, file: &Path) -> Figment {
    figment
        .merge(Toml::file(file))
        .merge(Env::prefixed(ENV_PREFIX).split("__").ignore(&["config"]))
        .merge(crate::kafka::config::raw_env_credentials(ENV_PREFIX))
}

/// `log.format` from `shareworker.toml` (or `$SHAREWORKER_CONFIG`) and the environment, read
/// before the rest of the configuration so the first log lines already have the right format.
/// A bad value is reported later, when the whole configuration is loaded.
pub(crate) fn standard_log_format() -> LogFormat {
    let file = std::env::var_os("SHAREWORKER_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_FILE));
    with_file_and_env(Figment::new(), &file)
        .extract_inner::<LogFormat>("log.format")
        .unwrap_or_default()
}

fn config_error(e: figment::Error) -> Error {
    let mut msgs = Vec::new();
    for err in e {
        let key = if err.path.is_empty() {
            String::new()
        } else {
            format!("`{}`: ", err.path.join("."))
        };
        let source = match &err.metadata {
            Some(m) => match &err.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                Some(src) => format!(" (from {} {src})", m.name),
                None => format!(" (from {})", m.name),
            },
            None => String::new(),
        };
        msgs.push(format!("{key}{}{source}", err.kind));
    }
    Error::config(format!("invalid configuration: {}", msgs.join("; ")))
}

fn check_handler_names(figment: &Figment, handlers: &[Declared<'_>]) -> Result<(), Error> {
    let Ok(dict) = figment.extract_inner::<figment::value::Dict>("handlers") else {
        return Ok(());
    };
    for name in dict.keys() {
        if !handlers.iter().any(|h| h.name == name) {
            let known: Vec<&str> = handlers.iter().map(|h| h.name).collect();
            return Err(Error::config(format!(
                "`handlers.{name}`: this worker has no handler named `{name}`; its handlers are: {}",
                if known.is_empty() {
                    "(none)".to_owned()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    Ok(())
}

/// Checks ranges; each message names the key and what is allowed.
pub(crate) fn validate(config: &Config) -> Result<(), Error> {
    let bad = |key: String, what: String| Err(Error::config(format!("`{key}`: {what}")));
    if config.concurrency == 0 {
        return bad("concurrency".into(), "must be at least 1, got 0".into());
    }
    if config.shutdown_grace > Duration::from_secs(24 * 3600) {
        return bad("shutdown_grace".into(), "must be at most 24h".into());
    }
    if config.max_lease < Duration::from_secs(1) {
        return bad("max_lease".into(), "must be at least 1s".into());
    }
    if config.http.enabled && config.http.address.parse::<std::net::SocketAddr>().is_err() {
        return bad(
            "http.address".into(),
            format!(
                "must be an IP address and port such as 0.0.0.0:9464, got `{}`",
                config.http.address
            ),
        );
    }
    if let Err(e) = config.autoscale.validate() {
        return Err(Error::config(e));
    }
    if config.embedded.partitions < 1 {
        return bad(
            "embedded.partitions".into(),
            format!("must be at least 1, got {}", config.embedded.partitions),
        );
    }
    if config.embedded.max_message_bytes == 0 {
        return bad(
            "embedded.max_message_bytes".into(),
            "must be at least 1 (bytes), got 0".into(),
        );
    }
    if !(config.broker == "embedded" || config.broker.starts_with("kafka://")) {
        return bad(
            "broker".into(),
            format!(
                "`{}` is not a broker; use \"embedded\" or \"kafka://host:port[,host:port...]\"",
                config.broker
            ),
        );
    }
    config.kafka.validate_for(&config.broker)?;
    for (name, h) in &config.handlers {
        let k = |field: &str| format!("handlers.{name}.{field}");
        if h.topic.is_empty() {
            return bad(k("topic"), "must not be empty".into());
        }
        if h.group.is_empty() {
            return bad(k("group"), "must not be empty".into());
        }
        if h.concurrency == 0 {
            return bad(k("concurrency"), "must be at least 1, got 0".into());
        }
        if h.max_attempts == Some(0) {
            return bad(k("max_attempts"), "must be at least 1, got 0".into());
        }
        if !(h.backoff.multiplier >= 1.0 && h.backoff.multiplier.is_finite()) {
            return bad(
                k("backoff.multiplier"),
                format!(
                    "must be a number of at least 1.0, got {}",
                    h.backoff.multiplier
                ),
            );
        }
        if !(0.0..=1.0).contains(&h.backoff.jitter) {
            return bad(
                k("backoff.jitter"),
                format!("must be between 0.0 and 1.0, got {}", h.backoff.jitter),
            );
        }
        if h.backoff.initial > h.backoff.max {
            return bad(
                k("backoff.initial"),
                format!(
                    "must not exceed backoff.max ({} > {})",
                    crate::duration::format(h.backoff.initial),
                    crate::duration::format(h.backoff.max)
                ),
            );
        }
        if h.timeout.is_some_and(|t| t.is_zero()) {
            return bad(k("timeout"), "must be more than 0".into());
        }
        if let DeadLetter::Topic(t) = &h.dead_letter
            && *t == h.topic
        {
            return bad(
                k("dead_letter"),
                "must differ from the handler's own topic".into(),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures
mod tests {
    use super::*;

    fn declared<'a>(o: &'a HandlerOverrides) -> Vec<Declared<'a>> {
        vec![Declared {
            name: "send_email",
            topic: "emails",
            overrides: o,
        }]
    }

    #[test]
    fn layers_apply_in_order_defaults_code_file_env() {
        figment::Jail::expect_with(|jail| {
            let code = HandlerOverrides {
                concurrency: Some(4),
                max_attempts: Some(3),
                timeout: Some(Duration::from_secs(10)),
                ..HandlerOverrides::default()
            };
            // Defaults and code only.
            let c = load(&Config::default(), &declared(&code), &Sources::Standard)
                .map_err(|e| e.to_string())?;
            let h = &c.handlers["send_email"];
            assert_eq!(h.concurrency, 4, "code beats defaults");
            assert_eq!(
                h.group, "send_email",
                "group defaults to the handler's name"
            );
            assert_eq!(h.dead_letter, DeadLetter::Topic("emails.dlq".into()));
            assert_eq!(h.prefetch, 16, "untouched keys keep their default");

            // The file beats the code.
            jail.create_file(
                "shareworker.toml",
                r#"
                concurrency = 64
                [handlers.send_email]
                concurrency = 6
                timeout = "2m"
                backoff = { initial = "250ms" }
                "#,
            )?;
            let c = load(&Config::default(), &declared(&code), &Sources::Standard)
                .map_err(|e| e.to_string())?;
            let h = &c.handlers["send_email"];
            assert_eq!(c.concurrency, 64);
            assert_eq!(h.concurrency, 6, "file beats code");
            assert_eq!(h.timeout, Some(Duration::from_secs(120)));
            assert_eq!(h.backoff.initial, Duration::from_millis(250));
            assert_eq!(
                h.backoff.max,
                Duration::from_secs(300),
                "nested default kept"
            );
            assert_eq!(
                h.max_attempts,
                Some(3),
                "code value kept where the file is silent"
            );

            // The environment beats the file.
            jail.set_env("SHAREWORKER_HANDLERS__SEND_EMAIL__CONCURRENCY", "9");
            jail.set_env("SHAREWORKER_HANDLERS__SEND_EMAIL__DEAD_LETTER", "off");
            jail.set_env("SHAREWORKER_SHUTDOWN_GRACE", "5s");
            let c = load(&Config::default(), &declared(&code), &Sources::Standard)
                .map_err(|e| e.to_string())?;
            let h = &c.handlers["send_email"];
            assert_eq!(h.concurrency, 9, "env beats file");
            assert_eq!(h.dead_letter, DeadLetter::Off);
            assert_eq!(c.shutdown_grace, Duration::from_secs(5));
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_the_key_and_what_is_allowed() {
        figment::Jail::expect_with(|jail| {
            let code = HandlerOverrides::default();
            let cases = [
                (
                    "[handlers.send_email]\nconcurrency = 0",
                    "handlers.send_email.concurrency",
                    "at least 1",
                ),
                (
                    "[handlers.send_email]\ntimeout = \"soon\"",
                    "handlers.send_email.timeout",
                    "\"30s\"",
                ),
                (
                    "[handlers.send_email]\nconcurency = 3",
                    "concurency",
                    "unknown field",
                ),
                (
                    "[handlers.send_mail]\nconcurrency = 3",
                    "handlers.send_mail",
                    "send_email",
                ),
                (
                    "[handlers.send_email.backoff]\njitter = 1.5",
                    "backoff.jitter",
                    "between 0.0 and 1.0",
                ),
                (
                    "[handlers.send_email.backoff]\nmultiplier = 0.5",
                    "backoff.multiplier",
                    "at least 1.0",
                ),
                ("broker = \"rabbitmq://x\"", "broker", "kafka://"),
                (
                    "[embedded]\nmax_message_bytes = 0",
                    "embedded.max_message_bytes",
                    "at least 1",
                ),
                ("shutdown_grace = 30", "shutdown_grace", "no unit"),
                (
                    "[handlers.send_email]\ndead_letter = \"emails\"",
                    "dead_letter",
                    "differ",
                ),
            ];
            for (file, key, hint) in cases {
                jail.create_file("shareworker.toml", file)?;
                let err = load(&Config::default(), &declared(&code), &Sources::Standard)
                    .expect_err(&format!("tried {file:?}: must be refused"));
                let msg = err.to_string();
                assert!(err.is_config(), "tried {file:?}: {msg}");
                assert!(
                    msg.contains(key),
                    "tried {file:?}: message should name `{key}`: {msg}"
                );
                assert!(
                    msg.contains(hint),
                    "tried {file:?}: message should say `{hint}`: {msg}"
                );
            }
            Ok(())
        });
    }

    #[test]
    fn backoff_follows_the_formula() {
        let b = BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 3.0,
            jitter: 0.5,
        };
        assert_eq!(b.base_delay(1), Duration::from_millis(100));
        assert_eq!(b.base_delay(2), Duration::from_millis(300));
        assert_eq!(b.base_delay(3), Duration::from_millis(900));
        assert_eq!(b.base_delay(4), Duration::from_secs(1));
        for _ in 0..100 {
            let d = b.delay(2);
            assert!(
                d >= Duration::from_millis(150) && d <= Duration::from_millis(300),
                "{d:?}"
            );
        }
    }
}
