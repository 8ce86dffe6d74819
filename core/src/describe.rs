//! What a broker tells about its share groups and topics, for operators and tools: the answers
//! of [`BrokerAdmin::describe_group`](super::BrokerAdmin::describe_group),
//! [`Broker::offsets`](super::Broker::offsets) and the share-group config names.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{GroupConfig, GroupLimits, StartFrom};
use crate::Error;

/// `share.auto.offset.reset`: where a new group starts (`earliest`, `latest`).
pub const AUTO_OFFSET_RESET: &str = "share.auto.offset.reset";
/// `share.delivery.count.limit`: deliveries before a record is archived.
pub const DELIVERY_COUNT_LIMIT: &str = "share.delivery.count.limit";
/// `share.record.lock.duration.ms`: how long an acquisition lock lasts.
pub const LOCK_DURATION_MS: &str = "share.record.lock.duration.ms";
/// `share.partition.max.record.locks`: records of one partition acquired at once.
pub const MAX_RECORD_LOCKS: &str = "share.partition.max.record.locks";

/// `share.assignment.interval.ms`: the least time between two assignment rounds of the group
/// (Kafka 4.3 or newer; the embedded broker assigns at once and accepts it with nothing to change).
pub const ASSIGNMENT_INTERVAL_MS: &str = "share.assignment.interval.ms";

/// The share-group configs every broker here knows, by their Kafka names.
pub const GROUP_CONFIG_KEYS: [&str; 4] = [
    AUTO_OFFSET_RESET,
    DELIVERY_COUNT_LIMIT,
    LOCK_DURATION_MS,
    MAX_RECORD_LOCKS,
];

/// A share group as [`BrokerAdmin::describe_group`](super::BrokerAdmin::describe_group) sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDescription {
    /// The group id.
    pub group: String,
    /// The group's state as the broker names it (Kafka: `Empty`, `Stable`, `Dead`, ...; the
    /// embedded broker: `Stable` with members, `Empty` without).
    pub state: String,
    /// The members, sorted by id.
    pub members: Vec<GroupMember>,
    /// Every partition the group has read, sorted by topic and partition.
    pub partitions: Vec<SharePartitionState>,
}

/// One member of a share group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// The member id.
    pub member_id: String,
    /// The client id the member connected with (empty when the broker does not say).
    pub client_id: String,
    /// The host it connected from (empty when the broker does not say).
    pub host: String,
    /// The topics it subscribed to, sorted.
    pub topics: Vec<String>,
    /// The partitions assigned to it, as `(topic, partition)`, sorted.
    pub assignment: Vec<(String, i32)>,
}

/// One partition as one share group sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharePartitionState {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The share start offset: every record below it is done for the group. `None` while the
    /// broker has not initialised it (Kafka: until the group first reads the partition).
    pub start_offset: Option<i64>,
    /// Records not yet delivery-complete, in-flight ones included.
    pub lag: u64,
    /// Records acquired right now, when the broker knows (the embedded broker does, Kafka does
    /// not say).
    pub in_flight: Option<u64>,
}

impl SharePartitionState {
    /// The state of `partition` of `topic`: its start offset and lag, in-flight unknown.
    pub fn new(
        topic: impl Into<String>,
        partition: i32,
        start_offset: Option<i64>,
        lag: u64,
    ) -> Self {
        Self {
            topic: topic.into(),
            partition,
            start_offset,
            lag,
            in_flight: None,
        }
    }
}

/// The offsets of one partition of a topic, from [`Broker::offsets`](super::Broker::offsets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PartitionOffsets {
    /// The partition.
    pub partition: i32,
    /// The first offset still in the log (the log start offset).
    pub earliest: i64,
    /// The offset the next record will get (the high watermark).
    pub latest: i64,
}

impl PartitionOffsets {
    /// The offsets of one partition.
    pub const fn new(partition: i32, earliest: i64, latest: i64) -> Self {
        Self {
            partition,
            earliest,
            latest,
        }
    }
}

/// The known share-group configs of `limits` and `start_from`, by their Kafka names.
pub fn configs_of(limits: &GroupLimits, start_from: Option<StartFrom>) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(4);
    if let Some(start) = start_from {
        out.push((
            AUTO_OFFSET_RESET.to_owned(),
            start_from_name(start).to_owned(),
        ));
    }
    out.push((
        DELIVERY_COUNT_LIMIT.to_owned(),
        limits.delivery_count_limit.to_string(),
    ));
    out.push((
        LOCK_DURATION_MS.to_owned(),
        limits.lock_duration.as_millis().to_string(),
    ));
    out.push((
        MAX_RECORD_LOCKS.to_owned(),
        limits.max_record_locks.to_string(),
    ));
    out
}

