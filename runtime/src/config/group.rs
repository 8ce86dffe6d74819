//! Share-group configs a worker sets on the broker when it starts (key `groups.<group>`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::StartFromConfig;
use crate::broker::GroupConfig;
use crate::duration::serde_opt_duration;

/// Share-group configs the worker sets on the broker when it starts, before it joins the group
/// (key `groups.<group name>`). Each key left out is left as the broker has it.
///
/// Kafka keeps these per group, for every member: set them in one place (every worker of the
/// group, or an operator with `shareworker group config`), or the last worker to start wins.
/// Setting them needs the `AlterConfigs` ACL on the group; a worker that lacks it, or a value
/// the broker refuses (out of its range, or a key its version does not know), stops at start
/// with the broker's answer. The worker reads the group's limits after setting them, so
/// `max_attempts` follows a `delivery_count_limit` set here.
///
/// ```toml
/// [groups.billing]
/// start_from = "earliest"          # share.auto.offset.reset: records produced before the group's first read
/// assignment_interval = "100ms"    # share.assignment.interval.ms (Kafka 4.3+): a new group reads sooner
/// delivery_count_limit = 8         # share.delivery.count.limit (Kafka 4.3+)
/// lock_duration = "60s"            # share.record.lock.duration.ms
/// ```
///
/// In code, from the broker API's [`GroupConfig`]:
///
/// ```no_run
/// use std::time::Duration;
/// use shareworker::broker::{GroupConfig, StartFrom};
/// use shareworker::config::Config;
///
/// let mut config = Config::default();
/// config.broker = "kafka://127.0.0.1:9092".into();
/// config.groups.insert(
///     "billing".into(),
///     GroupConfig::default()
///         .start_from(StartFrom::Earliest)
///         .assignment_interval(Duration::from_millis(100))
///         .into(),
/// );
/// let builder = shareworker::Worker::builder().config(config);
/// ```
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct GroupSettings {
    /// Where the group starts reading a partition it has not read before
    /// (`share.auto.offset.reset`; Kafka's default is `latest`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_from: Option<StartFromConfig>,
    /// Deliveries after which the broker archives a record (`share.delivery.count.limit`, 2 to
    /// 10 on Kafka, which has 5 by default; Kafka 4.3 or newer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_count_limit: Option<u16>,
    /// How long an acquisition lock lasts (`share.record.lock.duration.ms`, 15 s to 60 s on
    /// Kafka, 30 s by default).
    #[serde(with = "serde_opt_duration", skip_serializing_if = "Option::is_none")]
    pub lock_duration: Option<Duration>,
    /// Records of one partition the group may hold acquired at once
    /// (`share.partition.max.record.locks`, 2000 by default; Kafka 4.3 or newer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_record_locks: Option<u32>,
    /// The least time between two assignment rounds of the group's coordinator
    /// (`share.assignment.interval.ms`, 1 s by default; Kafka 4.3 or newer). A group's first
    /// member reads nothing until the first round: with `"100ms"` its first record came about
    /// 0.35 s after the worker started instead of 1.1 s (Kafka 4.4). The embedded broker assigns
    /// at once.
    #[serde(with = "serde_opt_duration", skip_serializing_if = "Option::is_none")]
    pub assignment_interval: Option<Duration>,
    /// The broker's own dead-letter topic for the group (`errors.deadletterqueue.topic.name`,
    /// Kafka 4.4; by the broker's default its name starts with `dlq.`). The broker then writes
    /// the dead letters and the handlers' `dead_letter` topics are not used. `""` turns it off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_dead_letter: Option<String>,
}

impl From<GroupConfig> for GroupSettings {
    fn from(c: GroupConfig) -> Self {
        Self {
            start_from: c.start_from.map(Into::into),
            delivery_count_limit: c.delivery_count_limit,
            lock_duration: c.lock_duration,
            max_record_locks: c.max_record_locks,
            assignment_interval: c.assignment_interval,
            broker_dead_letter: c.broker_dead_letter,
        }
    }
}

impl GroupSettings {
    /// Whether there is nothing to set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The settings as the broker API takes them.
    pub fn to_group_config(&self) -> GroupConfig {
        let mut c = GroupConfig::default();
        c.start_from = self.start_from.map(Into::into);
        c.delivery_count_limit = self.delivery_count_limit;
        c.lock_duration = self.lock_duration;
        c.max_record_locks = self.max_record_locks;
        c.assignment_interval = self.assignment_interval;
        c.broker_dead_letter.clone_from(&self.broker_dead_letter);
        c
    }

    /// The settings as `key=value` with Kafka's names, for log lines.
    pub(crate) fn describe(&self) -> String {
        shareworker_core::settings_of(&self.to_group_config())
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
