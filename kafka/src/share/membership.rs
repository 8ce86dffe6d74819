//! ShareGroupHeartbeat v1: joining, staying in and leaving the share group.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::share_group_heartbeat_response::Assignment;
use kafka_protocol::messages::{
    GroupId, ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::super::conn::Versions;
use super::{Fatal, Shared};
use crate::{Error, KafkaError as _};
use shareworker_core::retry::Backoff;

pub(crate) const HEARTBEAT: Versions = Versions { min: 1, max: 1 };
const API: &str = "ShareGroupHeartbeat";

/// Backoff of retries: from the first to the longest pause, doubling, with jitter.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const BACKOFF: Backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
/// The interval used until the coordinator names one.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// The longest pause between heartbeats while the member has no partitions: the coordinator
/// hands out assignments in heartbeat answers (not in the joining one), so a new member gets its
/// partitions sooner. A member left without partitions (more members than partitions) costs the
/// coordinator four heartbeats a second.
const UNASSIGNED_INTERVAL: Duration = Duration::from_millis(250);

/// Kafka error codes of ShareGroupHeartbeat.
mod code {
    pub(super) const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub(super) const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub(super) const NOT_COORDINATOR: i16 = 16;
    pub(super) const UNKNOWN_MEMBER_ID: i16 = 25;
    pub(super) const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    pub(super) const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    pub(super) const UNSUPPORTED_VERSION: i16 = 35;
    pub(super) const INVALID_REQUEST: i16 = 42;
    pub(super) const GROUP_ID_NOT_FOUND: i16 = 69;
    pub(super) const FENCED_MEMBER_EPOCH: i16 = 110;
    pub(super) const GROUP_MAX_SIZE_REACHED: i16 = 113;
}

/// What to do with a heartbeat's error code.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Ok,
    /// The coordinator moved or is not ready: find it again, retry with backoff.
    Coordinator,
    /// The member is not (or no longer) in the group: join again with epoch 0.
    Rejoin,
    /// The member cannot be in this group.
    Fatal,
    /// Something else: retry with backoff.
    Retry,
}

fn verdict(error_code: i16) -> Verdict {
    match error_code {
        0 => Verdict::Ok,
        code::COORDINATOR_LOAD_IN_PROGRESS
        | code::COORDINATOR_NOT_AVAILABLE
        | code::NOT_COORDINATOR => Verdict::Coordinator,
        code::UNKNOWN_MEMBER_ID | code::FENCED_MEMBER_EPOCH | code::GROUP_ID_NOT_FOUND => {
            Verdict::Rejoin
        }
        code::GROUP_MAX_SIZE_REACHED
        | code::GROUP_AUTHORIZATION_FAILED
        | code::TOPIC_AUTHORIZATION_FAILED
        | code::INVALID_REQUEST
        | code::UNSUPPORTED_VERSION => Verdict::Fatal,
        _ => Verdict::Retry,
    }
}

/// One heartbeat to the group's coordinator with `epoch`; the topic names when joining.
async fn heartbeat(
    shared: &Shared,
    epoch: i32,
    subscribe: bool,
) -> Result<ShareGroupHeartbeatResponse, Error> {
    let node = shared.cluster.coordinator(&shared.group).await?;
    let conn = shared.cluster.control(node).await?;
    let topics = subscribe.then(|| {
        shared
            .topics
            .iter()
            .map(|t| TopicName(StrBytes::from_string(t.clone())))
            .collect()
    });
    let req = ShareGroupHeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(shared.group.to_string())))
        .with_member_id(StrBytes::from_string(shared.member_id.to_string()))
        .with_member_epoch(epoch)
        .with_rack_id(None)
        .with_subscribed_topic_names(topics);
    let (resp, _) = conn.call(&req, HEARTBEAT).await?;
    conn.errors().answered(API, resp.error_code);
    Ok(resp)
}

fn error_of(resp: &ShareGroupHeartbeatResponse) -> Error {
    Error::kafka(
        API,
        resp.error_code,
        resp.error_message.as_ref().map(|m| m.as_str()),
    )
}

