//! One share session: the actor that owns the member's connection to one leader and sends every
//! request of the session in epoch order (see the parent module's docs).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, error, warn};
use uuid::Uuid;

use super::super::conn::{Connection, Versions};
use super::super::wire::codec::TopicId;
use super::super::wire::common::{
    AcknowledgePartition, AcknowledgeTopic, AcknowledgeType, NodeEndpoint,
};
use super::super::wire::records::{AcquiredRecord, OffsetRange, acquired_records};
use super::super::wire::share_acknowledge::{ShareAcknowledgeRequest, ShareAcknowledgeResponse};
use super::super::wire::share_fetch::{
    ForgottenTopic, ShareAcquireMode, ShareFetchPartitionData, ShareFetchRequest,
    ShareFetchResponse,
};
use super::acks::{AckRange, plan};
use super::{Buffered, Owned, Shared, Tp};
use crate::{Error, KafkaError as _};
use shareworker_core::lock::LockExt;
use shareworker_core::{AckKind, Delivery, Header, Headers, RecordId, SettleResult};

pub(crate) const SHARE_FETCH: Versions = Versions { min: 1, max: 2 };
pub(crate) const SHARE_ACKNOWLEDGE: Versions = Versions { min: 1, max: 2 };
const SHARE_FETCH_KEY: i16 = 78;
const SHARE_ACKNOWLEDGE_KEY: i16 = 79;
/// `MaxBytes` of a fetch.
const MAX_BYTES: i32 = 16 * 1024 * 1024;
/// From this many records a fetch asks in `ShareAcquireMode` batch-optimized (v2), below it in
/// record-limit. Batch-optimized acquires whole log batches (the broker keeps one state per
/// batch instead of one per offset, and acknowledgements of whole batches are single ranges):
/// it may exceed `MaxRecords` by up to a batch per partition, which is small next to a large
/// ask (the member buffers the excess). A small ask comes from a slow handler, which must not
/// get more than it asked for (records it cannot start soon would wait behind it).
const BATCH_OPTIMIZED_FROM: i32 = 256;
/// The epoch that closes a session.
const FINAL_EPOCH: i32 = -1;
/// How long a session waits to connect again after its connection was lost or given up: the
/// broker ends the old session (and releases its records) only when it notices the close, and
/// it ends a new session of the same member opened before that along with it.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// Kafka error codes handled here.
mod code {
    pub(super) const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub(super) const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub(super) const FENCED_LEADER_EPOCH: i16 = 74;
    pub(super) const UNKNOWN_TOPIC_ID: i16 = 100;
    pub(super) const INVALID_RECORD_STATE: i16 = 121;
    pub(super) const SHARE_SESSION_NOT_FOUND: i16 = 122;
    pub(super) const INVALID_SHARE_SESSION_EPOCH: i16 = 123;
}

/// Whether a partition error means its leader moved (or the topic changed): the member must
/// learn the new leader, and records acquired from the old one are lost to it.
fn leader_moved(code: i16) -> bool {
    matches!(
        code,
        code::NOT_LEADER_OR_FOLLOWER
            | code::FENCED_LEADER_EPOCH
            | code::UNKNOWN_TOPIC_OR_PARTITION
            | code::UNKNOWN_TOPIC_ID
    )
}

/// The epoch after `epoch`: 1 follows `i32::MAX`.
fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX { 1 } else { epoch + 1 }
}

fn wire_type(kind: AckKind) -> AcknowledgeType {
    match kind {
        AckKind::Accept => AcknowledgeType::Accept,
        AckKind::Release => AcknowledgeType::Release,
        AckKind::Reject => AcknowledgeType::Reject,
        AckKind::Renew => AcknowledgeType::Renew,
    }
}

/// What the member and the actor of one session share.
pub(super) struct SessionInfo {
    node: i32,
    /// Bumped by every reset: records acquired in an older generation are lost.
    generation: AtomicU64,
    /// A fetch is queued or in flight.
    fetching: AtomicBool,
    /// When the fetch queued or in flight was queued.
    fetch_since: Mutex<Option<Instant>>,
    /// The last fetch answered brought no records.
    quiet: AtomicBool,
    /// The partitions this session should fetch.
    wanted: Mutex<BTreeSet<Tp>>,
}

impl SessionInfo {
    fn wanted(&self) -> MutexGuard<'_, BTreeSet<Tp>> {
        self.wanted.locked()
    }

    fn fetch_since(&self) -> MutexGuard<'_, Option<Instant>> {
        self.fetch_since.locked()
    }

    /// No fetch queued or in flight any more.
    fn fetch_over(&self) {
        *self.fetch_since() = None;
        self.fetching.store(false, Ordering::Release);
    }
}

/// One acknowledgement sent to a session by `settle`.
pub(super) struct AckEntry {
    pub(super) tp: Tp,
    pub(super) id: RecordId,
    pub(super) kind: AckKind,
    pub(super) generation: u64,
}

/// What a session actor is asked to do.
pub(super) enum Command {
    /// Fetch once; records go to the member's buffer.
    Fetch {
        max_records: i32,
        max_wait: Duration,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    /// Acknowledge; one answer per entry, in order.
    Ack {
        entries: Vec<AckEntry>,
        reply: oneshot::Sender<Vec<SettleResult>>,
    },
    /// Send what is queued, close the session (epoch -1) and stop.
    Close {
        reply: oneshot::Sender<Result<(), Error>>,
    },
}

/// The member's handle on a session actor.
pub(super) struct SessionHandle {
    tx: mpsc::UnboundedSender<Command>,
    info: Arc<SessionInfo>,
}

impl SessionHandle {
    pub(super) fn node(&self) -> i32 {
        self.info.node
    }

