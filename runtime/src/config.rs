//! Configuration: built-in defaults < attributes in the code < `shareworker.toml` < environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;
use crate::duration::{serde_duration, serde_opt_duration, serde_opt_duration_or_off};

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
    #[cfg(feature = "kafka")]
    pub kafka: crate::KafkaConfig,
    /// The handlers this process runs, by name (default: every handler of the binary). One
    /// binary, several deployments: `handlers_enabled = ["send_email"]`, or
    /// `SHAREWORKER_HANDLERS_ENABLED=send_email,resize`, or `--handlers send_email` on the
    /// command line of a `#[shareworker::main]` binary, which wins. Settings under `handlers`
    /// for the others are still checked and accepted.
    #[serde(default, deserialize_with = "names_or_list")]
    pub handlers_enabled: Option<Vec<String>>,
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
/// `/healthz`, readiness at `/readyz`, and the operator routes `/status` and `/admin/...` (see
/// [`shareworker::admin`](crate::admin)). It starts with [`Worker::run`](crate::Worker::run) and
/// stops when the worker has stopped.
///
/// ```toml
/// [http]
/// address = "0.0.0.0:9464"   # SHAREWORKER_HTTP__ADDRESS
/// enabled = true             # SHAREWORKER_HTTP__ENABLED=false turns it off
/// admin = true               # the routes that change things: enqueue, replay, discard, group configs
/// admin_token_file = "/run/secrets/shareworker-admin-token"  # or SHAREWORKER_HTTP__ADMIN_TOKEN
/// admin_address = "127.0.0.1:9465"  # optional: /status and /admin/... on their own listener
/// ```
///
/// # The admin token
/// The routes that change things answer only a request that carries `Authorization: Bearer
/// <token>` with the token configured here, compared in constant time. Without a token they stay
/// off even with `admin = true`, and the worker says so at start. Give the token through the
/// environment (`SHAREWORKER_HTTP__ADMIN_TOKEN`) or a file (`admin_token_file`, such as a mounted
/// Kubernetes secret; surrounding whitespace is dropped), not in `shareworker.toml`: it is never
/// logged, and `Debug` prints `***`. With `admin_protect_reads = true` the read-only routes
/// (`/status`, the dead-letter listing, group configs, dry-run replays) need the token too.
///
/// # Limits
/// The endpoint bounds what a client can hold: `max_connections` open connections (more are
/// closed at once), request headers of at most 16 KiB, request bodies of at most
/// `max_body_bytes`, and `read_timeout` to send a request's headers or body (a slow or idle
/// client is disconnected). Malformed requests are answered 400 and logged at `debug` only.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Whether to serve at all (default true).
    pub enabled: bool,
    /// Where to listen (default `0.0.0.0:9464`; port 0 picks a free port, see
    /// [`Worker::http_address`](crate::Worker::http_address)).
    pub address: String,
    /// Whether the routes that change things (enqueue, dead-letter replay and discard, group
    /// configs) are served, given an admin token; read-only routes always are (default false).
    pub admin: bool,
    /// The bearer token the admin routes ask for (`SHAREWORKER_HTTP__ADMIN_TOKEN`), at least 16
    /// characters. Set this or `admin_token_file`, not both.
    pub admin_token: Option<crate::Secret>,
    /// A file holding the admin token (read once at start; surrounding whitespace is dropped).
    pub admin_token_file: Option<PathBuf>,
    /// Whether the read-only routes (`/status`, `GET /admin/dlq`, `GET /admin/groups/G/config`,
    /// dry-run replays) need the admin token too (default false). Needs a token.
    pub admin_protect_reads: bool,
    /// Serve `/status` and `/admin/...` on this address instead of `address` (for example
    /// loopback, away from the port Prometheus scrapes); default: on `address`.
    pub admin_address: Option<String>,
    /// Open connections at most; a connection past it is closed at once (default 256).
    pub max_connections: u32,
    /// How long a client may take to send a request's headers, or its body (default 10 s);
    /// an idle kept-alive connection is closed after it too.
    #[serde(with = "serde_duration")]
    pub read_timeout: Duration,
    /// The largest request body taken, in bytes (default 1 MiB).
    pub max_body_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            address: "0.0.0.0:9464".into(),
            admin: false,
            admin_token: None,
            admin_token_file: None,
            admin_protect_reads: false,
            admin_address: None,
            max_connections: 256,
            read_timeout: Duration::from_secs(10),
            max_body_bytes: 1 << 20,
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
    /// Records acquired ahead of a free slot, so a finished job is followed at once by the next.
    /// They hold a lock (renewed) but no slot. `"auto"` (the default) sizes it from the measured
    /// completion rate and fetch round trip; a number fixes it.
    pub prefetch: Prefetch,
    /// The most bytes (keys, values and headers) an automatic prefetch holds ahead (default
    /// 32 MiB). A fixed `prefetch` ignores it.
    pub prefetch_max_bytes: u64,
    /// The most records an automatic prefetch holds ahead (default 10000). A fixed `prefetch`
    /// ignores it.
    pub prefetch_max_records: u32,
    /// Attempts before a record goes to the dead-letter topic (default: the group's delivery
    /// count limit, 5 on Kafka; never more than that limit).
    pub max_attempts: Option<u16>,
    /// Delays between attempts.
    pub backoff: BackoffConfig,
    /// How long one attempt may run before it fails (retryable); none by default. `"off"`
    /// removes a timeout set in code.
    #[serde(with = "serde_opt_duration_or_off", default)]
    pub timeout: Option<Duration>,
    /// Where records go after the last attempt: a topic (default `<topic>.dlq`) or `off`.
    pub dead_letter: DeadLetter,
    /// The most records held while waiting out a backoff delay; past it a failed record is
    /// released at once (default 1000, under Kafka's 2000 locks per partition).
    pub max_held: u32,
}

