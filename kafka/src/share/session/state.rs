//! The state of one share session, without I/O: its epoch, the partitions the broker has in it,
//! the acknowledgements waiting to be sent and the callers waiting for their answers.
//!
//! The [actor](super) owns one and drives it: it asks what to send next ([`SessionState::next`]),
//! has the request built here ([`SessionState::fetch_request`], [`SessionState::ack_request`]),
//! sends it, and hands the answer back ([`SessionState::fetched`], [`SessionState::acknowledged`],
//! [`SessionState::conclude`]). What the answer means for the rest of the member (a partition's
//! leader moved, an error code to count) comes back as [`Effects`] for the actor to apply. So
//! every rule of KIP-932's session protocol that this client follows is here and unit-tested:
//!
//! - The first request of a session has epoch 0, lists every wanted partition and carries no
//!   acknowledgements (the broker would refuse them: nothing is acquired in a new session).
//! - Each answered request moves the epoch on (after `i32::MAX` comes 1, never 0 or -1); a later
//!   fetch lists only the partitions new to the session and forgets those no longer wanted.
//! - Acknowledgements of the wanted partitions ride on the next fetch (which then does not wait,
//!   so their answers are not held up); others go in a `ShareAcknowledge`. RENEW ones always go
//!   alone (`IsRenewAck`), before anything else.
//! - A partition's acknowledgements are applied all or nothing: when several fail together with
//!   INVALID_RECORD_STATE they are sent again one at a time, so each gets its own answer.
//! - A session that ends (connection lost, a request failed, the member leaves) answers every
//!   acknowledgement still waiting with a lost lock: the broker releases what it acquired.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::super::Tp;
use super::super::acks::{AckRange, plan};
use super::AckEntry;
use crate::wire::codec::TopicId;
use crate::wire::common::{AcknowledgePartition, AcknowledgeTopic, AcknowledgeType};
use crate::wire::records::OffsetRange;
use crate::wire::share_acknowledge::{ShareAcknowledgeRequest, ShareAcknowledgeResponse};
use crate::wire::share_fetch::{ForgottenTopic, ShareAcquireMode, ShareFetchRequest};
use crate::{Error, KafkaError as _};
use shareworker_core::{AckKind, RecordId, SettleResult};

/// `MaxBytes` of a fetch.
const MAX_BYTES: i32 = 16 * 1024 * 1024;
/// From this many records a fetch asks in `ShareAcquireMode` batch-optimized (v2), below it in
/// record-limit. Batch-optimized acquires whole log batches (the broker keeps one state per
/// batch instead of one per offset, and acknowledgements of whole batches are single ranges):
/// it may exceed `MaxRecords` by up to a batch per partition, which is small next to a large
/// ask (the member buffers the excess). A small ask comes from a slow handler, which must not
/// get more than it asked for (records it cannot start soon would wait behind it).
pub(super) const BATCH_OPTIMIZED_FROM: i32 = 256;
/// The first wait of a fetch after an empty answer that followed a large one (see
/// [`SessionState::fetch_brought`]); it doubles on each empty answer until it reaches the
/// member's longest round (`MAX_ROUND`), and the fetches wait as long as they are asked again.
pub(super) const SHORT_WAIT: Duration = Duration::from_millis(5);
/// The epoch that closes a session.
pub(super) const FINAL_EPOCH: i32 = -1;

/// Kafka error codes handled here.
pub(super) mod code {
    pub(in super::super) const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub(in super::super) const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub(in super::super) const FENCED_LEADER_EPOCH: i16 = 74;
    pub(in super::super) const UNKNOWN_TOPIC_ID: i16 = 100;
    pub(in super::super) const INVALID_RECORD_STATE: i16 = 121;
    pub(in super::super) const SHARE_SESSION_NOT_FOUND: i16 = 122;
    pub(in super::super) const INVALID_SHARE_SESSION_EPOCH: i16 = 123;
}

