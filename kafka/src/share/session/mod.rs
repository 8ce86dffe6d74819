//! One share session: the actor that owns the member's connection to one leader and sends every
//! request of the session in epoch order (see the parent module's docs).
//!
//! The actor does the I/O: it takes the member's commands, connects, sends what the session's
//! [state](state) builds and hands the answers back to it; it puts fetched records into the
//! member's buffer and applies what an answer means for the member (a partition to route
//! again, an error code to count). The rules of the session protocol live in the state type.

mod state;

use std::collections::{BTreeSet, HashMap};
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
use super::super::wire::common::{AcknowledgeType, NodeEndpoint};
use super::super::wire::records::{AcquiredRecord, OffsetRange, acquired_records};
use super::super::wire::share_acknowledge::ShareAcknowledgeResponse;
use super::super::wire::share_fetch::{ShareFetchPartitionData, ShareFetchResponse};
use super::{Buffered, Owned, Shared, Tp};
use crate::{Error, KafkaError as _};
use shareworker_core::lock::LockExt;
use shareworker_core::{AckKind, Delivery, Header, Headers, RecordId, SettleResult};
use state::{Effects, Outcome, SessionState, Step, code, leader_moved};

pub(crate) const SHARE_FETCH: Versions = Versions { min: 1, max: 2 };
pub(crate) const SHARE_ACKNOWLEDGE: Versions = Versions { min: 1, max: 2 };
const SHARE_FETCH_KEY: i16 = 78;
const SHARE_ACKNOWLEDGE_KEY: i16 = 79;
/// How long a session waits to connect again after its connection was lost or given up: the
/// broker ends the old session (and releases its records) only when it notices the close, and
/// it ends a new session of the same member opened before that along with it.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

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
        info: info.clone(),
        state: SessionState::new(node, shared.group.clone()),
        shared,
        rx,
        conn: None,
        fetch: None,
        reconnect_at: None,
    };
    tokio::spawn(actor.run());
    SessionHandle { tx, info }
}

struct FetchCmd {
    max_records: i32,
    max_wait: Duration,
    reply: oneshot::Sender<Result<(), Error>>,
}