/// How many records a handler acquires ahead of a free slot (key `handlers.<name>.prefetch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Prefetch {
    /// Sized while running: the measured completion rate times the measured fetch round trip,
    /// with headroom, bounded by the lock duration, the group's lock limit per partition and
    /// `prefetch_max_records` / `prefetch_max_bytes` (written `"auto"`).
    #[default]
    Auto,
    /// Exactly this many (a number).
    Fixed(u32),
}

impl Serialize for Prefetch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Prefetch::Auto => s.serialize_str("auto"),
            Prefetch::Fixed(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Prefetch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        let bad = || {
            serde::de::Error::custom("expected \"auto\" or a number of records (0 to 4294967295)")
        };
        match Raw::deserialize(d)? {
            Raw::Number(n) => u32::try_from(n).map(Prefetch::Fixed).map_err(|_| bad()),
            Raw::Text(t) if t.eq_ignore_ascii_case("auto") => Ok(Prefetch::Auto),
            Raw::Text(t) => t
                .trim()
                .parse::<u32>()
                .map(Prefetch::Fixed)
                .map_err(|_| bad()),
        }
    }
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
        self.schedule().base(u32::from(attempt))
    }

    /// The same formula as the runtime's own retry loops use.
    fn schedule(&self) -> crate::broker::retry::Backoff {
        crate::broker::retry::Backoff {
            initial: self.initial,
            max: self.max,
            multiplier: self.multiplier,
            jitter: self.jitter,
        }
    }

    /// The delay after attempt `attempt` failed, with jitter drawn at random.
    pub fn delay(&self, attempt: u16) -> Duration {
        self.delay_with(attempt, fastrand::f64())
    }

    /// The delay after attempt `attempt` failed, with `draw` (from `[0, 1)`) as the jitter's
    /// random number.
    pub(crate) fn delay_with(&self, attempt: u16, draw: f64) -> Duration {
        self.schedule().delay_with(u32::from(attempt), draw)
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
            #[cfg(feature = "kafka")]
            kafka: crate::KafkaConfig::default(),
            handlers_enabled: None,
            handlers: BTreeMap::new(),
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

impl HandlerConfig {
    /// The built-in defaults of a handler named `name` on `topic`.
    pub fn defaults(name: &str, topic: &str) -> Self {
        Self {
            topic: topic.to_owned(),
            group: name.to_owned(),
            concurrency: 32,
            prefetch: Prefetch::Auto,
            prefetch_max_bytes: 32 << 20,
            prefetch_max_records: 10_000,
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
        Sources::Standard | Sources::File(_) => {
            with_file_and_env(figment, sources.file()?.as_deref())
        }
        Sources::Custom(custom) => figment.merge((**custom).clone()),
    };
    check_handler_names(&figment, handlers)?;
    let config: Config = figment.extract().map_err(config_error)?;
    validate(&config)?;
    Ok(config)
}

impl Sources {
    /// The configuration file these sources read, if any: a file named explicitly (the
    /// builder's, the CLI's `--config`, or `SHAREWORKER_CONFIG`) must exist; the default
    /// `shareworker.toml` is looked for in the working directory and its parents, and may be
    /// absent.
    ///
    /// # Errors
    /// When a file named explicitly does not exist or is not a file.
    pub(crate) fn file(&self) -> Result<Option<PathBuf>, Error> {
        match self {
            Sources::CodeOnly | Sources::Custom(_) => Ok(None),
            Sources::File(path) => named_file(path, "the configuration file").map(Some),
            Sources::Standard => match std::env::var_os(CONFIG_VAR).filter(|v| !v.is_empty()) {
                Some(path) => named_file(
                    Path::new(&path),
                    &format!("the configuration file named by {CONFIG_VAR}"),
                )
                .map(Some),
                None => Ok(default_file()),
            },
        }
    }

    /// Where the configuration comes from, for the log line at start.
    pub(crate) fn describe(&self, file: Option<&Path>) -> String {
        let env = || {
            let mut names: Vec<String> = std::env::vars_os()
                .filter_map(|(k, _)| k.into_string().ok())
                .filter(|k| k.starts_with(ENV_PREFIX) && k != CONFIG_VAR)
                .collect();
            names.sort();
            if names.is_empty() {
                "no SHAREWORKER_* variables".to_owned()
            } else {
                names.join(", ")
            }
        };
        match (self, file) {
            (Sources::CodeOnly, _) => "the code only (no file, no environment)".to_owned(),
            (Sources::Custom(_), _) => "a figment given in the code".to_owned(),
            (_, Some(f)) => format!("{}, then {}", f.display(), env()),
            (_, None) => format!("no {DEFAULT_FILE} (defaults and code), then {}", env()),
        }
    }
}

/// `path`, checked to be an existing file; `what` starts the error message.
fn named_file(path: &Path, what: &str) -> Result<PathBuf, Error> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(path.to_owned()),
        Ok(_) => Err(Error::config(format!(
            "{what} `{}` is not a file",
            path.display()
        ))),
        Err(e) => {
            let cwd = std::env::current_dir()
                .map_or_else(|_| "?".to_owned(), |d| d.display().to_string());
            Err(Error::config(format!(
                "{what} `{}` cannot be read ({e}; the working directory is {cwd}): a configuration file named explicitly must exist; name none to run on {DEFAULT_FILE} if present, else the defaults",
                path.display()
            )))
        }
    }
}

