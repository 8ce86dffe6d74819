//! A handler's settings: concurrency, prefetch, attempts, backoff, dead letters.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::duration::{serde_duration, serde_opt_duration, serde_opt_duration_or_off};

/// `earliest` or `latest`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartFromConfig {
    /// From the start of each partition.
    Earliest,
    /// From the end of each partition.
    Latest,
}

impl From<crate::broker::StartFrom> for StartFromConfig {
    fn from(s: crate::broker::StartFrom) -> Self {
        match s {
            crate::broker::StartFrom::Earliest => StartFromConfig::Earliest,
            crate::broker::StartFrom::Latest => StartFromConfig::Latest,
        }
    }
}

impl From<StartFromConfig> for crate::broker::StartFrom {
    fn from(s: StartFromConfig) -> Self {
        match s {
            StartFromConfig::Earliest => crate::broker::StartFrom::Earliest,
            StartFromConfig::Latest => crate::broker::StartFrom::Latest,
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
    /// let b = shareworker::config::BackoffConfig::default();
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
