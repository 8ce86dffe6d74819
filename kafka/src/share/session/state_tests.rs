//! The session protocol's rules, on [`SessionState`] alone: requests built, answers read.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::*;
use crate::wire::common::{AcknowledgementBatch, LeaderIdAndEpoch};
use crate::wire::share_acknowledge::{
    ShareAcknowledgePartitionData, ShareAcknowledgeTopicResponse,
};

const TOPIC: Uuid = Uuid::from_u128(7);

fn tp(partition: i32) -> Tp {
    (TOPIC, partition)
}

fn wanted(partitions: &[i32]) -> BTreeSet<Tp> {
    partitions.iter().map(|&p| tp(p)).collect()
}

fn ids() -> (StrBytes, StrBytes) {
    (
        StrBytes::from_static_str("g"),
        StrBytes::from_static_str("m"),
    )
}

fn state() -> SessionState {
    SessionState::new(1, Arc::from("g"))
}

/// A session that has answered its opening fetch of `partitions`.
fn open(partitions: &[i32]) -> SessionState {
    let mut s = state();
    let (_, sent) = s.fetch_request(
        &wanted(partitions),
        100,
        Duration::from_millis(500),
        2,
        ids(),
    );
    assert!(sent.is_empty());
    s.fetched(wanted(partitions), 15_000);
    s
}

fn entry(partition: i32, offset: i64, kind: AckKind) -> AckEntry {
    AckEntry {
        tp: tp(partition),
        id: RecordId::new("t", partition, offset),
        kind,
        generation: 0,
    }
}

/// Queues `entries` of generation 0; the receiver gets their answers.
fn queue(s: &mut SessionState, entries: Vec<AckEntry>) -> oneshot::Receiver<Vec<SettleResult>> {
    let (tx, rx) = oneshot::channel();
    s.queue(entries, 0, tx);
    rx
}

/// The batches of partition `p` in `topics`.
fn batches(topics: &[AcknowledgeTopic], p: i32) -> Vec<(i64, i64, AcknowledgeType)> {
    topics
        .iter()
        .flat_map(|t| &t.partitions)
        .filter(|x| x.partition_index == p)
        .flat_map(|x| &x.acknowledgement_batches)
        .map(|b: &AcknowledgementBatch| (b.first_offset, b.last_offset, b.acknowledge_types[0]))
        .collect()
}

fn listed(topics: &[AcknowledgeTopic]) -> Vec<i32> {
    topics
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.partition_index)
        .collect()
}

fn ack_response(codes: &[(i32, i16)], leader: i32) -> ShareAcknowledgeResponse {
    ShareAcknowledgeResponse {
        throttle_time_ms: 0,
        error_code: 0,
        error_message: None,
        acquisition_lock_timeout_ms: Some(20_000),
        responses: vec![ShareAcknowledgeTopicResponse {
            topic_id: TopicId(TOPIC.into_bytes()),
            partitions: codes
                .iter()
                .map(|&(p, code)| ShareAcknowledgePartitionData {
                    partition_index: p,
                    error_code: code,
                    error_message: None,
                    current_leader: LeaderIdAndEpoch {
                        leader_id: leader,
                        leader_epoch: 3,
                    },
                })
                .collect(),
        }],
        node_endpoints: Vec::new(),
    }
}

#[test]
fn the_opening_fetch_has_epoch_0_lists_every_partition_and_carries_no_acknowledgement() {
    let mut s = state();
    let _early = queue(&mut s, vec![entry(0, 5, AckKind::Accept)]);
    let (req, sent) = s.fetch_request(&wanted(&[0, 1]), 24, Duration::from_millis(500), 2, ids());
    assert_eq!(req.share_session_epoch, 0);
    assert_eq!(listed(&req.topics), vec![0, 1]);
    assert!(batches(&req.topics, 0).is_empty() && sent.is_empty());
    assert_eq!(req.max_wait_ms, 500);
    assert_eq!((req.max_records, req.batch_size), (24, 24));
    assert_eq!(req.share_acquire_mode, ShareAcquireMode::RecordLimit);
    assert!(req.forgotten_topics_data.is_empty());
    // The acknowledgement stays queued for the session's next request.
    assert!(s.has_pending());
    s.fetched(wanted(&[0, 1]), 15_000);
    assert_eq!(s.epoch(), 1);
    assert_eq!(s.lock_timeout(), Duration::from_secs(15));
}