/// Why `broker = "kafka://..."` does not work in a build without the `kafka` feature.
#[cfg(not(feature = "kafka"))]
pub(crate) const NO_KAFKA: &str = "this build of shareworker has no Kafka client: enable the cargo feature `kafka` of the `shareworker` crate (on by default) to use kafka://host:port";

/// `shareworker.toml` in the working directory or the nearest of its parents.
fn default_file() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|d| d.join(DEFAULT_FILE))
        .find(|f| f.is_file())
}

fn with_file_and_env(figment: Figment, file: Option<&Path>) -> Figment {
    let figment = match file {
        Some(f) => figment.merge(Toml::file_exact(f)),
        None => figment,
    };
    let figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__").ignore(&["config"]));
    #[cfg(feature = "kafka")]
    let figment = figment.merge(shareworker_kafka::raw_env_credentials(ENV_PREFIX));
    figment
}

/// `log.format` from `shareworker.toml` (or `$SHAREWORKER_CONFIG`) and the environment, read
/// before the rest of the configuration so the first log lines already have the right format.
/// A bad value, or a missing file, is reported later, when the whole configuration is loaded.
pub(crate) fn standard_log_format() -> LogFormat {
    let file = Sources::Standard.file().ok().flatten();
    with_file_and_env(Figment::new(), file.as_deref())
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

/// Names in `a,b` or `a, b`, without empty ones.
pub(crate) fn split_names(list: &str) -> impl Iterator<Item = String> + '_ {
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
}