/// `errors.deadletterqueue.topic.name` (Kafka 4.4): the group's broker-side dead-letter topic.
const DEAD_LETTER_TOPIC: &str = "errors.deadletterqueue.topic.name";

/// The share-group configs `config` sets, by their Kafka names, in a fixed order (`None` fields
/// left out): what an IncrementalAlterConfigs SET sends, and what a log line shows.
pub fn settings_of(config: &GroupConfig) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(start) = config.start_from {
        out.push((AUTO_OFFSET_RESET, start_from_name(start).to_owned()));
    }
    if let Some(limit) = config.delivery_count_limit {
        out.push((DELIVERY_COUNT_LIMIT, limit.to_string()));
    }
    if let Some(lock) = config.lock_duration {
        out.push((LOCK_DURATION_MS, lock.as_millis().to_string()));
    }
    if let Some(locks) = config.max_record_locks {
        out.push((MAX_RECORD_LOCKS, locks.to_string()));
    }
    if let Some(interval) = config.assignment_interval {
        out.push((ASSIGNMENT_INTERVAL_MS, interval.as_millis().to_string()));
    }
    if let Some(topic) = &config.broker_dead_letter {
        out.push((DEAD_LETTER_TOPIC, topic.clone()));
    }
    out
}

fn start_from_name(start: StartFrom) -> &'static str {
    match start {
        StartFrom::Earliest => "earliest",
        StartFrom::Latest => "latest",
    }
}

/// Reads configs named as Kafka names them into a [`GroupConfig`].
///
/// # Errors
/// `is_config` for a key that is not one of [`GROUP_CONFIG_KEYS`] or a value that does not
/// parse, naming the key and what is allowed.
pub fn group_config_from(pairs: &[(String, String)]) -> Result<GroupConfig, Error> {
    let mut config = GroupConfig::default();
    for (key, value) in pairs {
        let v = value.trim();
        let bad = |what: &str| Error::config(format!("`{key}`: `{value}` is not {what}"));
        match key.as_str() {
            AUTO_OFFSET_RESET => {
                config.start_from = Some(match v {
                    "earliest" => StartFrom::Earliest,
                    "latest" => StartFrom::Latest,
                    _ => return Err(bad("`earliest` or `latest`")),
                });
            }
            DELIVERY_COUNT_LIMIT => {
                config.delivery_count_limit =
                    Some(v.parse().map_err(|_| bad("a whole number (2 to 10)"))?);
            }
            LOCK_DURATION_MS => {
                let ms: u64 = v.parse().map_err(|_| bad("a number of milliseconds"))?;
                config.lock_duration = Some(Duration::from_millis(ms));
            }
            MAX_RECORD_LOCKS => {
                config.max_record_locks = Some(v.parse().map_err(|_| bad("a whole number"))?);
            }
            ASSIGNMENT_INTERVAL_MS => {
                let ms: u64 = v.parse().map_err(|_| bad("a number of milliseconds"))?;
                config.assignment_interval = Some(Duration::from_millis(ms));
            }
            _ => {
                return Err(Error::config(format!(
                    "`{key}` is not a share-group config this broker knows; it knows {} and {ASSIGNMENT_INTERVAL_MS}",
                    GROUP_CONFIG_KEYS.join(", ")
                )));
            }
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn kafka_names_parse_into_a_group_config() {
        let c = group_config_from(&pairs(&[
            (AUTO_OFFSET_RESET, "earliest"),
            (DELIVERY_COUNT_LIMIT, "3"),
            (LOCK_DURATION_MS, "15000"),
            (MAX_RECORD_LOCKS, "100"),
            (ASSIGNMENT_INTERVAL_MS, "100"),
        ]))
        .expect("valid");
        assert_eq!(
            c,
            GroupConfig::default()
                .start_from(StartFrom::Earliest)
                .delivery_count_limit(3)
                .lock_duration(Duration::from_secs(15))
                .max_record_locks(100)
                .assignment_interval(Duration::from_millis(100))
        );
        for (k, v, says) in [
            (AUTO_OFFSET_RESET, "soon", "`earliest` or `latest`"),
            (DELIVERY_COUNT_LIMIT, "-1", "whole number"),
            (ASSIGNMENT_INTERVAL_MS, "1s", "milliseconds"),
            (
                "share.isolation.level",
                "x",
                "it knows share.auto.offset.reset",
            ),
        ] {
            let err = group_config_from(&pairs(&[(k, v)])).expect_err(k);
            assert!(err.is_config(), "{err:?}");
            assert!(
                err.to_string().contains(k) && err.to_string().contains(says),
                "{err}"
            );
        }
        let back = configs_of(&GroupLimits::default(), Some(StartFrom::Latest));
        assert_eq!(
            group_config_from(&back).map(|c| c.start_from).ok(),
            Some(Some(StartFrom::Latest))
        );
    }
}