#[test]
fn later_fetches_list_new_partitions_forget_old_ones_and_carry_acknowledgements_without_waiting() {
    let mut s = open(&[0, 1]);
    let mut rx = queue(
        &mut s,
        vec![entry(1, 7, AckKind::Accept), entry(1, 8, AckKind::Accept)],
    );
    let (req, sent) = s.fetch_request(&wanted(&[1, 2]), 5000, Duration::from_millis(500), 2, ids());
    assert_eq!(req.share_session_epoch, 1);
    // Partition 2 is new; 1 rides with its acknowledgements, merged into one range; 0 is gone.
    assert_eq!(listed(&req.topics), vec![1, 2]);
    assert_eq!(
        batches(&req.topics, 1),
        vec![(7, 8, AcknowledgeType::Accept)]
    );
    assert_eq!(req.forgotten_topics_data.len(), 1);
    assert_eq!(req.forgotten_topics_data[0].partitions, vec![0]);
    assert_eq!(
        req.max_wait_ms, 0,
        "acknowledgements are not held for MaxWaitMs"
    );
    assert_eq!(req.share_acquire_mode, ShareAcquireMode::BatchOptimized);
    s.fetched(wanted(&[1, 2]), 0);
    assert_eq!(
        s.lock_timeout(),
        Duration::from_secs(15),
        "0 is no announcement"
    );
    let effects = s.conclude(
        "ShareFetch",
        sent,
        &Outcome::Answered(HashMap::from([(tp(1), (0, None))])),
        true,
    );
    assert_eq!(effects, Effects::default());
    let answers = rx.try_recv().expect("answered");
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    // Partition 2 is in the session now: listed no more unless it carries something.
    let (req, _) = s.fetch_request(&wanted(&[1, 2]), 10, Duration::from_millis(500), 2, ids());
    assert!(listed(&req.topics).is_empty());
    assert_eq!(req.share_session_epoch, 2);
}

#[test]
fn renewals_go_first_and_alone_and_stray_acknowledgements_before_a_fetch() {
    let mut s = open(&[0]);
    let fetch_wanted = wanted(&[0]);
    assert_eq!(s.next(true, &fetch_wanted), Step::Fetch);
    assert_eq!(s.next(false, &fetch_wanted), Step::Wait);
    let _rx = queue(&mut s, vec![entry(0, 1, AckKind::Accept)]);
    assert_eq!(
        s.next(true, &fetch_wanted),
        Step::Fetch,
        "rides on the fetch"
    );
    assert_eq!(s.next(false, &fetch_wanted), Step::Acknowledge);
    let _stray = queue(&mut s, vec![entry(3, 1, AckKind::Accept)]);
    assert_eq!(
        s.next(true, &fetch_wanted),
        Step::Acknowledge,
        "partition 3 is not fetched"
    );
    let _renew = queue(&mut s, vec![entry(0, 2, AckKind::Renew)]);
    assert_eq!(s.next(true, &fetch_wanted), Step::Renew);
    let renewals = s.take_acks(true);
    assert_eq!(renewals.len(), 1);
    let (req, sent, version) = s
        .ack_request(renewals, true, Ok(2), ids())
        .expect("a request");
    assert!(req.is_renew_ack && version == 2);
    assert_eq!(
        batches(&req.topics, 0),
        vec![(2, 2, AcknowledgeType::Renew)]
    );
    assert_eq!(sent.len(), 1);
    let others = s.take_acks(false);
    assert_eq!(others.len(), 2, "the renewal is not among the others");
}

#[test]
fn a_broker_without_renewal_and_conflicting_acknowledgements_are_answered_here() {
    let mut s = open(&[0]);
    let mut renew = queue(&mut s, vec![entry(0, 2, AckKind::Renew)]);
    let taken = s.take_acks(true);
    assert!(s.ack_request(taken, true, Ok(1), ids()).is_none());
    let answers = renew.try_recv().expect("answered");
    let e = answers[0].as_ref().expect_err("refused");
    assert!(
        e.to_string().contains("RENEW needs ShareAcknowledge v2"),
        "{e}"
    );

    let mut both = queue(
        &mut s,
        vec![entry(0, 4, AckKind::Accept), entry(0, 4, AckKind::Reject)],
    );
    let taken = s.take_acks(false);
    let (req, sent, _) = s
        .ack_request(taken, false, Ok(2), ids())
        .expect("the first goes");
    assert_eq!(
        batches(&req.topics, 0),
        vec![(4, 4, AcknowledgeType::Accept)]
    );
    let effects = s.conclude(
        "ShareAcknowledge",
        sent,
        &Outcome::Answered(HashMap::from([(tp(0), (0, None))])),
        true,
    );
    assert_eq!(effects, Effects::default());
    let answers = both.try_recv().expect("answered");
    assert!(answers[0].is_ok());
    assert!(
        answers[1].as_ref().is_err_and(Error::is_invalid_input),
        "{answers:?}"
    );
}