/// A list of names, or one string of comma-separated names (as the environment gives it).
fn names_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Names {
        List(Vec<String>),
        One(String),
    }
    Ok(match Option::<Names>::deserialize(d)? {
        None => None,
        Some(Names::List(l)) => Some(l.iter().flat_map(|n| split_names(n)).collect()),
        Some(Names::One(s)) => Some(split_names(&s).collect()),
    })
}

/// The shortest admin token taken, in characters.
pub(crate) const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Checks the `http` settings that need no I/O (the token file is read when the worker starts).
fn validate_http(http: &HttpConfig) -> Result<(), Error> {
    let bad = |key: &str, what: String| Err(Error::config(format!("`http.{key}`: {what}")));
    if !http.enabled {
        return Ok(());
    }
    if let Some(a) = &http.admin_address
        && a.parse::<std::net::SocketAddr>().is_err()
    {
        return bad(
            "admin_address",
            format!("must be an IP address and port such as 127.0.0.1:9465, got `{a}`"),
        );
    }
    if http.admin_token.is_some() && http.admin_token_file.is_some() {
        return bad(
            "admin_token",
            "set `http.admin_token` or `http.admin_token_file`, not both".into(),
        );
    }
    if let Some(t) = &http.admin_token {
        check_admin_token("http.admin_token", t.expose())?;
    }
    if http.admin_protect_reads && http.admin_token.is_none() && http.admin_token_file.is_none() {
        return bad(
            "admin_protect_reads",
            "needs an admin token: set `http.admin_token` (SHAREWORKER_HTTP__ADMIN_TOKEN) or \
             `http.admin_token_file`"
                .into(),
        );
    }
    if http.max_connections == 0 {
        return bad("max_connections", "must be at least 1, got 0".into());
    }
    if http.read_timeout < Duration::from_secs(1) || http.read_timeout > Duration::from_secs(3600) {
        return bad(
            "read_timeout",
            format!("must be between 1s and 1h, got {:?}", http.read_timeout),
        );
    }
    if http.max_body_bytes < 1024 {
        return bad(
            "max_body_bytes",
            format!("must be at least 1024, got {}", http.max_body_bytes),
        );
    }
    Ok(())
}