/// Whether a partition error means its leader moved (or the topic changed): the member must
/// learn the new leader, and records acquired from the old one are lost to it.
pub(super) fn leader_moved(code: i16) -> bool {
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

/// The `ShareAcquireMode` of a fetch of `max_records` in ShareFetch `version`.
fn acquire_mode(version: i16, max_records: i32) -> ShareAcquireMode {
    if version >= 2 && max_records < BATCH_OPTIMIZED_FROM {
        ShareAcquireMode::RecordLimit
    } else {
        ShareAcquireMode::BatchOptimized
    }
}

/// Where the answer of a queued acknowledgement goes.
#[derive(Clone, Copy, Debug)]
struct Slot {
    call: u64,
    index: usize,
}

/// An acknowledgement waiting to be sent.
#[derive(Clone, Debug)]
pub(super) struct Pending {
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

/// The acknowledgements a request carried, by partition.
pub(super) type Sent = HashMap<Tp, Vec<Pending>>;

/// The answers of one batch of acknowledgements from the member.
struct Call {
    results: Vec<Option<SettleResult>>,
    left: usize,
    reply: Option<oneshot::Sender<Vec<SettleResult>>>,
}

/// How a request went, for the acknowledgements it carried.
pub(super) enum Outcome {
    /// The broker answered; the partitions' acknowledgement error codes and messages.
    Answered(HashMap<Tp, (i16, Option<String>)>),
    /// The request failed as a whole.
    Failed(Error),
}

/// What an answer means beyond this session, for the actor to apply.
#[derive(Debug, Default, PartialEq, Eq)]
#[must_use]
pub(super) struct Effects {
    /// Error codes a partition was answered with, by API: counted per client.
    pub(super) answered: Vec<(&'static str, i16)>,
    /// Partitions whose leader moved, with the new leader and its epoch when the broker named
    /// it: the member routes them again.
    pub(super) moved: Vec<(Tp, Option<(i32, i32)>)>,
}

/// What the session should send next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// The RENEW acknowledgements, in a `ShareAcknowledge` of their own.
    Renew,
    /// The queued fetch, with the acknowledgements of the wanted partitions riding on it.
    Fetch,
    /// The other acknowledgements, in a `ShareAcknowledge`.
    Acknowledge,
    /// Nothing: wait for a command.
    Wait,
}

/// The state of the share session with one broker (see the module docs).
pub(super) struct SessionState {
    node: i32,
    /// The share group, for log lines.
    group: Arc<str>,
    /// The epoch of the next request; 0 when no session is open.
    epoch: i32,
    /// The partitions the broker has in the session.
    in_session: BTreeSet<Tp>,
    pending: Vec<Pending>,
    calls: HashMap<u64, Call>,
    next_call: u64,
    lock_timeout: Duration,
    /// The longest the next fetch may wait for records (`None`: as long as it is asked), see
    /// [`fetch_brought`](Self::fetch_brought).
    wait_cap: Option<Duration>,
}

impl SessionState {
    /// No session yet of a member of `group` with broker `node`.
    pub(super) fn new(node: i32, group: Arc<str>) -> Self {
        Self {
            node,
            group,
            epoch: 0,
            in_session: BTreeSet::new(),
            pending: Vec::new(),
            calls: HashMap::new(),
            next_call: 0,
            lock_timeout: Duration::from_secs(30),
            wait_cap: None,
        }
    }

    /// A fetch that asked for `asked` records brought `brought`; sets how long the next one
    /// may wait on the broker.
    ///
    /// A fetch waits on the broker until it can acquire something or its `MaxWaitMs` is over,
    /// and the session's acknowledgements queue behind it (one request at a time). After a
    /// large answer (a quarter of the ask or more) records are plentiful, and what stops the
    /// next fetch is more likely the partitions' record-lock limit, which only this member's
    /// own acknowledgements, waiting behind that fetch, would lift: so the next fetch does not
    /// wait at all, and each empty answer after it doubles the wait from [`SHORT_WAIT`] until
    /// it is back to the whole round. After a small answer (a trickle of records) the next
    /// fetch waits as long as asked, so a slow stream costs one request per round, not many.
    pub(super) fn fetch_brought(&mut self, asked: i32, brought: usize) {
        let asked = usize::try_from(asked).unwrap_or(0);
        self.wait_cap = if brought > 0 && brought.saturating_mul(4) >= asked {
            Some(Duration::ZERO)
        } else if brought > 0 {
            None
        } else {
            match self.wait_cap {
                Some(d) if d.is_zero() => Some(SHORT_WAIT),
                Some(d) if d < super::super::MAX_ROUND => Some(d * 2),
                _ => None,
            }
        };
    }

    /// The epoch of the next request: 0 opens a session.
    pub(super) fn epoch(&self) -> i32 {
        self.epoch
    }

    /// The lock duration the broker last announced (30 s until it has).
    pub(super) fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }

    /// Whether acknowledgements wait to be sent.
    pub(super) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// What to send next, with a fetch queued or not, for these wanted partitions: RENEW first
    /// (a lock about to expire cannot wait for a fetch's `MaxWaitMs`), then the fetch unless an
    /// acknowledgement of a partition it would not list is waiting (that goes first, or it
    /// would wait for the fetch's answer), then the other acknowledgements.
    pub(super) fn next(&self, fetch_queued: bool, wanted: &BTreeSet<Tp>) -> Step {
        if self.pending.iter().any(Pending::renew) {
            return Step::Renew;
        }
        let stray = self.pending.iter().any(|p| !wanted.contains(&p.tp));
        if fetch_queued && !stray {
            Step::Fetch
        } else if self.pending.is_empty() {
            Step::Wait
        } else {
            Step::Acknowledge
        }
    }

    /// Queues the member's acknowledgements; `reply` gets one answer per entry, in order, once
    /// all are answered. An entry acquired in an older `generation` of the session is answered
    /// at once: its lock went with that session.
    pub(super) fn queue(
        &mut self,
        entries: Vec<AckEntry>,
        generation: u64,
        reply: oneshot::Sender<Vec<SettleResult>>,
    ) {
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
        for (index, e) in entries.into_iter().enumerate() {
            let slot = Some(Slot { call, index });
            if e.generation != generation {
                let err = Error::lock_lost(format!(
                    "{}: the share session with broker {} that acquired it has ended; the record will be delivered again",
                    e.id, self.node
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

    /// Queues acknowledgements nobody waits for: GAP for offsets a fetch acquired that hold no
    /// record, RELEASE for records acquired but never delivered.
    pub(super) fn queue_automatic(
        &mut self,
        tp: Tp,
        ranges: &[OffsetRange],
        kind: AcknowledgeType,
    ) {
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
    /// listed only to be fetched). Conflicting ones are answered at once and left out.
    fn build(
        &mut self,
        acks: Vec<Pending>,
        fetch_only: &BTreeSet<Tp>,
    ) -> (Vec<AcknowledgeTopic>, Sent) {
        let mut by_tp: BTreeMap<Tp, Vec<Pending>> = BTreeMap::new();
        for p in acks {
            by_tp.entry(p.tp).or_default().push(p);
        }
        let mut partitions: BTreeMap<Uuid, Vec<AcknowledgePartition>> = BTreeMap::new();
        let mut add = |tp: Tp, acknowledgement_batches| {
            partitions
                .entry(tp.0)
                .or_default()
                .push(AcknowledgePartition {
                    partition_index: tp.1,
                    acknowledgement_batches,
                });
        };
        let mut sent: Sent = HashMap::new();
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
            add(tp, planned.batches);
            sent.insert(tp, carried);
        }
        for tp in fetch_only {
            if !sent.contains_key(tp) {
                add(*tp, Vec::new());
            }
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

    /// The `ShareFetch` of `max_records` from the `wanted` partitions in `version`, as
    /// `group_id`/`member_id`, with the acknowledgements that ride on it (none when it opens the
    /// session). It waits up to `max_wait` for records unless it carries acknowledgements.
    pub(super) fn fetch_request(
        &mut self,
        wanted: &BTreeSet<Tp>,
        max_records: i32,
        max_wait: Duration,
        version: i16,
        (group_id, member_id): (StrBytes, StrBytes),
    ) -> (ShareFetchRequest, Sent) {
        let opening = self.epoch == 0;
        let riding = if opening {
            Vec::new()
        } else {
            self.select(false, Some(wanted))
        };
        let added: BTreeSet<Tp> = if opening {
            wanted.clone()
        } else {
            wanted.difference(&self.in_session).copied().collect()
        };
        let mut forgotten: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
        if !opening {
            for tp in self.in_session.difference(wanted) {
                forgotten.entry(tp.0).or_default().push(tp.1);
            }
        }
        let (topics, sent) = self.build(riding, &added);
        let max_wait = if sent.is_empty() {
            self.wait_cap.map_or(max_wait, |cap| cap.min(max_wait))
        } else {
            Duration::ZERO
        };
        let req = ShareFetchRequest {
            group_id,
            member_id,
            share_session_epoch: self.epoch,
            max_wait_ms: i32::try_from(max_wait.as_millis()).unwrap_or(i32::MAX),
            min_bytes: 1,
            max_bytes: MAX_BYTES,
            max_records,
            batch_size: max_records,
            share_acquire_mode: acquire_mode(version, max_records),
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
        (req, sent)
    }

    /// A fetch of the `wanted` partitions was answered without a top-level error: the session
    /// holds them now and the epoch moves on. `lock_timeout_ms` is what the broker announced.
    pub(super) fn fetched(&mut self, wanted: BTreeSet<Tp>, lock_timeout_ms: i32) {
        self.epoch = next_epoch(self.epoch);
        self.in_session = wanted;
        self.learn_lock_timeout(lock_timeout_ms);
    }

    fn learn_lock_timeout(&mut self, ms: i32) {
        if let Ok(ms) = u64::try_from(ms)
            && ms > 0
        {
            self.lock_timeout = Duration::from_millis(ms);
        }
    }

    /// Takes the RENEW acknowledgements, or the others, for a `ShareAcknowledge`.
    pub(super) fn take_acks(&mut self, renew: bool) -> Vec<Pending> {
        self.select(renew, None)
    }

    /// Puts acknowledgements taken by [`take_acks`](Self::take_acks) back, unsent.
    pub(super) fn put_back(&mut self, acks: Vec<Pending>) {
        self.pending.extend(acks);
    }

    /// The `ShareAcknowledge` carrying `acks` (RENEW ones when `renew`), in the `version` the
    /// connection picked (or why it could not), as `group_id`/`member_id`. `None` when nothing
    /// is left to send: every acknowledgement was answered here (the broker cannot renew, the
    /// API is not there, or two conflict).
    pub(super) fn ack_request(
        &mut self,
        acks: Vec<Pending>,
        renew: bool,
        version: Result<i16, Error>,
        (group_id, member_id): (StrBytes, StrBytes),
    ) -> Option<(ShareAcknowledgeRequest, Sent, i16)> {
        let version = match version {
            Ok(v) if v >= 2 || !renew => v,
            Ok(_) => {
                for p in acks {
                    let err = Error::broker(format!(
                        "{}: this broker cannot renew locks (RENEW needs ShareAcknowledge v2, Kafka 4.2 or newer)",
                        p.what()
                    ));
                    self.answer(p.slot, Err(err));
                }
                return None;
            }
            Err(e) => {
                let msg = e.to_string();
                for p in acks {
                    self.answer(p.slot, Err(Error::broker(format!("{}: {msg}", p.what()))));
                }
                return None;
            }
        };
        let (topics, sent) = self.build(acks, &BTreeSet::new());
        if sent.is_empty() {
            return None;
        }
        let req = ShareAcknowledgeRequest {
            group_id,
            member_id,
            share_session_epoch: self.epoch,
            is_renew_ack: renew,
            topics,
        };
        Some((req, sent, version))
    }

    /// A `ShareAcknowledge` carrying `sent` was answered without a top-level error (`api` names
    /// it in messages: plain, renew or closing). The epoch moves on unless the request closed
    /// the session; `retry` sends again one by one what failed together.
    pub(super) fn acknowledged(
        &mut self,
        api: &'static str,
        resp: &ShareAcknowledgeResponse,
        sent: Sent,
        retry: bool,
    ) -> Effects {
        if self.epoch != 0 && self.epoch != FINAL_EPOCH {
            self.epoch = next_epoch(self.epoch);
        }
        if let Some(ms) = resp.acquisition_lock_timeout_ms {
            self.learn_lock_timeout(ms);
        }
        let mut moved = Vec::new();
        let mut codes = HashMap::new();
        for topic in &resp.responses {
            let id = Uuid::from_bytes(topic.topic_id.0);
            for p in &topic.partitions {
                let tp = (id, p.partition_index);
                if leader_moved(p.error_code) && p.current_leader.leader_id >= 0 {
                    moved.push((
                        tp,
                        Some((p.current_leader.leader_id, p.current_leader.leader_epoch)),
                    ));
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
        let mut effects = self.conclude(api, sent, &Outcome::Answered(codes), retry);
        moved.append(&mut effects.moved);
        effects.moved = moved;
        effects
    }

    /// Answers the acknowledgements a request carried. A partition with several that failed
    /// with INVALID_RECORD_STATE is queued again to go one acknowledgement at a time (the
    /// broker applies a partition's acknowledgements all or nothing), unless `retry` is false.
    pub(super) fn conclude(
        &mut self,
        api: &'static str,
        sent: Sent,
        outcome: &Outcome,
        retry: bool,
    ) -> Effects {
        let mut effects = Effects::default();
        for (tp, list) in sent {
            let answer = match outcome {
                Outcome::Failed(e) => Some((None, e.to_string())),
                Outcome::Answered(codes) => match codes.get(&tp) {
                    Some((0, _)) => None,
                    Some((c, m)) => {
                        effects.answered.push((api, *c));
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
                tracing::debug!(group = %self.group, node = self.node, partition = tp.1, n = list.len(),
                    "a partition's acknowledgements failed together; sending them one by one");
                for mut p in list {
                    p.alone = true;
                    self.pending.push(p);
                }
                continue;
            }
            if code.is_some_and(leader_moved) {
                effects.moved.push((tp, None));
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
                    tracing::debug!(group = %self.group, node = self.node, error = %err, "automatic acknowledgement failed");
                }
                self.answer(p.slot, Err(err));
            }
        }
        effects
    }

    /// Ends the session on this side (`why`): the next request opens a new one (epoch 0), and
    /// every acknowledgement still waiting is answered with a lost lock. Whether a session was
    /// open.
    pub(super) fn reset(&mut self, why: &str) -> bool {
        let was_open = self.epoch != 0 && self.epoch != FINAL_EPOCH;
        self.epoch = 0;
        self.in_session.clear();
        for p in std::mem::take(&mut self.pending) {
            let err = Error::lock_lost(format!(
                "{}: the share session with broker {} that acquired it ended ({why}); the record will be delivered again",
                p.what(),
                self.node
            ));
            self.answer(p.slot, Err(err));
        }
        was_open
    }

    /// The member leaves: RENEW acknowledgements are answered (not renewed) and dropped; the
    /// others are taken for the closing request.
    pub(super) fn leave(&mut self) -> Vec<Pending> {
        let (renews, acks): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(Pending::renew);
        for p in renews {
            let err = Error::closed(format!("{}: not renewed, the member is leaving", p.what()));
            self.answer(p.slot, Err(err));
        }
        acks
    }

    /// The `ShareAcknowledge` with epoch -1 that closes the session, carrying `acks` (from
    /// [`leave`](Self::leave)); the broker releases every record still acquired in it.
    pub(super) fn close_request(
        &mut self,
        acks: Vec<Pending>,
        (group_id, member_id): (StrBytes, StrBytes),
    ) -> (ShareAcknowledgeRequest, Sent) {
        let (topics, sent) = self.build(acks, &BTreeSet::new());
        self.epoch = FINAL_EPOCH;
        let req = ShareAcknowledgeRequest {
            group_id,
            member_id,
            share_session_epoch: FINAL_EPOCH,
            is_renew_ack: false,
            topics,
        };
        (req, sent)
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

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
