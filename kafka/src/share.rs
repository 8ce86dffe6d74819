//! A share-group member on Kafka (KIP-932): membership, share sessions, acquire and settle.
//!
//! [`join`] returns a [`Member`] that speaks ShareGroupHeartbeat v1 to the group coordinator
//! and ShareFetch / ShareAcknowledge (v2 where the broker has it, else v1) to partition leaders.
//!
//! # Membership ([`membership`])
//! The member id is generated here once: a random (v4) UUID written the way Kafka writes its
//! `Uuid` (URL-safe base64, 22 characters), which is what the broker parses it as. `join` sends
//! a heartbeat with epoch 0 and the subscribed topic names and returns once it succeeded; the
//! assignment may come in a later heartbeat (acquire just waits for it). A task then heartbeats
//! every `HeartbeatIntervalMs` with the current epoch and no topic names; a non-null
//! `Assignment` replaces the member's partitions. Heartbeats go on the coordinator's control
//! connection (with metadata and coordinator lookups only), never behind a slow admin call or
//! produce: a heartbeat held up past the session timeout would fence the member.
//! - NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS, a broken
//!   connection or a timeout: forget the coordinator, find it again, retry with backoff
//!   (100 ms doubling to 5 s).
//! - UNKNOWN_MEMBER_ID, FENCED_MEMBER_EPOCH, GROUP_ID_NOT_FOUND: rejoin at once with epoch 0,
//!   the same member id and the topic names. Partitions and held records are kept meanwhile:
//!   the new assignment replaces them, and an acknowledgement the broker no longer takes answers
//!   lock-lost.
//! - GROUP_MAX_SIZE_REACHED, GROUP/TOPIC_AUTHORIZATION_FAILED, INVALID_REQUEST,
//!   UNSUPPORTED_VERSION: fatal. `join` fails with it; later, acquire fails with it.
//!
//! # Share sessions ([`session`])
//! Each broker that leads an assigned partition gets one session actor: a task that owns a
//! connection of its own (a broker handles one request per connection at a time, so a
//! long-poll fetch must not block the producer, the admin calls or another member) and sends
//! every request of that session in order: epoch 0 opens the session and lists all its
//! partitions (no acknowledgements allowed), then 1, 2, … (after `i32::MAX`, 1). Incremental
//! requests list only partitions added, or being acknowledged; removed ones go in
//! `ForgottenTopicsData`.
//! - Acknowledgements ride on the next ShareFetch when one is about to be sent (its
//!   `MaxWaitMs` is then 0, so the answer is not held back), otherwise they go alone as a
//!   ShareAcknowledge. Acknowledgements for partitions no longer in the session always go as a
//!   ShareAcknowledge (listing them in a ShareFetch would add them to the session again).
//! - RENEW goes alone, in a ShareAcknowledge v2 with `IsRenewAck` (never riding on a fetch).
//! - Each fetch round waits at most 500 ms (`MaxWaitMs`), so an acknowledgement waits for at
//!   most one round; `acquire(max, wait)` runs rounds until records arrive or `wait` is over.
//!   After an answer that brought a quarter of its ask or more, the next fetch does not wait at
//!   all, and each empty answer after that doubles the wait from 5 ms back to the whole round:
//!   when records are plentiful, what stops a fetch is more likely the partitions' record-lock
//!   limit (`share.partition.max.record.locks`), which only this member's acknowledgements,
//!   queued behind that fetch, would lift; a fetch waiting out 500 ms then held back both. On
//!   Kafka 4.4, reading 2 M records, such waits took 3 to 5 s of a 10 s run.
//! - SHARE_SESSION_NOT_FOUND, INVALID_SHARE_SESSION_EPOCH, SHARE_SESSION_LIMIT_REACHED, any
//!   other top-level error, a timeout or a broken connection reset the session: the connection
//!   is dropped when it was at fault (the broker then ends the session and releases its
//!   records), the next request opens a new session with epoch 0, and every record acquired in
//!   the old one is lost to this member: acknowledging it answers lock-lost. A timeout, a broken
//!   connection or a broker that cannot be reached also refreshes metadata before the next
//!   routing pass: the broker may be gone, and its partitions led by another one.
//!
//! # Acquire
//! A fetch asks for `MaxRecords = max` split across the leaders fetched from concurrently
//! (`ShareAcquireMode` in v2: record-limit below 256 records, so the broker never exceeds a
//! small ask; batch-optimized from 256, whole log batches, cheaper for the broker, possibly a
//! batch per partition more, which the member buffers; `BatchSize = max`,
//! `MaxBytes` 16 MiB, `MinBytes` 1). A leader whose last fetch brought nothing gets one record's
//! worth while others have records: its fetch holds its share until `MaxWaitMs` is over, which
//! would hold back the leaders that have records. Records go into a buffer owned by the member, never into
//! the acquire future: dropping an acquire loses nothing, the next acquire returns what its
//! fetches brought, and leaving releases what nobody took. A buffered record is returned with
//! its `lock_duration` shortened by the time it waited. Only offsets inside `AcquiredRecords`
//! are delivered; acquired offsets without a data record are acknowledged GAP, and acquired
//! offsets beyond the returned data (or in a batch that does not decode) are released, both
//! automatically with the next request. Fetches already in flight count against `max`, so a
//! dropped acquire never leads to more records held than asked for. An acquire that waited 2 s
//! or more without any fetch answered while fetches were in flight (or while metadata could not
//! be read) fails with a timeout instead of returning nothing: the broker does not answer, and
//! the worker reports not ready until it does.
//!
//! # Settle: acknowledgement routing
//! Every record delivered is remembered with the leader and the session (its generation) that
//! acquired it. Its acknowledgement goes to that leader only, never re-routed: when the session
//! was reset since, or the record is not held (never delivered, settled already), the answer is
//! lock-lost without asking the broker. Per partition the acknowledgements become ascending,
//! non-overlapping ranges of one type ([`acks`]). The broker answers per partition and applies a
//! partition's acknowledgements all or nothing: when a partition with several records fails
//! with INVALID_RECORD_STATE, each of them is sent again on its own, so one stale record does
//! not fail the others. INVALID_RECORD_STATE is lock-lost (for RENEW the message also says that
//! `share.renew.acknowledge.enable` may be false for this group); NOT_LEADER_OR_FOLLOWER,
//! FENCED_LEADER_EPOCH, UNKNOWN_TOPIC_OR_PARTITION and UNKNOWN_TOPIC_ID are lock-lost too (the
//! leader moved: the record will be delivered again, by the new leader); the member then
//! learns the new leader (`CurrentLeader`, `NodeEndpoints`, or a metadata refresh) and fetches
//! the partition from there.
//!
//! # Seen on Kafka 4.4.0 (the tests pin these)
//! - A partition's acknowledgements are all or nothing: ACCEPT of [expired, held] in one request
//!   fails both with INVALID_RECORD_STATE; sent one by one, the held one succeeds.
//! - Renewal turned off for the group: INVALID_RECORD_STATE, "Renewing acquisition locks is not
//!   enabled for the group."; the record stays acquired (a later ACCEPT succeeds).
//! - Closing a session with epoch -1 releases its records at once: another member gets them
//!   within milliseconds, with delivery count + 1.
//! - A new member gets its assignment in a later heartbeat, not in the joining one; while it
//!   has no partitions it heartbeats every 250 ms (not every `HeartbeatIntervalMs`, 5 s).
//! - The broker ends a session when it notices its connection closed, keyed by group and
//!   member: a new session the member opened on a new connection before that is ended with it
//!   (the next request answers SHARE_SESSION_NOT_FOUND) and its records are released, with the
//!   delivery count not raised. So a session waits 500 ms before connecting again after a lost
//!   connection.
//! - When a broker dies, the surviving leaders' share operations wait for the share coordinator
//!   of their state, which may have been on the dead broker: a ShareFetch took 8-16 s to answer
//!   on a 3-node cluster (6 s broker session timeout), so records held meanwhile can outlive a
//!   15 s lock.
//!
//! # Leave
//! `leave` marks the member closed (later calls fail with a closed error), closes every session
//! with a ShareAcknowledge of epoch -1 carrying the acknowledgements still queued (the broker
//! applies them, then releases every record the member still holds there, buffered ones
//! included), stops the heartbeat task and sends a heartbeat with epoch -1. Dropping the member
//! without `leave` drops the session connections (the broker releases their records) but sends
//! no leave heartbeat: the member stays in the group until its session times out.