    pub(super) fn set_wanted(&self, wanted: BTreeSet<Tp>) {
        *self.info.wanted() = wanted;
    }

    pub(super) fn has_partitions(&self) -> bool {
        !self.info.wanted().is_empty()
    }

    pub(super) fn is_fetching(&self) -> bool {
        self.info.fetching.load(Ordering::Acquire)
    }

    /// How long the fetch queued or in flight has been waiting for its answer, if there is one.
    pub(super) fn fetch_waiting(&self, now: Instant) -> Option<Duration> {
        self.info
            .fetch_since()
            .map(|since| now.saturating_duration_since(since))
    }

    /// Whether the last fetch answered brought no records: the next one probably waits out its
    /// `MaxWaitMs` too.
    pub(super) fn is_quiet(&self) -> bool {
        self.info.quiet.load(Ordering::Acquire)
    }

    /// Queues a fetch unless one is queued or in flight; whether it was queued.
    pub(super) fn fetch(
        &self,
        max_records: i32,
        max_wait: Duration,
        reply: oneshot::Sender<Result<(), Error>>,
    ) -> bool {
        if self.info.fetching.swap(true, Ordering::AcqRel) {
            return false;
        }
        *self.info.fetch_since() = Some(Instant::now());
        let queued = self.send(Command::Fetch {
            max_records,
            max_wait,
            reply,
        });
        if !queued {
            self.info.fetch_over();
        }
        queued
    }