/// An admin token (already trimmed by the caller where it came from a file) is long enough;
/// the error names `key`, never the token.
pub(crate) fn check_admin_token(key: &str, token: &str) -> Result<(), Error> {
    let len = token.trim().chars().count();
    if len < MIN_ADMIN_TOKEN_LEN {
        return Err(Error::config(format!(
            "`{key}`: the admin token must be at least {MIN_ADMIN_TOKEN_LEN} characters, got \
             {len}; use a random string, such as the output of `openssl rand -hex 32`"
        )));
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
    validate_http(&config.http)?;
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
    #[cfg(feature = "kafka")]
    config.kafka.validate_for(&config.broker)?;
    #[cfg(not(feature = "kafka"))]
    if config.broker.starts_with("kafka://") {
        return bad("broker".into(), NO_KAFKA.into());
    }
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
        if h.prefetch_max_records == 0 {
            return bad(k("prefetch_max_records"), "must be at least 1".into());
        }
        if h.prefetch_max_bytes == 0 {
            return bad(k("prefetch_max_bytes"), "must be at least 1".into());
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

    #[cfg(not(feature = "kafka"))]
    #[test]
    fn a_kafka_broker_without_the_kafka_feature_is_an_error_naming_the_feature() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SHAREWORKER_BROKER", "kafka://127.0.0.1:9092");
            let err = Config::load(None).expect_err("this build has no Kafka client");
            let text = err.to_string();
            assert!(err.is_config(), "{err:?}");
            assert!(text.contains("`broker`"), "{text}");
            assert!(text.contains("cargo feature `kafka`"), "{text}");
            Ok(())
        });
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
            assert_eq!(
                h.prefetch,
                Prefetch::Auto,
                "untouched keys keep their default"
            );

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
    fn a_file_named_explicitly_must_exist_the_default_may_be_absent() {
        figment::Jail::expect_with(|jail| {
            let code = HandlerOverrides::default();
            // No shareworker.toml: defaults.
            let c = load(&Config::default(), &declared(&code), &Sources::Standard)
                .map_err(|e| e.to_string())?;
            assert_eq!(c.broker, "embedded");
            assert_eq!(Sources::Standard.file().map_err(|e| e.to_string())?, None);

            // SHAREWORKER_CONFIG naming a missing file is an error, not the defaults.
            jail.set_env("SHAREWORKER_CONFIG", "nope.toml");
            let err = load(&Config::default(), &declared(&code), &Sources::Standard)
                .expect_err("a missing file named by SHAREWORKER_CONFIG");
            let text = err.to_string();
            assert!(
                text.contains(
                    "the configuration file named by SHAREWORKER_CONFIG `nope.toml` cannot be read"
                ),
                "{text}"
            );
            assert!(text.contains("must exist"), "{text}");
            let err = Config::load(None).expect_err("Config::load reads SHAREWORKER_CONFIG too");
            assert!(err.to_string().contains("nope.toml"), "{err}");
            assert_eq!(
                standard_log_format(),
                LogFormat::Text,
                "the early read goes on"
            );

            // Once it exists, it is read.
            jail.create_file("nope.toml", "[embedded]\npartitions = 7")?;
            let c = load(&Config::default(), &declared(&code), &Sources::Standard)
                .map_err(|e| e.to_string())?;
            assert_eq!(c.embedded.partitions, 7);
            jail.clear_env();

            // A file given in the code (or the CLI's --config) must exist too; a directory is
            // not a file.
            let missing = Sources::File(PathBuf::from("missing.toml"));
            let err = load(&Config::default(), &declared(&code), &missing)
                .expect_err("a missing explicit file");
            assert!(
                err.to_string().contains("`missing.toml` cannot be read"),
                "{err}"
            );
            let err = Config::load(Some(Path::new("missing.toml"))).expect_err("Config::load");
            assert!(err.to_string().contains("missing.toml"), "{err}");
            std::fs::create_dir("conf.d").map_err(|e| e.to_string())?;
            let err = Config::load(Some(Path::new("conf.d"))).expect_err("a directory");
            assert!(err.to_string().contains("is not a file"), "{err}");

            // The default file is found in a parent directory too, and named in the log.
            jail.create_file("shareworker.toml", "concurrency = 7")?;
            std::env::set_current_dir("conf.d").map_err(|e| e.to_string())?;
            let c = load(&Config::default(), &declared(&code), &Sources::Standard)
                .map_err(|e| e.to_string())?;
            assert_eq!(c.concurrency, 7);
            let file = Sources::Standard.file().map_err(|e| e.to_string())?;
            let said = Sources::Standard.describe(file.as_deref());
            assert!(said.contains("shareworker.toml, then"), "{said}");
            Ok(())
        });
    }

    #[test]
    fn a_timeout_set_in_code_can_be_turned_off() {
        figment::Jail::expect_with(|jail| {
            let code = HandlerOverrides {
                timeout: Some(Duration::from_secs(10)),
                ..HandlerOverrides::default()
            };
            let timeout = || {
                load(&Config::default(), &declared(&code), &Sources::Standard)
                    .map(|c| c.handlers["send_email"].timeout)
                    .map_err(|e| e.to_string())
            };
            assert_eq!(timeout()?, Some(Duration::from_secs(10)), "the code's");
            jail.create_file(
                "shareworker.toml",
                "[handlers.send_email]\ntimeout = \"off\"",
            )?;
            assert_eq!(timeout()?, None, "off in the file");
            jail.create_file("shareworker.toml", "")?;
            jail.set_env("SHAREWORKER_HANDLERS__SEND_EMAIL__TIMEOUT", "off");
            assert_eq!(timeout()?, None, "off in the environment");
            jail.set_env("SHAREWORKER_HANDLERS__SEND_EMAIL__TIMEOUT", "3s");
            assert_eq!(timeout()?, Some(Duration::from_secs(3)));
            jail.set_env("SHAREWORKER_HANDLERS__SEND_EMAIL__TIMEOUT", "true");
            let err = timeout().expect_err("true is no duration");
            assert!(err.contains("timeout") && err.contains("\"off\""), "{err}");
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