mod acks;
mod membership;
mod session;

#[cfg(feature = "fuzzing")]
pub(crate) use membership::HEARTBEAT;
#[cfg(feature = "fuzzing")]
pub(crate) use session::{SHARE_ACKNOWLEDGE, SHARE_FETCH};
#[cfg(test)]
mod tests;
#[cfg(test)]
mod split_tests {
    use super::split;

    #[test]
    fn quiet_leaders_get_one_record_while_others_have_records() {
        // Nobody quiet, or everybody: even split, the first ones get the remainder.
        assert_eq!(split(10, &[false, false, false]), [4, 3, 3]);
        assert_eq!(split(4, &[true, true]), [2, 2]);
        assert_eq!(split(2, &[false, false, false]), [1, 1, 0]);
        // A quiet leader holds one record's worth, the busy ones the rest.
        assert_eq!(split(8, &[false, true]), [7, 1]);
        assert_eq!(split(9, &[true, false, true, false]), [1, 4, 1, 3]);
        // Too small a budget: the busy leaders first.
        assert_eq!(split(1, &[true, false]), [0, 1]);
        assert_eq!(split(2, &[true, false, false]), [0, 1, 1]);
        assert_eq!(split(3, &[true, false, true]), [1, 1, 1]);
        assert_eq!(split(2, &[true, false, true]), [1, 1, 0]);
        assert!(split(5, &[]).is_empty());
        for (budget, quiet) in [
            (7, vec![true, false, true]),
            (1, vec![false]),
            (30, vec![true; 4]),
        ] {
            assert_eq!(split(budget, &quiet).iter().sum::<usize>(), budget);
        }
    }
}

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};
use uuid::Uuid;