#[test]
fn acknowledgements_that_fail_together_are_sent_again_one_by_one() {
    let mut s = open(&[0]);
    let mut rx = queue(
        &mut s,
        vec![
            entry(0, 1, AckKind::Accept),
            entry(0, 2, AckKind::Accept),
            entry(0, 3, AckKind::Reject),
        ],
    );
    let taken = s.take_acks(false);
    let (req, sent, _) = s.ack_request(taken, false, Ok(2), ids()).expect("request");
    assert_eq!(
        batches(&req.topics, 0),
        vec![
            (1, 2, AcknowledgeType::Accept),
            (3, 3, AcknowledgeType::Reject)
        ]
    );
    let effects = s.acknowledged(
        "ShareAcknowledge",
        &ack_response(&[(0, code::INVALID_RECORD_STATE)], -1),
        sent,
        true,
    );
    assert_eq!(
        effects.answered,
        vec![("ShareAcknowledge", code::INVALID_RECORD_STATE)]
    );
    assert_eq!(s.epoch(), 2);
    assert_eq!(s.lock_timeout(), Duration::from_secs(20));
    assert!(rx.try_recv().is_err(), "not answered yet");
    // One at a time now, each with its own answer: offset 2 is the one the broker refuses.
    for (offset, code) in [(1, 0), (2, code::INVALID_RECORD_STATE), (3, 0)] {
        let taken = s.take_acks(false);
        assert_eq!(taken.len(), 1, "alone");
        let (req, sent, _) = s.ack_request(taken, false, Ok(2), ids()).expect("request");
        assert_eq!(batches(&req.topics, 0)[0].0, offset);
        let _ = s.acknowledged(
            "ShareAcknowledge",
            &ack_response(&[(0, code)], -1),
            sent,
            true,
        );
    }
    assert!(!s.has_pending());
    let answers = rx.try_recv().expect("answered");
    assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
    let e = answers[1].as_ref().expect_err("refused");
    assert_eq!(e.kafka_code(), Some(code::INVALID_RECORD_STATE));
}

#[test]
fn a_moved_leader_is_reported_and_its_records_locks_are_lost() {
    let mut s = open(&[0, 1]);
    let mut rx = queue(
        &mut s,
        vec![entry(0, 1, AckKind::Accept), entry(1, 1, AckKind::Accept)],
    );
    let taken = s.take_acks(false);
    let (_, sent, _) = s.ack_request(taken, false, Ok(2), ids()).expect("request");
    let effects = s.acknowledged(
        "ShareAcknowledge",
        &ack_response(&[(0, 0), (1, code::NOT_LEADER_OR_FOLLOWER)], 4),
        sent,
        true,
    );
    assert_eq!(effects.moved, vec![(tp(1), Some((4, 3))), (tp(1), None)]);
    let answers = rx.try_recv().expect("answered");
    assert!(answers[0].is_ok());
    assert!(
        answers[1].as_ref().is_err_and(Error::is_lock_lost),
        "{answers:?}"
    );
}

#[test]
fn a_reset_answers_every_waiting_acknowledgement_and_the_next_fetch_opens_a_session() {
    let mut s = open(&[0]);
    let mut rx = queue(
        &mut s,
        vec![entry(0, 1, AckKind::Accept), entry(0, 2, AckKind::Renew)],
    );
    s.queue_automatic(
        tp(0),
        &[OffsetRange { first: 5, last: 6 }],
        AcknowledgeType::Gap,
    );
    assert!(s.reset("the connection was lost"));
    assert!(!s.has_pending() && s.epoch() == 0);
    let answers = rx.try_recv().expect("answered");
    for a in &answers {
        let e = a.as_ref().expect_err("lost");
        assert!(
            e.is_lock_lost() && e.to_string().contains("the connection was lost"),
            "{e}"
        );
    }
    assert!(!s.reset("again"), "nothing was open");
    let (req, _) = s.fetch_request(&wanted(&[0]), 10, Duration::from_millis(100), 2, ids());
    assert_eq!(req.share_session_epoch, 0);
    assert_eq!(listed(&req.topics), vec![0]);
}