struct Actor {
    shared: Arc<Shared>,
    info: Arc<SessionInfo>,
    rx: mpsc::UnboundedReceiver<Command>,
    /// The session's own connection; `None` means no session on the broker (epoch 0).
    conn: Option<Connection>,
    state: SessionState,
    fetch: Option<FetchCmd>,
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
            if self.fetch.is_none() && !self.state.has_pending() {
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
            let step = {
                let wanted = self.info.wanted();
                self.state.next(self.fetch.is_some(), &wanted)
            };
            match step {
                Step::Renew => self.send_acks(true).await,
                Step::Fetch => self.send_fetch().await,
                Step::Acknowledge => self.send_acks(false).await,
                Step::Wait => {}
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
                let generation = self.generation();
                self.state.queue(entries, generation, reply);
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
        if self.state.reset(why) {
            debug!(group = %self.shared.group, member = %self.shared.member_id, node = self.node(), why, "share session reset");
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
        if self.state.epoch() != 0 {
            self.reset("a new connection");
        }
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// Applies what an answer meant beyond the session.
    fn apply(&self, effects: Effects) {
        for (api, code) in effects.answered {
            self.shared.cluster.errors().answered(api, code);
        }
        for (tp, leader) in effects.moved {
            self.leader_moved(tp, leader);
        }
    }

    /// Answers the acknowledgements of a request that failed as a whole with `e`.
    fn failed(&mut self, api: &'static str, sent: state::Sent, e: &Error) {
        let effects = self
            .state
            .conclude(api, sent, &Outcome::Failed(e.clone_message()), false);
        self.apply(effects);
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
        let ids = self.request_ids();
        let (req, sent) =
            self.state
                .fetch_request(&wanted, cmd.max_records, cmd.max_wait, version, ids);
        let resp = match conn.call_version(&req, version).await {
            Ok(r) => r,
            Err(e) => {
                warn!(group = %self.shared.group, member = %self.shared.member_id, node = self.node(), error = %e,
                    "ShareFetch failed; the share session is reset");
                self.failed("ShareFetch", sent, &e);
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
            self.failed("ShareFetch", sent, &e);
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
        self.state.fetched(wanted, resp.acquisition_lock_timeout_ms);
        self.learn_nodes(&resp.node_endpoints);
        let (codes, brought) = self.take_records(resp);
        self.state.fetch_brought(cmd.max_records, brought);
        let effects = self
            .state
            .conclude("ShareFetch", sent, &Outcome::Answered(codes), true);
        self.apply(effects);
        self.fetch_done(cmd, Ok(()));
    }

    /// Puts the records of a fetch answer into the member's buffer and queues the automatic
    /// acknowledgements; returns the acknowledgement error codes by partition.
    /// Also returns how many records it brought.
    fn take_records(
        &mut self,
        resp: ShareFetchResponse,
    ) -> (HashMap<Tp, (i16, Option<String>)>, usize) {
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
                        self.state
                            .queue_automatic(tp, &found.gaps, AcknowledgeType::Gap);
                        self.state
                            .queue_automatic(tp, &found.missing, AcknowledgeType::Release);
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
        let brought = delivered.len();
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
        (codes, brought)
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
            lock_duration: self.state.lock_timeout(),
        };
        (d, tp.0)
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
        self.state
            .queue_automatic(tp, &ranges, AcknowledgeType::Release);
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
        let selected = self.state.take_acks(renew);
        if selected.is_empty() {
            return;
        }
        let conn = match (&self.conn, self.state.epoch()) {
            (Some(c), e) if e != 0 => c.clone(),
            _ => {
                // No open session: what it acquired is gone.
                self.state.put_back(selected);
                self.reset("no open share session");
                return;
            }
        };
        let version = conn.pick(SHARE_ACKNOWLEDGE_KEY, SHARE_ACKNOWLEDGE);
        let ids = self.request_ids();
        let Some((req, sent, version)) = self.state.ack_request(selected, renew, version, ids)
        else {
            return;
        };
        match conn.call_version(&req, version).await {
            Ok(resp) => self.acknowledged(&resp, sent, renew, true),
            Err(e) => {
                warn!(group = %self.shared.group, member = %self.shared.member_id, node = self.node(), error = %e,
                    "ShareAcknowledge failed; the share session is reset");
                self.failed("ShareAcknowledge", sent, &e);
                self.drop_connection(&e);
            }
        }
    }

    /// Handles a ShareAcknowledge answer.
    fn acknowledged(
        &mut self,
        resp: &ShareAcknowledgeResponse,
        sent: state::Sent,
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
            self.failed(api, sent, &e);
            self.reset(&e.to_string());
            return;
        }
        self.learn_nodes(&resp.node_endpoints);
        let effects = self.state.acknowledged(api, resp, sent, retry);
        self.apply(effects);
    }

    /// Closes the session: the queued acknowledgements (RENEW ones are dropped) in a
    /// ShareAcknowledge with epoch -1, which also releases every record still held here.
    async fn close(&mut self) -> Result<(), Error> {
        if let Some(cmd) = self.fetch.take() {
            let err = Error::closed("the member is leaving");
            self.fetch_done(cmd, Err(err));
        }
        let acks = self.state.leave();
        let conn = match (&self.conn, self.state.epoch()) {
            (Some(c), e) if e != 0 && !c.is_closed() => c.clone(),
            _ => {
                // No session on the broker: nothing is held there.
                self.state.put_back(acks);
                self.reset("the member left");
                return Ok(());
            }
        };
        let version = conn.pick(SHARE_ACKNOWLEDGE_KEY, SHARE_ACKNOWLEDGE)?;
        let ids = self.request_ids();
        let (req, sent) = self.state.close_request(acks, ids);
        let result = conn.call_version(&req, version).await;
        let outcome = match result {
            Ok(resp) => {
                let code = resp.error_code;
                let message = resp.error_message.as_ref().map(|m| m.to_string());
                self.acknowledged(&resp, sent, false, false);
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
                self.failed("ShareAcknowledge", sent, &e);
                Err(e)
            }
        };
        // Dropping the connection ends whatever is left of the session.
        self.conn = None;
        self.reset("the member left");
        outcome
    }
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