fn interval_of(resp: &ShareGroupHeartbeatResponse) -> Duration {
    u64::try_from(resp.heartbeat_interval_ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map_or(DEFAULT_INTERVAL, Duration::from_millis)
}

fn assigned(a: &Assignment) -> BTreeMap<uuid::Uuid, BTreeSet<i32>> {
    let mut out: BTreeMap<uuid::Uuid, BTreeSet<i32>> = BTreeMap::new();
    for t in &a.topic_partitions {
        out.entry(t.topic_id)
            .or_default()
            .extend(t.partitions.iter().copied());
    }
    out
}

/// Takes in a successful answer: the epoch, and the assignment when it changed.
fn apply(shared: &Shared, resp: &ShareGroupHeartbeatResponse) {
    {
        let mut state = shared.lock();
        state.member_epoch = resp.member_epoch;
        if let Some(a) = &resp.assignment {
            let new = assigned(a);
            if new != state.assignment {
                debug!(group = %shared.group, member = %shared.member_id,
                    assignment = %crate::error::Json(new.iter().map(|(id, partitions)| {
                        (crate::wire::codec::TopicId(*id.as_bytes()).to_string(), partitions)
                    }).collect::<BTreeMap<_, _>>()),
                    "new assignment");
                state.assignment = new;
                state.reroute(false);
            }
        }
    }
    shared.bump();
}

/// The first heartbeat (epoch 0, with the topic names), retried on coordinator and connection
/// errors within the request timeout. Returns the heartbeat interval.
pub(super) async fn join(shared: &Shared) -> Result<Duration, Error> {
    let give_up = Instant::now() + shared.cluster.config().request_timeout;
    let mut retries = BACKOFF.retries();
    loop {
        let error = match heartbeat(shared, 0, true).await {
            Ok(resp) => match verdict(resp.error_code) {
                Verdict::Ok => {
                    apply(shared, &resp);
                    return Ok(interval_of(&resp));
                }
                Verdict::Fatal => return Err(error_of(&resp)),
                Verdict::Coordinator => {
                    shared.cluster.forget_coordinator(&shared.group);
                    error_of(&resp)
                }
                Verdict::Rejoin | Verdict::Retry => error_of(&resp),
            },
            Err(e) => {
                shared.cluster.forget_coordinator(&shared.group);
                e
            }
        };
        let pause = retries.next_pause();
        if Instant::now() + pause >= give_up {
            return Err(error);
        }
        debug!(group = %shared.group, error = %error, "joining the share group; retrying");
        tokio::time::sleep(pause).await;
    }
}

/// The pause before the next regular heartbeat.
fn pause(shared: &Shared, interval: Duration) -> Duration {
    if shared.lock().assignment.is_empty() {
        interval.min(UNASSIGNED_INTERVAL)
    } else {
        interval
    }
}

/// The heartbeat task: every interval, until aborted (leave) or a fatal error.
pub(super) async fn run(shared: Arc<Shared>, interval: Duration) {
    let mut interval = interval;
    let mut delay = pause(&shared, interval);
    let mut retries = BACKOFF.retries();
    loop {
        tokio::time::sleep(delay).await;
        let epoch = shared.lock().member_epoch;
        let joining = epoch == 0;
        match heartbeat(&shared, epoch, joining).await {
            Ok(resp) => match verdict(resp.error_code) {
                Verdict::Ok => {
                    apply(&shared, &resp);
                    interval = interval_of(&resp);
                    delay = pause(&shared, interval);
                    retries.reset();
                    if joining {
                        debug!(group = %shared.group, member = %shared.member_id, epoch = resp.member_epoch, "rejoined the share group");
                    }
                }
                Verdict::Coordinator => {
                    shared.cluster.forget_coordinator(&shared.group);
                    debug!(group = %shared.group, error = %error_of(&resp), "share-group coordinator moved; looking it up again");
                    delay = retries.next_pause();
                }
                Verdict::Rejoin => {
                    warn!(group = %shared.group, member = %shared.member_id, error = %error_of(&resp),
                        "the member is no longer in the share group; joining again");
                    shared.lock().member_epoch = 0;
                    // At once the first time; with backoff if joining keeps failing.
                    delay = if joining {
                        retries.next_pause()
                    } else {
                        Duration::ZERO
                    };
                }
                Verdict::Fatal => {
                    let e = error_of(&resp);
                    warn!(group = %shared.group, member = %shared.member_id, error = %e,
                        "the share group refused the member; acquire will fail with this error");
                    shared.lock().fatal = Some(Fatal {
                        api: "ShareGroupHeartbeat",
                        code: resp.error_code,
                        message: resp.error_message.as_ref().map(|m| m.to_string()),
                    });
                    shared.bump();
                    return;
                }
                Verdict::Retry => {
                    warn!(group = %shared.group, error = %error_of(&resp), "share-group heartbeat failed; retrying");
                    delay = retries.next_pause();
                }
            },
            Err(e) => {
                shared.cluster.forget_coordinator(&shared.group);
                warn!(group = %shared.group, error = %e, "share-group heartbeat failed; retrying");
                delay = retries.next_pause().min(interval);
            }
        }
    }
}

/// The leaving heartbeat (epoch -1). A member the coordinator does not know has left already.
pub(super) async fn leave(shared: &Shared) -> Result<(), Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match heartbeat(shared, -1, false).await {
            Ok(resp) => match verdict(resp.error_code) {
                Verdict::Ok | Verdict::Rejoin => return Ok(()),
                Verdict::Coordinator => {
                    shared.cluster.forget_coordinator(&shared.group);
                    error_of(&resp)
                }
                Verdict::Fatal | Verdict::Retry => return Err(error_of(&resp)),
            },
            Err(e) => {
                shared.cluster.forget_coordinator(&shared.group);
                e
            }
        };
        if attempt >= 3 {
            return Err(error);
        }
        tokio::time::sleep(BACKOFF.delay(attempt)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_sort_into_verdicts() {
        assert_eq!(verdict(0), Verdict::Ok);
        for c in [14, 15, 16] {
            assert_eq!(verdict(c), Verdict::Coordinator, "{c}");
        }
        for c in [25, 110, 69] {
            assert_eq!(verdict(c), Verdict::Rejoin, "{c}");
        }
        for c in [113, 29, 30, 42, 35] {
            assert_eq!(verdict(c), Verdict::Fatal, "{c}");
        }
        assert_eq!(verdict(-1), Verdict::Retry);
    }
}