#[test]
fn an_acknowledgement_from_an_older_session_is_answered_at_once() {
    let mut s = open(&[0]);
    let (tx, mut rx) = oneshot::channel();
    s.queue(vec![entry(0, 1, AckKind::Accept)], 1, tx);
    assert!(!s.has_pending());
    let answers = rx.try_recv().expect("answered");
    assert!(answers[0].as_ref().is_err_and(Error::is_lock_lost));
    // An empty batch is answered at once too.
    let (tx, mut rx) = oneshot::channel();
    s.queue(Vec::new(), 0, tx);
    assert_eq!(rx.try_recv().expect("answered").len(), 0);
}

#[test]
fn a_failed_request_loses_the_locks_it_carried() {
    let mut s = open(&[0]);
    let mut rx = queue(&mut s, vec![entry(0, 1, AckKind::Accept)]);
    let taken = s.take_acks(false);
    let (_, sent, _) = s.ack_request(taken, false, Ok(2), ids()).expect("request");
    let effects = s.conclude(
        "ShareAcknowledge",
        sent,
        &Outcome::Failed(Error::broker("connection reset")),
        false,
    );
    assert!(effects.answered.is_empty() && effects.moved.is_empty());
    let answers = rx.try_recv().expect("answered");
    let e = answers[0].as_ref().expect_err("lost");
    assert!(
        e.is_lock_lost() && e.to_string().contains("connection reset"),
        "{e}"
    );
}

#[test]
fn leaving_drops_renewals_and_closes_with_epoch_minus_1() {
    let mut s = open(&[0]);
    let mut renew = queue(&mut s, vec![entry(0, 1, AckKind::Renew)]);
    let _accept = queue(&mut s, vec![entry(0, 2, AckKind::Accept)]);
    let acks = s.leave();
    assert_eq!(acks.len(), 1);
    let answers = renew.try_recv().expect("answered");
    assert!(
        answers[0].as_ref().is_err_and(Error::is_closed),
        "{answers:?}"
    );
    let (req, sent) = s.close_request(acks, ids());
    assert_eq!(req.share_session_epoch, FINAL_EPOCH);
    assert!(!req.is_renew_ack);
    assert_eq!(
        batches(&req.topics, 0),
        vec![(2, 2, AcknowledgeType::Accept)]
    );
    let _ = s.acknowledged(
        "ShareAcknowledge",
        &ack_response(&[(0, 0)], -1),
        sent,
        false,
    );
    assert_eq!(
        s.epoch(),
        FINAL_EPOCH,
        "a closed session's epoch does not move on"
    );
    assert!(
        !s.reset("the member left"),
        "closing is not a reset worth a log line"
    );
}

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

/// The `MaxWaitMs` of the next fetch (asked to wait 500 ms) on session `s`.
fn next_wait(s: &mut SessionState) -> i32 {
    let (req, _) = s.fetch_request(&wanted(&[0]), 1000, Duration::from_millis(500), 2, ids());
    s.fetched(wanted(&[0]), 0);
    req.max_wait_ms
}

#[test]
fn after_a_large_answer_the_next_fetch_does_not_wait_and_empty_answers_lengthen_the_wait() {
    let mut s = open(&[0]);
    assert_eq!(next_wait(&mut s), 500, "nothing answered yet: as asked");
    // A quarter of the ask or more: records are plentiful; what may stop the next fetch is the
    // lock limit, which this member's acknowledgements (queued behind that fetch) would lift.
    s.fetch_brought(1000, 250);
    assert_eq!(next_wait(&mut s), 0);
    // Empty answers after it: 5 ms, doubling, back to the whole wait.
    let mut waits = Vec::new();
    for _ in 0..10 {
        s.fetch_brought(1000, 0);
        waits.push(next_wait(&mut s));
    }
    assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 500, 500, 500]);
    // A trickle (under a quarter of the ask): the next fetch waits as asked, so a slow stream
    // costs one request per round.
    s.fetch_brought(1000, 1);
    assert_eq!(next_wait(&mut s), 500);
    s.fetch_brought(1000, 0);
    assert_eq!(next_wait(&mut s), 500, "an idle long poll stays long");
    // A wait shorter than the cap is kept.
    s.fetch_brought(1000, 0);
    s.fetch_brought(1000, 600);
    s.fetch_brought(1000, 0);
    let (req, _) = s.fetch_request(&wanted(&[0]), 1000, Duration::from_millis(2), 2, ids());
    assert_eq!(req.max_wait_ms, 2);
}