use super::cluster::Cluster;
use super::wire::codec::TopicId;
use crate::{Error, KafkaError as _};
use session::{AckEntry, Command, SessionHandle};
use shareworker_core::lock::LockExt;
use shareworker_core::{AckKind, Delivery, Member, RecordId, SettleResult};

/// A topic partition by topic id.
type Tp = (Uuid, i32);

/// The longest a fetch round waits on the broker (`MaxWaitMs`).
const MAX_ROUND: Duration = Duration::from_millis(500);
/// How often an acquire retries routing when a leader or topic id is not known yet.
const ROUTING_RETRY: Duration = Duration::from_millis(500);
/// An acquire waiting at least this long that saw no fetch answered, while a fetch has waited at
/// least this long for its answer (each waits at most [`MAX_ROUND`] on the broker), fails: the
/// broker does not answer.
const SILENCE: Duration = Duration::from_secs(2);

/// A fatal membership error, kept to fail every later acquire with it.
#[derive(Clone, Debug)]
struct Fatal {
    /// The API that answered it.
    api: &'static str,
    code: i16,
    message: Option<String>,
}

impl Fatal {
    fn error(&self) -> Error {
        Error::kafka(self.api, self.code, self.message.as_deref())
    }
}

/// Which session acquired a record the member holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Owned {
    node: i32,
    generation: u64,
    topic_id: Uuid,
}

/// A record fetched but not yet returned by an acquire.
struct Buffered {
    delivery: Delivery,
    node: i32,
    generation: u64,
    at: Instant,
}

