//! The status of share groups: members, partitions, limits and, from a worker, its handlers.

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::broker::{BrokerAdmin, GroupMember, SharePartitionState};

/// One share group for operators: what the broker says of it, its limits and, when a worker
/// answers, the worker's handlers in it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GroupStatus {
    /// The group id.
    pub group: String,
    /// The group's state as the broker names it (`Stable`, `Empty`, ...).
    pub state: String,
    /// Its members.
    pub members: Vec<GroupMember>,
    /// Every partition it has read: share start offset, lag, records in flight where known.
    pub partitions: Vec<SharePartitionState>,
    /// Deliveries after which the broker archives a record (`share.delivery.count.limit`).
    pub delivery_count_limit: u16,
    /// How long an acquisition lock lasts, in milliseconds (`share.record.lock.duration.ms`).
    pub lock_duration_ms: u64,
    /// Records of one partition acquired at once (`share.partition.max.record.locks`).
    pub max_record_locks: u32,
    /// The handlers of the worker that answered, in this group (none when asked of a broker).
    #[serde(default)]
    pub handlers: Vec<HandlerStatus>,
}

/// One handler of a running worker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HandlerStatus {
    /// The handler's name.
    pub name: String,
    /// The topic it reads.
    pub topic: String,
    /// Its dead-letter topic, if dead-lettering is on.
    pub dead_letter: Option<String>,
    /// Its concurrency limit.
    pub concurrency: u32,
    /// Its jobs running or waiting right now, when the worker counts them.
    pub in_flight: Option<u64>,
}

/// What `GET /status` of a worker answers, and what the CLI prints for a broker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StatusReport {
    /// The broker's kind: `embedded` or `kafka`.
    pub broker: String,
    /// Whether the mutating admin routes are on (`http.admin`); `None` when a broker answered.
    pub admin: Option<bool>,
    /// The groups asked for, sorted by id.
    pub groups: Vec<GroupStatus>,
}

/// The status of `group` on `broker`: its description and its limits.
///
/// ```
/// use shareworker::{broker::Broker, EmbeddedBroker};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), shareworker::Error> {
/// let broker = EmbeddedBroker::new();
/// let _member = broker.join("mailer", &["emails".to_string()]).await?;
/// let status = shareworker::admin::group_status(&broker, "mailer").await?;
/// assert_eq!(status.members.len(), 1);
/// assert_eq!(status.delivery_count_limit, 5);
/// # Ok(()) }
/// ```
///
/// # Errors
/// `is_unknown_group` when the broker knows no such group (the message lists the groups it
/// knows); a broker error otherwise.
pub async fn group_status(broker: &dyn BrokerAdmin, group: &str) -> Result<GroupStatus, Error> {
    let description = match broker.describe_group(group).await {
        Ok(d) => d,
        Err(e) if e.is_unknown_group() => {
            let known = broker.list_groups().await.unwrap_or_default();
            let known = if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            };
            let message = format!("{e}; the share groups on this broker: {known}");
            return Err(e.with_message(message));
        }
        Err(e) => return Err(e),
    };
    let limits = broker.group_limits(group).await?;
    Ok(GroupStatus {
        group: description.group,
        state: description.state,
        members: description.members,
        partitions: description.partitions,
        delivery_count_limit: limits.delivery_count_limit,
        lock_duration_ms: u64::try_from(limits.lock_duration.as_millis()).unwrap_or(u64::MAX),
        max_record_locks: limits.max_record_locks,
        handlers: Vec::new(),
    })
}

/// The status of every share group `broker` lists (see [`BrokerAdmin::list_groups`]).
///
/// # Errors
/// A broker error.
pub async fn broker_status(broker: &dyn BrokerAdmin) -> Result<StatusReport, Error> {
    let mut groups = Vec::new();
    for group in broker.list_groups().await? {
        match group_status(broker, &group).await {
            Ok(s) => groups.push(s),
            // Gone between the listing and the description.
            Err(e) if e.is_unknown_group() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(StatusReport {
        broker: broker.kind().to_owned(),
        admin: None,
        groups,
    })
}