    /// Queues a command; false when the actor has stopped.
    pub(super) fn send(&self, command: Command) -> bool {
        self.tx.send(command).is_ok()
    }
}

/// Starts the session actor for broker `node`.
pub(super) fn spawn(shared: Arc<Shared>, node: i32) -> SessionHandle {
    let info = Arc::new(SessionInfo {
        node,
        generation: AtomicU64::new(0),
        fetching: AtomicBool::new(false),
        fetch_since: Mutex::new(None),
        quiet: AtomicBool::new(false),
        wanted: Mutex::new(BTreeSet::new()),
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let actor = Actor {
        shared,
        info: info.clone(),
        rx,
        conn: None,
        epoch: 0,
        in_session: BTreeSet::new(),
        pending: Vec::new(),
        calls: HashMap::new(),
        next_call: 0,
        fetch: None,
        lock_timeout: Duration::from_secs(30),
        reconnect_at: None,
    };
    tokio::spawn(actor.run());
    SessionHandle { tx, info }
}

/// Where the answer of a queued acknowledgement goes.
#[derive(Clone, Copy, Debug)]
struct Slot {
    call: u64,
    index: usize,
}

/// An acknowledgement waiting to be sent.
#[derive(Clone, Debug)]
struct Pending {
    tp: Tp,
    range: AckRange,
    /// Failed with its partition: send it on its own so its answer is its own.
    alone: bool,
    /// `None` for the automatic ones (GAP, release of records never delivered).
    slot: Option<Slot>,
    /// The record, for messages.
    id: Option<RecordId>,
}

impl Pending {
    fn renew(&self) -> bool {
        self.range.kind == AcknowledgeType::Renew
    }

    fn what(&self) -> String {
        match &self.id {
            Some(id) => id.to_string(),
            None => format!(
                "offsets {}..={} of partition {}",
                self.range.first, self.range.last, self.tp.1
            ),
        }
    }
}

/// The answers of one `Command::Ack`.
struct Call {
    results: Vec<Option<SettleResult>>,
    left: usize,
    reply: Option<oneshot::Sender<Vec<SettleResult>>>,
}

struct FetchCmd {
    max_records: i32,
    max_wait: Duration,
    reply: oneshot::Sender<Result<(), Error>>,
}

/// How a request went, for the acknowledgements it carried.
enum Outcome {
    /// The broker answered; the partitions' acknowledgement error codes and messages.
    Answered(HashMap<Tp, (i16, Option<String>)>),
    /// The request failed as a whole.
    Failed(Error),
}

struct Actor {
    shared: Arc<Shared>,
    info: Arc<SessionInfo>,
    rx: mpsc::UnboundedReceiver<Command>,
    /// The session's own connection; `None` means no session on the broker (epoch 0).
    conn: Option<Connection>,
    /// The epoch of the next request; 0 when no session is open.
    epoch: i32,
    /// The partitions the broker has in the session.
    in_session: BTreeSet<Tp>,
    pending: Vec<Pending>,
    calls: HashMap<u64, Call>,
    next_call: u64,
    fetch: Option<FetchCmd>,
    lock_timeout: Duration,
    /// Do not connect before this (after a lost connection).
    reconnect_at: Option<Instant>,
}

impl Actor {
    fn node(&self) -> i32 {
        self.info.node
    }

    fn generation(&self) -> u64 {
        self.info.generation.load(Ordering::Acquire)
    }

    async fn run(mut self) {
        let mut closing = None;
        loop {
            if self.fetch.is_none() && self.pending.is_empty() {
                match self.rx.recv().await {
                    Some(c) => self.accept(c, &mut closing),
                    // The member is gone: dropping the connection ends the session.
                    None => break,
                }
            }
            while let Ok(c) = self.rx.try_recv() {
                self.accept(c, &mut closing);
            }
            self.check_connection();
            if let Some(reply) = closing.take() {
                let result = self.close().await;
                let _ = reply.send(result);
                self.rx.close();
                while let Ok(c) = self.rx.try_recv() {
                    self.refuse(c);
                }
                break;
            }
            if self.pending.iter().any(Pending::renew) {
                self.send_acks(true).await;
                continue;
            }
            let stray = {
                let wanted = self.info.wanted();
                self.pending.iter().any(|p| !wanted.contains(&p.tp))
            };
            if self.fetch.is_some() && !stray {
                self.send_fetch().await;
            } else if !self.pending.is_empty() {
                self.send_acks(false).await;
            }
        }
        self.info.fetch_over();
    }

    fn accept(&mut self, c: Command, closing: &mut Option<oneshot::Sender<Result<(), Error>>>) {
        match c {
            Command::Fetch {
                max_records,
                max_wait,
                reply,
            } => {
                if let Some(old) = self.fetch.replace(FetchCmd {
                    max_records,
                    max_wait,
                    reply,
                }) {
                    self.fetch_done(old, Ok(()));
                }
            }
            Command::Ack { entries, reply } => {
                let call = self.next_call;
                self.next_call += 1;
                let n = entries.len();
                self.calls.insert(
                    call,
                    Call {
                        results: (0..n).map(|_| None).collect(),
                        left: n,
                        reply: Some(reply),
                    },
                );
                if n == 0 {
                    self.finish_call(call);
                }
                let generation = self.generation();
                for (index, e) in entries.into_iter().enumerate() {
                    let slot = Some(Slot { call, index });
                    if e.generation != generation {
                        let err = Error::lock_lost(format!(
                            "{}: the share session with broker {} that acquired it has ended; the record will be delivered again",
                            e.id,
                            self.node()
                        ));
                        self.answer(slot, Err(err));
                        continue;
                    }
                    self.pending.push(Pending {
                        tp: e.tp,
                        range: AckRange {
                            first: e.id.offset,
                            last: e.id.offset,
                            kind: wire_type(e.kind),
                        },
                        alone: false,
                        slot,
                        id: Some(e.id),
                    });
                }
            }
            Command::Close { reply } => {
                if let Some(old) = closing.replace(reply) {
                    let _ = old.send(Ok(()));
                }
            }
        }
    }

    /// Answers a command that came after the close.
    fn refuse(&mut self, c: Command) {
        let closed = || {
            Error::closed(format!(
                "member {} has left share group `{}`",
                self.shared.member_id, self.shared.group
            ))
        };
        match c {
            Command::Fetch { reply, .. } => {
                let _ = reply.send(Err(closed()));
            }
            Command::Ack { entries, reply } => {
                let _ = reply.send(entries.iter().map(|_| Err(closed())).collect());
            }
            Command::Close { reply } => {
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn answer(&mut self, slot: Option<Slot>, result: SettleResult) {
        let Some(slot) = slot else { return };
        let done = match self.calls.get_mut(&slot.call) {
            Some(call) => {
                if let Some(r) = call.results.get_mut(slot.index)
                    && r.is_none()
                {
                    *r = Some(result);
                    call.left -= 1;
                }
                call.left == 0
            }
            None => false,
        };
        if done {
            self.finish_call(slot.call);
        }
    }

    fn finish_call(&mut self, call: u64) {
        if let Some(mut c) = self.calls.remove(&call)
            && let Some(reply) = c.reply.take()
        {
            let _ = reply.send(
                c.results
                    .into_iter()
                    .map(|r| r.unwrap_or_else(|| Err(Error::broker("no answer"))))
                    .collect(),
            );
        }
    }

    fn fetch_done(&mut self, cmd: FetchCmd, result: Result<(), Error>) {
        let answered = result.is_ok();
        let _ = cmd.reply.send(result);
        self.info.fetch_over();
        {
            let mut state = self.shared.lock();
            if answered {
                state.fetches_answered = state.fetches_answered.wrapping_add(1);
            }
            state.in_flight_records = state
                .in_flight_records
                .saturating_sub(usize::try_from(cmd.max_records).unwrap_or(0));
        }
        self.shared.bump();
    }

    /// A connection the broker closed took the session with it.
    fn check_connection(&mut self) {
        if self.conn.as_ref().is_some_and(Connection::is_closed) {
            self.conn = None;
            self.reconnect_at = Some(Instant::now() + RECONNECT_PAUSE);
            self.reset("the connection was lost");
            self.broker_unreachable();
        }
    }

    /// The broker did not answer: it may be gone, and a new leader elected for its partitions.
    /// Metadata is refreshed before the next routing pass, so they are fetched from wherever
    /// metadata says they are led (this broker again once it is back).
    fn broker_unreachable(&self) {
        self.shared.lock().reroute(true);
        self.shared.bump();
    }

    /// Ends the session on this side: the next request opens a new one (epoch 0); what was
    /// acquired in the old one is lost to this member.
    fn reset(&mut self, why: &str) {
        let old = self.info.generation.fetch_add(1, Ordering::AcqRel);
        if self.epoch != 0 {
            debug!(group = %self.shared.group, member = %self.shared.member_id, node = self.node(), why, "share session reset");
        }
        self.epoch = 0;
        self.in_session.clear();
        for p in std::mem::take(&mut self.pending) {
            let err = Error::lock_lost(format!(
                "{}: the share session with broker {} that acquired it ended ({why}); the record will be delivered again",
                p.what(),
                self.node()
            ));
            self.answer(p.slot, Err(err));
        }
        let node = self.node();
        let mut state = self.shared.lock();
        state
            .buffer
            .retain(|b| !(b.node == node && b.generation <= old));
        state
            .owned
            .retain(|_, o| !(o.node == node && o.generation <= old));
    }

    /// Drops the connection (the broker then ends the session and releases its records) and
    /// resets the session.
    fn drop_connection(&mut self, why: &Error) {
        self.conn = None;
        self.reconnect_at = Some(Instant::now() + RECONNECT_PAUSE);
        self.reset(&why.to_string());
        self.broker_unreachable();
    }

    async fn connection(&mut self) -> Result<Connection, Error> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        if let Some(at) = self.reconnect_at.take() {
            tokio::time::sleep_until(at).await;
        }
        let addr = self.shared.cluster.address(self.node())?;
        let conn = self.shared.cluster.open(&addr).await?;
        // A new connection has no session.
        if self.epoch != 0 {
            self.reset("a new connection");
        }
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// Picks the acknowledgements of the next request: RENEW ones or the others; for a
    /// partition with acknowledgements to be sent alone, only the first of those.
    fn select(&mut self, renew: bool, only: Option<&BTreeSet<Tp>>) -> Vec<Pending> {
        let alone_tps: HashSet<Tp> = self
            .pending
            .iter()
            .filter(|p| p.renew() == renew && p.alone)
            .map(|p| p.tp)
            .collect();
        let mut taken_alone = HashSet::new();
        let mut take = Vec::with_capacity(self.pending.len());
        for p in &self.pending {
            let eligible = p.renew() == renew
                && only.is_none_or(|o| o.contains(&p.tp))
                && (!alone_tps.contains(&p.tp) || (p.alone && taken_alone.insert(p.tp)));
            take.push(eligible);
        }
        let mut selected = Vec::new();
        let mut kept = Vec::new();
        for (p, t) in std::mem::take(&mut self.pending).into_iter().zip(take) {
            if t { selected.push(p) } else { kept.push(p) }
        }
        self.pending = kept;
        selected
    }

    /// Turns acknowledgements into the `Topics` of a request (plus, for a fetch, partitions
    /// listed only to be fetched). Conflicting ones are answered at once and left out. Returns
    /// the topics and the acknowledgements sent, by partition.
    fn build(
        &mut self,
        acks: Vec<Pending>,
        fetch_only: &BTreeSet<Tp>,
    ) -> (Vec<AcknowledgeTopic>, HashMap<Tp, Vec<Pending>>) {
        let mut by_tp: BTreeMap<Tp, Vec<Pending>> = BTreeMap::new();
        for p in acks {
            by_tp.entry(p.tp).or_default().push(p);
        }
        let mut partitions: BTreeMap<Uuid, Vec<AcknowledgePartition>> = BTreeMap::new();
        let mut sent: HashMap<Tp, Vec<Pending>> = HashMap::new();
        for (tp, list) in by_tp {
            let ranges: Vec<AckRange> = list.iter().map(|p| p.range).collect();
            let planned = plan(&ranges);
            let mut list: Vec<Option<Pending>> = list.into_iter().map(Some).collect();
            for i in planned.conflicts {
                if let Some(p) = list[i].take() {
                    let err = Error::invalid_input(format!(
                        "{}: acknowledged twice in different ways at once",
                        p.what()
                    ));
                    self.answer(p.slot, Err(err));
                }
            }
            let carried: Vec<Pending> = planned
                .included
                .iter()
                .filter_map(|&i| list[i].take())
                .collect();
            if carried.is_empty() {
                continue;
            }
            partitions
                .entry(tp.0)
                .or_default()
                .push(AcknowledgePartition {
                    partition_index: tp.1,
                    acknowledgement_batches: planned.batches,
                });
            sent.insert(tp, carried);
        }
        for tp in fetch_only {
            if sent.contains_key(tp) {
                continue;
            }
            partitions
                .entry(tp.0)
                .or_default()
                .push(AcknowledgePartition {
                    partition_index: tp.1,
                    acknowledgement_batches: Vec::new(),
                });
        }
        let topics = partitions
            .into_iter()
            .map(|(id, mut partitions)| {
                partitions.sort_by_key(|p| p.partition_index);
                AcknowledgeTopic {
                    topic_id: TopicId(id.into_bytes()),
                    partitions,
                }
            })
            .collect();
        (topics, sent)
    }

    /// Answers the acknowledgements a request carried. A partition with several that failed
    /// with INVALID_RECORD_STATE is retried one acknowledgement at a time (the broker applies a
    /// partition's acknowledgements all or nothing), unless `retry` is false.
    fn conclude(
        &mut self,
        api: &str,
        sent: HashMap<Tp, Vec<Pending>>,
        outcome: &Outcome,
        retry: bool,
    ) {
        for (tp, list) in sent {
            let answer = match outcome {
                Outcome::Failed(e) => Some((None, e.to_string())),
                Outcome::Answered(codes) => match codes.get(&tp) {
                    Some((0, _)) => None,
                    Some((c, m)) => {
                        self.shared.cluster.errors().answered(api, *c);
                        Some((Some(*c), m.clone().unwrap_or_default()))
                    }
                    None => Some((None, format!("{api}: the broker did not answer for it"))),
                },
            };
            let Some((code, message)) = answer else {
                for p in list {
                    self.answer(p.slot, Ok(()));
                }
                continue;
            };
            if retry && code == Some(code::INVALID_RECORD_STATE) && list.len() > 1 {
                debug!(group = %self.shared.group, node = self.node(), partition = tp.1, n = list.len(),
                    "a partition's acknowledgements failed together; sending them one by one");
                for mut p in list {
                    p.alone = true;
                    self.pending.push(p);
                }
                continue;
            }
            if code.is_some_and(leader_moved) {
                self.leader_moved(tp, None);
            }
            for p in list {
                let err = match code {
                    None => match outcome {
                        // The whole request failed: the session is gone with its records.
                        Outcome::Failed(_) => Error::lock_lost(format!(
                            "{}: {message}; the record will be delivered again",
                            p.what()
                        )),
                        Outcome::Answered(_) => Error::broker(format!("{}: {message}", p.what())),
                    },
                    Some(c) => ack_error(api, c, &message, &p),
                };
                if p.slot.is_none() {
                    debug!(group = %self.shared.group, node = self.node(), error = %err, "automatic acknowledgement failed");
                }
                self.answer(p.slot, Err(err));
            }
        }
    }

    /// A partition's leader moved: learn where to, and route the partition again.
    fn leader_moved(&self, tp: Tp, leader: Option<(i32, i32)>) {
        let cluster = &self.shared.cluster;
        let mut state = self.shared.lock();
        let known = match (leader, state.names.get(&tp.0)) {
            (Some((id, epoch)), Some(name)) if id >= 0 => {
                cluster.set_leader(name, tp.1, id, epoch);
                true
            }
            _ => false,
        };
        state.reroute(!known);
    }

    fn learn_nodes(&self, endpoints: &[NodeEndpoint]) {
        for n in endpoints {
            self.shared
                .cluster
                .learn_node(n.node_id, n.host.as_str(), n.port);
        }
    }

    fn request_ids(&self) -> (StrBytes, StrBytes) {
        (
            StrBytes::from_string(self.shared.group.to_string()),
            StrBytes::from_string(self.shared.member_id.to_string()),
        )
    }

    async fn send_fetch(&mut self) {
        let Some(cmd) = self.fetch.take() else { return };
        let wanted = self.info.wanted().clone();
        if wanted.is_empty() {
            self.fetch_done(cmd, Ok(()));
            return;
        }
        let conn = match self.connection().await {
            Ok(c) => c,
            Err(e) => {
                self.broker_unreachable();
                self.fetch_done(cmd, Err(e));
                return;
            }
        };
        let version = match conn.pick(SHARE_FETCH_KEY, SHARE_FETCH) {
            Ok(v) => v,
            Err(e) => {
                self.fetch_done(cmd, Err(e));
                return;
            }
        };
        let opening = self.epoch == 0;
        let riding = if opening {
            Vec::new()
        } else {
            self.select(false, Some(&wanted))
        };
        let added: BTreeSet<Tp> = if opening {
            wanted.clone()
        } else {
            wanted.difference(&self.in_session).copied().collect()
        };
        let forgotten: BTreeMap<Uuid, Vec<i32>> = if opening {
            BTreeMap::new()
        } else {
            let mut f: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
            for tp in self.in_session.difference(&wanted) {
                f.entry(tp.0).or_default().push(tp.1);
            }
            f
        };
        let (topics, sent) = self.build(riding, &added);
        let max_wait = if sent.is_empty() {
            cmd.max_wait
        } else {
            Duration::ZERO
        };
        let (group_id, member_id) = self.request_ids();
        let req = ShareFetchRequest {
            group_id,
            member_id,
            share_session_epoch: self.epoch,
            max_wait_ms: i32::try_from(max_wait.as_millis()).unwrap_or(i32::MAX),
            min_bytes: 1,
            max_bytes: MAX_BYTES,
            max_records: cmd.max_records,
            batch_size: cmd.max_records,
            share_acquire_mode: acquire_mode(version, cmd.max_records),
            is_renew_ack: false,
            topics,
            forgotten_topics_data: forgotten
                .into_iter()
                .map(|(id, partitions)| ForgottenTopic {
                    topic_id: TopicId(id.into_bytes()),
                    partitions,
                })
                .collect(),
        };
        let result = conn.call_version(&req, version).await;
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                warn!(group = %self.shared.group, member = %self.shared.member_id, node = self.node(), error = %e,
                    "ShareFetch failed; the share session is reset");
                self.conclude(
                    "ShareFetch",
                    sent,
                    &Outcome::Failed(e.clone_message()),
                    false,
                );
                self.drop_connection(&e);
                self.fetch_done(cmd, Err(e));
                return;
            }
        };
        if resp.error_code != 0 {
            let e = conn.errors().error(
                "ShareFetch",
                resp.error_code,
                resp.error_message.as_ref().map(|m| m.as_str()),
            );
            self.conclude(
                "ShareFetch",
                sent,
                &Outcome::Failed(e.clone_message()),
                false,
            );
            self.reset(&e.to_string());
            let session_gone = matches!(
                resp.error_code,
                code::SHARE_SESSION_NOT_FOUND | code::INVALID_SHARE_SESSION_EPOCH
            );
            if session_gone {
                // Open a new session on the next round.
                self.fetch_done(cmd, Ok(()));
            } else {
                self.fetch_done(cmd, Err(e));
            }
            return;
        }
        self.epoch = next_epoch(self.epoch);
        self.in_session = wanted;
        if let Ok(ms) = u64::try_from(resp.acquisition_lock_timeout_ms)
            && ms > 0
        {
            self.lock_timeout = Duration::from_millis(ms);
        }
        self.learn_nodes(&resp.node_endpoints);
        let codes = self.take_records(resp);
        self.conclude("ShareFetch", sent, &Outcome::Answered(codes), true);
        self.fetch_done(cmd, Ok(()));
    }

    /// Puts the records of a fetch answer into the member's buffer and queues the automatic
    /// acknowledgements; returns the acknowledgement error codes by partition.
    fn take_records(&mut self, resp: ShareFetchResponse) -> HashMap<Tp, (i16, Option<String>)> {
        let mut codes = HashMap::new();
        let mut delivered = Vec::new();
        let generation = self.generation();
        let now = Instant::now();
        for topic in resp.responses {
            let id = Uuid::from_bytes(topic.topic_id.0);
            let name = {
                let state = self.shared.lock();
                state.names.get(&id).cloned()
            }
            .or_else(|| self.shared.cluster.topic_name(&id));
            for p in topic.partitions {
                let tp = (id, p.partition_index);
                codes.insert(
                    tp,
                    (
                        p.acknowledge_error_code,
                        p.acknowledge_error_message.as_ref().map(|m| m.to_string()),
                    ),
                );
                if p.error_code != 0 {
                    self.partition_error(tp, &p);
                    continue;
                }
                if p.acquired_records.is_empty() {
                    continue;
                }
                let Some(name) = &name else {
                    warn!(group = %self.shared.group, topic_id = %TopicId(topic.topic_id.0), "records of an unknown topic id; releasing them");
                    self.release_all(tp, &p);
                    continue;
                };
                match acquired_records(&p.records, &p.acquired_records) {
                    Ok(found) => {
                        for r in found.records {
                            delivered.push(self.delivery(name, tp, r));
                        }
                        self.automatic(tp, &found.gaps, AcknowledgeType::Gap);
                        self.automatic(tp, &found.missing, AcknowledgeType::Release);
                    }
                    Err(e) => {
                        warn!(group = %self.shared.group, topic = %name, partition = tp.1, error = %e,
                            "a fetched record batch does not decode; releasing the records acquired in it");
                        self.release_all(tp, &p);
                    }
                }
            }
        }
        self.info
            .quiet
            .store(delivered.is_empty(), Ordering::Release);
        if !delivered.is_empty() {
            let node = self.node();
            let mut state = self.shared.lock();
            for (d, topic_id) in delivered {
                state.owned.insert(
                    d.id.clone(),
                    Owned {
                        node,
                        generation,
                        topic_id,
                    },
                );
                state.buffer.push_back(Buffered {
                    delivery: d,
                    node,
                    generation,
                    at: now,
                });
            }
        }
        codes
    }

    fn delivery(&self, topic: &Arc<str>, tp: Tp, r: AcquiredRecord) -> (Delivery, Uuid) {
        let mut headers = Headers::new();
        for (key, value) in r.headers {
            headers.push_header(Header {
                key: key.to_string(),
                value,
            });
        }
        // A negative (unknown) timestamp reads as the epoch.
        let timestamp = u64::try_from(r.timestamp)
            .map_or(UNIX_EPOCH, |ms| UNIX_EPOCH + Duration::from_millis(ms));
        let d = Delivery {
            id: RecordId {
                topic: topic.clone(),
                partition: tp.1,
                offset: r.offset,
            },
            key: r.key,
            value: r.value,
            headers,
            timestamp,
            delivery_count: u16::try_from(r.delivery_count.max(1)).unwrap_or(1),
            lock_duration: self.lock_timeout,
        };
        (d, tp.0)
    }

    fn automatic(&mut self, tp: Tp, ranges: &[OffsetRange], kind: AcknowledgeType) {
        for r in ranges {
            self.pending.push(Pending {
                tp,
                range: AckRange {
                    first: r.first,
                    last: r.last,
                    kind,
                },
                alone: false,
                slot: None,
                id: None,
            });
        }
    }

    fn release_all(&mut self, tp: Tp, p: &ShareFetchPartitionData) {
        let ranges: Vec<OffsetRange> = p
            .acquired_records
            .iter()
            .filter(|a| a.first_offset <= a.last_offset)
            .map(|a| OffsetRange {
                first: a.first_offset,
                last: a.last_offset,
            })
            .collect();
        self.automatic(tp, &ranges, AcknowledgeType::Release);
    }

    fn partition_error(&mut self, tp: Tp, p: &ShareFetchPartitionData) {
        let message = p.error_message.as_ref().map(|m| m.as_str());
        let e = self
            .shared
            .cluster
            .errors()
            .error("ShareFetch", p.error_code, message);
        if leader_moved(p.error_code) {
            let leader = (p.current_leader.leader_id >= 0)
                .then_some((p.current_leader.leader_id, p.current_leader.leader_epoch));
            debug!(group = %self.shared.group, node = self.node(), partition = tp.1, error = %e, ?leader,
                "the partition's leader moved; routing it again");
            self.leader_moved(tp, leader);
        } else if e.is_not_authorized() {
            // No Read on the topic (or the group): asking again cannot help. Every acquire
            // fails with it from now on, instead of fetching again at once, forever.
            let mut state = self.shared.lock();
            if state.fatal.is_none() {
                error!(group = %self.shared.group, node = self.node(), partition = tp.1, error = %e,
                    "the broker refuses to let this member read the partition: the principal needs Read on the topic and the group");
                state.fatal = Some(super::Fatal {
                    api: "ShareFetch",
                    code: p.error_code,
                    message: message.map(str::to_owned),
                });
                drop(state);
                self.shared.bump();
            }
        } else {
            warn!(group = %self.shared.group, node = self.node(), partition = tp.1, error = %e, "fetching a partition failed");
        }
        if !p.acquired_records.is_empty() {
            self.release_all(tp, p);
        }
    }

    /// Sends the queued acknowledgements (RENEW ones, or the others) as a ShareAcknowledge.
    async fn send_acks(&mut self, renew: bool) {
        let selected = self.select(renew, None);
        if selected.is_empty() {
            return;
        }
        let conn = match (&self.conn, self.epoch) {
            (Some(c), e) if e != 0 => c.clone(),
            _ => {
                // No open session: what it acquired is gone.
                self.pending.extend(selected);
                self.reset("no open share session");
                return;
            }
        };
        let version = match conn.pick(SHARE_ACKNOWLEDGE_KEY, SHARE_ACKNOWLEDGE) {
            Ok(v) if v >= 2 || !renew => v,
            Ok(_) => {
                for p in selected {
                    let err = Error::broker(format!(
                        "{}: this broker cannot renew locks (RENEW needs ShareAcknowledge v2, Kafka 4.2 or newer)",
                        p.what()
                    ));
                    self.answer(p.slot, Err(err));
                }
                return;
            }
            Err(e) => {
                let msg = e.to_string();
                for p in selected {
                    self.answer(p.slot, Err(Error::broker(format!("{}: {msg}", p.what()))));
                }
                return;
            }
        };
        let (topics, sent) = self.build(selected, &BTreeSet::new());
        if sent.is_empty() {
            return;
        }
        let (group_id, member_id) = self.request_ids();
        let req = ShareAcknowledgeRequest {
            group_id,
            member_id,
            share_session_epoch: self.epoch,
            is_renew_ack: renew,
            topics,
        };
        match conn.call_version(&req, version).await {
            Ok(resp) => self.acknowledged(resp, sent, renew, true),
            Err(e) => {
                warn!(group = %self.shared.group, member = %self.shared.member_id, node = self.node(), error = %e,
                    "ShareAcknowledge failed; the share session is reset");
                self.conclude(
                    "ShareAcknowledge",
                    sent,
                    &Outcome::Failed(e.clone_message()),
                    false,
                );
                self.drop_connection(&e);
            }
        }
    }

    /// Handles a ShareAcknowledge answer.
    fn acknowledged(
        &mut self,
        resp: ShareAcknowledgeResponse,
        sent: HashMap<Tp, Vec<Pending>>,
        renew: bool,
        retry: bool,
    ) {
        let api = if renew {
            "ShareAcknowledge (renew)"
        } else {
            "ShareAcknowledge"
        };
        if resp.error_code != 0 {
            let e = self.shared.cluster.errors().error(
                api,
                resp.error_code,
                resp.error_message.as_ref().map(|m| m.as_str()),
            );
            self.conclude(api, sent, &Outcome::Failed(e.clone_message()), false);
            self.reset(&e.to_string());
            return;
        }
        if self.epoch != 0 && self.epoch != FINAL_EPOCH {
            self.epoch = next_epoch(self.epoch);
        }
        if let Some(ms) = resp.acquisition_lock_timeout_ms
            && let Ok(ms) = u64::try_from(ms)
            && ms > 0
        {
            self.lock_timeout = Duration::from_millis(ms);
        }
        self.learn_nodes(&resp.node_endpoints);
        let mut codes = HashMap::new();
        for topic in resp.responses {
            let id = Uuid::from_bytes(topic.topic_id.0);
            for p in topic.partitions {
                let tp = (id, p.partition_index);
                if leader_moved(p.error_code) && p.current_leader.leader_id >= 0 {
                    self.leader_moved(
                        tp,
                        Some((p.current_leader.leader_id, p.current_leader.leader_epoch)),
                    );
                }
                codes.insert(
                    tp,
                    (
                        p.error_code,
                        p.error_message.as_ref().map(|m| m.to_string()),
                    ),
                );
            }
        }
        self.conclude(api, sent, &Outcome::Answered(codes), retry);
    }

    /// Closes the session: the queued acknowledgements (RENEW ones are dropped) in a
    /// ShareAcknowledge with epoch -1, which also releases every record still held here.
    async fn close(&mut self) -> Result<(), Error> {
        if let Some(cmd) = self.fetch.take() {
            let err = Error::closed("the member is leaving");
            self.fetch_done(cmd, Err(err));
        }
        let (renews, acks): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(Pending::renew);
        for p in renews {
            let err = Error::closed(format!("{}: not renewed, the member is leaving", p.what()));
            self.answer(p.slot, Err(err));
        }
        let conn = match (&self.conn, self.epoch) {
            (Some(c), e) if e != 0 && !c.is_closed() => c.clone(),
            _ => {
                // No session on the broker: nothing is held there.
                self.pending = acks;
                self.reset("the member left");
                return Ok(());
            }
        };
        let version = conn.pick(SHARE_ACKNOWLEDGE_KEY, SHARE_ACKNOWLEDGE)?;
        let (topics, sent) = self.build(acks, &BTreeSet::new());
        let (group_id, member_id) = self.request_ids();
        let req = ShareAcknowledgeRequest {
            group_id,
            member_id,
            share_session_epoch: FINAL_EPOCH,
            is_renew_ack: false,
            topics,
        };
        let result = conn.call_version(&req, version).await;
        self.epoch = FINAL_EPOCH;
        let outcome = match result {
            Ok(resp) => {
                let code = resp.error_code;
                let message = resp.error_message.as_ref().map(|m| m.to_string());
                self.acknowledged(resp, sent, false, false);
                match code {
                    0 | code::SHARE_SESSION_NOT_FOUND => Ok(()),
                    c => Err(Error::kafka(
                        "ShareAcknowledge (closing the share session)",
                        c,
                        message.as_deref(),
                    )),
                }
            }
            Err(e) => {
                self.conclude(
                    "ShareAcknowledge",
                    sent,
                    &Outcome::Failed(e.clone_message()),
                    false,
                );
                Err(e)
            }
        };
        // Dropping the connection ends whatever is left of the session.
        self.conn = None;
        self.epoch = 0;
        self.reset("the member left");
        outcome
    }
}

/// The error of one acknowledgement whose partition failed with `code`.
fn ack_error(api: &str, code: i16, message: &str, p: &Pending) -> Error {
    let what = p.what();
    if leader_moved(code) {
        let e = Error::kafka(api, code, Some(message));
        return Error::lock_lost(format!(
            "{what}: {e}: the partition's leader changed; the record will be delivered again"
        ));
    }
    if code == code::INVALID_RECORD_STATE && p.renew() {
        let text = format!(
            "{what}: the lock was not renewed: it expired or the record is not acquired by this member, or the group refuses renewal (share.renew.acknowledge.enable may be false for this group){}",
            if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            }
        );
        return Error::kafka(api, code, Some(&text));
    }
    let text = if message.is_empty() {
        what
    } else {
        format!("{what}: {message}")
    };
    Error::kafka(api, code, Some(&text))
}

/// An [`Error`] is not `Clone`; this keeps what matters for answers derived from it.
trait CloneMessage {
    fn clone_message(&self) -> Error;
}

impl CloneMessage for Error {
    fn clone_message(&self) -> Error {
        Error::broker(self.to_string())
    }
}

/// The `ShareAcquireMode` of a fetch of `max_records` in ShareFetch `version`.
fn acquire_mode(version: i16, max_records: i32) -> ShareAcquireMode {
    if version >= 2 && max_records < BATCH_OPTIMIZED_FROM {
        ShareAcquireMode::RecordLimit
    } else {
        ShareAcquireMode::BatchOptimized
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_fetches_are_batch_optimized_small_ones_record_limited() {
        assert_eq!(acquire_mode(2, 24), ShareAcquireMode::RecordLimit);
        assert_eq!(
            acquire_mode(2, BATCH_OPTIMIZED_FROM - 1),
            ShareAcquireMode::RecordLimit
        );
        assert_eq!(
            acquire_mode(2, BATCH_OPTIMIZED_FROM),
            ShareAcquireMode::BatchOptimized
        );
        assert_eq!(acquire_mode(2, 5000), ShareAcquireMode::BatchOptimized);
        // v1 has no mode field: batch-optimized is what the broker does.
        assert_eq!(acquire_mode(1, 24), ShareAcquireMode::BatchOptimized);
    }

    #[test]
    fn epochs_wrap_to_one() {
        assert_eq!(next_epoch(0), 1);
        assert_eq!(next_epoch(41), 42);
        assert_eq!(next_epoch(i32::MAX), 1);
    }

    #[test]
    fn renew_refusal_names_the_group_config() {
        let p = Pending {
            tp: (Uuid::nil(), 0),
            range: AckRange {
                first: 3,
                last: 3,
                kind: AcknowledgeType::Renew,
            },
            alone: false,
            slot: None,
            id: Some(RecordId::new("t", 0, 3)),
        };
        let e = ack_error("ShareAcknowledge", 121, "", &p);
        assert!(e.is_lock_lost());
        assert_eq!(e.kafka_code(), Some(121));
        assert!(
            e.to_string()
                .contains("share.renew.acknowledge.enable may be false for this group"),
            "{e}"
        );
        let moved = ack_error("ShareAcknowledge", 6, "moved", &p);
        assert!(moved.is_lock_lost(), "{moved}");
        let other = ack_error("ShareAcknowledge", 42, "bad", &p);
        assert!(other.is_broker() && !other.is_lock_lost(), "{other}");
    }
}