#[derive(Default)]
struct State {
    /// The member epoch the coordinator gave (0 before joining or after being fenced).
    member_epoch: i32,
    /// The assigned partitions, by topic id.
    assignment: BTreeMap<Uuid, BTreeSet<i32>>,
    /// The assignment or a leader changed: recompute which session fetches what.
    routing_dirty: bool,
    /// Counts the changes that made routing dirty: a routing pass clears the flag only when no
    /// change came in while it ran (and it ran to the end: acquire may be dropped mid-way).
    routing_changes: u64,
    /// Refresh topic metadata before routing again.
    needs_refresh: bool,
    fatal: Option<Fatal>,
    /// Topic names of the assigned topic ids.
    names: HashMap<Uuid, Arc<str>>,
    /// Records this member holds (returned by acquire or buffered), and who acquired them.
    owned: HashMap<RecordId, Owned>,
    buffer: VecDeque<Buffered>,
    /// Records asked for by fetches still in flight.
    in_flight_records: usize,
    /// Fetches the broker answered (whatever they brought), ever.
    fetches_answered: u64,
}

/// What the member, its session actors and its heartbeat task share.
struct Shared {
    cluster: Arc<Cluster>,
    group: Arc<str>,
    member_id: Arc<str>,
    topics: Vec<String>,
    state: Mutex<State>,
    /// Bumped whenever records arrive, a fetch ends, the assignment changes or the member
    /// closes: acquire waits on it.
    events: watch::Sender<u64>,
    closed: AtomicBool,
}

impl State {
    /// Something changed that routing depends on; `refresh`: metadata is stale too.
    fn reroute(&mut self, refresh: bool) {
        self.routing_dirty = true;
        self.routing_changes = self.routing_changes.wrapping_add(1);
        self.needs_refresh |= refresh;
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    fn bump(&self) {
        self.events.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn closed_error(&self) -> Error {
        Error::closed(format!(
            "member {} has left share group `{}`",
            self.member_id, self.group
        ))
    }

    /// Takes up to `max` buffered records still held by this member.
    fn take(&self, max: usize) -> Vec<Delivery> {
        let now = Instant::now();
        let mut state = self.lock();
        let State { buffer, owned, .. } = &mut *state;
        let mut out = Vec::new();
        while out.len() < max {
            let Some(b) = buffer.pop_front() else { break };
            let held = owned
                .get(&b.delivery.id)
                .is_some_and(|o| o.node == b.node && o.generation == b.generation);
            if !held {
                continue;
            }
            let mut d = b.delivery;
            d.lock_duration = d
                .lock_duration
                .saturating_sub(now.saturating_duration_since(b.at));
            out.push(d);
        }
        out
    }
}

/// A member id the way Kafka writes a `Uuid`: URL-safe base64 of a random UUID, never
/// starting with `-` (Kafka avoids those, they look like command-line options).
fn new_member_id() -> String {
    loop {
        let id = TopicId(Uuid::new_v4().into_bytes()).to_string();
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// Joins share group `group` subscribed to `topics`; returns once the coordinator accepted the
/// member (the assignment may follow in a later heartbeat).
///
/// # Errors
/// `is_invalid_input` for an empty group id, no topics or an empty topic name; the
/// coordinator's error when it refuses the member (such as GROUP_MAX_SIZE_REACHED); a broker
/// error when it cannot be reached within the request timeout.
pub(crate) async fn join(
    cluster: Arc<Cluster>,
    group: &str,
    topics: &[String],
) -> Result<Box<dyn Member>, Error> {
    if group.is_empty() {
        return Err(Error::invalid_input("the group id is empty"));
    }
    if topics.is_empty() {
        return Err(Error::invalid_input(format!(
            "joining share group `{group}` needs at least one topic"
        )));
    }
    if topics.iter().any(String::is_empty) {
        return Err(Error::invalid_input("a topic name is empty"));
    }
    let mut unique: Vec<String> = topics.to_vec();
    unique.sort();
    unique.dedup();
    let (events, _) = watch::channel(0u64);
    let shared = Arc::new(Shared {
        cluster,
        group: Arc::from(group),
        member_id: Arc::from(new_member_id()),
        topics: unique,
        state: Mutex::new(State::default()),
        events,
        closed: AtomicBool::new(false),
    });
    let interval = membership::join(&shared).await?;
    debug!(group, member = %shared.member_id, "joined share group");
    let heartbeat = tokio::spawn(membership::run(shared.clone(), interval));
    Ok(Box::new(KafkaMember {
        member_id: shared.member_id.to_string(),
        shared,
        sessions: Mutex::new(HashMap::new()),
        heartbeat: Mutex::new(Some(heartbeat)),
        rotation: AtomicUsize::new(0),
    }))
}

/// The [`Member`] returned by [`join`].
struct KafkaMember {
    member_id: String,
    shared: Arc<Shared>,
    /// One session actor per leader, by broker id.
    sessions: Mutex<HashMap<i32, SessionHandle>>,
    heartbeat: Mutex<Option<JoinHandle<()>>>,
    /// Which leader gets the first share of a fetch round.
    rotation: AtomicUsize,
}

impl Drop for KafkaMember {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.locked().take() {
            h.abort();
        }
    }
}

impl KafkaMember {
    fn sessions(&self) -> MutexGuard<'_, HashMap<i32, SessionHandle>> {
        self.sessions.locked()
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(self.shared.closed_error());
        }
        Ok(())
    }

    /// Recomputes which leader each assigned partition is fetched from, starting session actors
    /// for new leaders and emptying the sessions of leaders that lead nothing assigned any more.
    async fn reroute(&self) -> Result<(), Error> {
        let (assignment, refresh, changes) = {
            let state = self.shared.lock();
            (
                state.assignment.clone(),
                state.needs_refresh,
                state.routing_changes,
            )
        };
        let cluster = &self.shared.cluster;
        let unknown = assignment.keys().any(|id| {
            cluster
                .topic_name(id)
                .and_then(|n| cluster.cached_topic(&n))
                .is_none()
        });
        if refresh || unknown {
            let topics: Vec<&str> = self.shared.topics.iter().map(String::as_str).collect();
            cluster.refresh(&topics).await?;
        }
        let mut by_node: BTreeMap<i32, BTreeSet<Tp>> = BTreeMap::new();
        let mut names = HashMap::new();
        let mut incomplete = false;
        for (id, partitions) in &assignment {
            let Some(meta) = cluster
                .topic_name(id)
                .and_then(|n| cluster.cached_topic(&n))
            else {
                incomplete = true;
                continue;
            };
            names.insert(*id, meta.name.clone());
            for p in partitions {
                match meta.partitions.iter().find(|m| m.index == *p) {
                    Some(m) if m.leader >= 0 => {
                        by_node.entry(m.leader).or_default().insert((*id, *p));
                    }
                    _ => incomplete = true,
                }
            }
        }
        let mut sessions = self.sessions();
        for (node, s) in sessions.iter() {
            if !by_node.contains_key(node) {
                s.set_wanted(BTreeSet::new());
            }
        }
        for (node, wanted) in by_node {
            debug!(group = %self.shared.group, member = %self.member_id, node, partitions = wanted.len(), "routing");
            sessions
                .entry(node)
                .or_insert_with(|| session::spawn(self.shared.clone(), node))
                .set_wanted(wanted);
        }
        drop(sessions);
        let mut state = self.shared.lock();
        state.names.extend(names);
        if incomplete {
            // A leader or topic id is not known yet: refresh and route again soon.
            state.reroute(true);
        } else if state.routing_changes == changes {
            state.routing_dirty = false;
            state.needs_refresh = false;
        }
        Ok(())
    }

    /// Sends a fetch to each idle leader with partitions, splitting what is left of `max`.
    fn start_fetches(
        &self,
        max: usize,
        wait: Duration,
        replies: &mut FuturesUnordered<oneshot::Receiver<Result<(), Error>>>,
    ) {
        let sessions = self.sessions();
        let mut idle: Vec<&SessionHandle> = sessions
            .values()
            .filter(|s| s.has_partitions() && !s.is_fetching())
            .collect();
        if idle.is_empty() {
            return;
        }
        idle.sort_by_key(|s| s.node());
        let mut state = self.shared.lock();
        let mut budget = max.saturating_sub(state.in_flight_records);
        if budget == 0 {
            return;
        }
        let start = self.rotation.fetch_add(1, Ordering::Relaxed);
        let n = idle.len();
        idle.rotate_left(start % n);
        let shares = split(
            budget,
            &idle.iter().map(|s| s.is_quiet()).collect::<Vec<_>>(),
        );
        for (s, share) in idle.into_iter().zip(shares) {
            if share == 0 || budget == 0 {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            let max_records = i32::try_from(share).unwrap_or(i32::MAX);
            if s.fetch(max_records, wait.min(MAX_ROUND), tx) {
                state.in_flight_records += share;
                budget -= share;
                replies.push(rx);
            }
        }
    }
}

/// Splits a fetch budget of `budget` records among leaders; `quiet[i]`: leader `i`'s last fetch
/// brought nothing. A fetch holds its share until it is answered, and a leader with nothing to
/// give answers only after `MaxWaitMs`: so while some leaders have records, each quiet one gets
/// one record's worth (enough to notice new records) and the others split the rest. When all are
/// quiet, or none, the budget is split evenly. Leaders past the budget get nothing this round.
fn split(budget: usize, quiet: &[bool]) -> Vec<usize> {
    let n = quiet.len();
    let quiet_count = quiet.iter().filter(|q| **q).count();
    if n == 0 {
        return Vec::new();
    }
    if quiet_count == 0 || quiet_count == n {
        let k = n.min(budget);
        return (0..n)
            .map(|j| {
                if j < k {
                    budget / k + usize::from(j < budget % k)
                } else {
                    0
                }
            })
            .collect();
    }
    let busy = n - quiet_count;
    // Busy leaders first: each quiet one gets one record only from what they leave.
    let for_quiet = quiet_count.min(budget.saturating_sub(busy));
    let for_busy = budget - for_quiet;
    let k = busy.min(for_busy);
    let (mut b, mut q) = (0, 0);
    quiet
        .iter()
        .map(|is_quiet| {
            if *is_quiet {
                q += 1;
                usize::from(q <= for_quiet)
            } else {
                b += 1;
                if b <= k {
                    for_busy / k + usize::from(b - 1 < for_busy % k)
                } else {
                    0
                }
            }
        })
        .collect()
}

#[async_trait]
impl Member for KafkaMember {
    async fn acquire(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, Error> {
        self.check_open()?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        let mut events = self.shared.events.subscribe();
        let mut replies = FuturesUnordered::new();
        let mut failed: Option<Error> = None;
        let mut route_error: Option<Error> = None;
        let answered_before = self.shared.lock().fetches_answered;
        loop {
            events.borrow_and_update();
            self.check_open()?;
            if let Some(f) = self.shared.lock().fatal.clone() {
                return Err(f.error());
            }
            let got = self.shared.take(max);
            if !got.is_empty() {
                return Ok(got);
            }
            if let Some(e) = failed.take() {
                return Err(e);
            }
            let now = Instant::now();
            if now >= deadline {
                // Nothing came; say so when that is because the broker does not answer: no
                // fetch was answered while this acquire waited, and one has been waiting for
                // its answer at least SILENCE (a fetch sent just now, say for partitions
                // assigned a moment ago, proves nothing).
                if wait >= SILENCE && self.shared.lock().fetches_answered == answered_before {
                    if let Some(e) = route_error {
                        return Err(e);
                    }
                    let longest = self
                        .sessions()
                        .values()
                        .filter_map(|s| s.fetch_waiting(now))
                        .max();
                    if let Some(longest) = longest.filter(|w| *w >= SILENCE) {
                        return Err(Error::timeout(format!(
                            "share group `{}`: no fetch was answered within {wait:?}; one has waited {longest:?} (each waits at most {MAX_ROUND:?} on the broker)",
                            self.shared.group
                        )));
                    }
                }
                return Ok(got);
            }
            let dirty = self.shared.lock().routing_dirty;
            if dirty && let Err(e) = self.reroute().await {
                warn!(group = %self.shared.group, member = %self.member_id, error = %e,
                    "cannot route the assigned partitions to their leaders yet");
                route_error = Some(e);
            }
            self.start_fetches(max, deadline.saturating_duration_since(now), &mut replies);
            let wake = if self.shared.lock().routing_dirty {
                deadline.min(Instant::now() + ROUTING_RETRY)
            } else {
                deadline
            };
            tokio::select! {
                _ = events.changed() => {}
                Some(reply) = replies.next() => {
                    if let Ok(Err(e)) = reply {
                        failed = Some(e);
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn settle(&self, acks: &[(RecordId, AckKind)]) -> Result<Vec<SettleResult>, Error> {
        self.check_open()?;
        let mut results: Vec<Option<SettleResult>> = (0..acks.len()).map(|_| None).collect();
        let mut per_node: BTreeMap<i32, (Vec<AckEntry>, Vec<usize>)> = BTreeMap::new();
        {
            let mut state = self.shared.lock();
            for (i, (id, kind)) in acks.iter().enumerate() {
                let Some(o) = state.owned.get(id).copied() else {
                    results[i] = Some(Err(Error::lock_lost(format!(
                        "{id}: not acquired by member {} (never delivered to it, settled already, or its share session ended)",
                        self.member_id
                    ))));
                    continue;
                };
                if *kind != AckKind::Renew {
                    state.owned.remove(id);
                }
                let (entries, indices) = per_node.entry(o.node).or_default();
                entries.push(AckEntry {
                    tp: (o.topic_id, id.partition),
                    id: id.clone(),
                    kind: *kind,
                    generation: o.generation,
                });
                indices.push(i);
            }
        }
        let mut waits = Vec::new();
        {
            let sessions = self.sessions();
            for (node, (entries, indices)) in per_node {
                let Some(s) = sessions.get(&node) else {
                    for i in indices {
                        results[i] = Some(Err(Error::lock_lost(format!(
                            "{}: the share session with broker {node} that acquired it is gone",
                            acks[i].0
                        ))));
                    }
                    continue;
                };
                let (tx, rx) = oneshot::channel();
                if s.send(Command::Ack { entries, reply: tx }) {
                    waits.push((indices, rx));
                } else {
                    for i in indices {
                        results[i] = Some(Err(self.shared.closed_error()));
                    }
                }
            }
        }
        let answers = join_all(
            waits
                .into_iter()
                .map(|(indices, rx)| async move { (indices, rx.await) }),
        )
        .await;
        for (indices, answer) in answers {
            match answer {
                Ok(rs) => {
                    let mut rs = rs.into_iter();
                    for i in indices {
                        results[i] = Some(rs.next().unwrap_or_else(|| {
                            Err(Error::broker("the share session gave no answer"))
                        }));
                    }
                }
                Err(_) => {
                    for i in indices {
                        results[i] = Some(Err(self.shared.closed_error()));
                    }
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::broker("no answer for this acknowledgement"))))
            .collect())
    }

    async fn leave(&self) -> Result<(), Error> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return Err(self.shared.closed_error());
        }
        self.shared.bump();
        let sessions: Vec<SessionHandle> = self.sessions().drain().map(|(_, s)| s).collect();
        let closes = sessions.iter().map(|s| {
            let (tx, rx) = oneshot::channel();
            let sent = s.send(Command::Close { reply: tx });
            async move {
                if !sent {
                    return Ok(());
                }
                rx.await.unwrap_or(Ok(()))
            }
        });
        let mut first_error = None;
        for r in join_all(closes).await {
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        let heartbeat = self.heartbeat.locked().take();
        if let Some(h) = heartbeat {
            h.abort();
            let _ = h.await;
        }
        if let Err(e) = membership::leave(&self.shared).await {
            first_error.get_or_insert(e);
        }
        {
            let mut state = self.shared.lock();
            state.buffer.clear();
            state.owned.clear();
        }
        debug!(group = %self.shared.group, member = %self.member_id, "left share group");
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn member_id(&self) -> &str {
        &self.member_id
    }
}
