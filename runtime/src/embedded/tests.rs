//! Tests of the embedded broker as a whole (the share-partition state machine has its own).

use super::*;
use bytes::Bytes;

use super::log::Packer;
use crate::broker::{AckKind, RecordId};

#[test]
fn topic_names_are_checked() {
    assert!(validate_topic_name("emails.dlq").is_ok());
    assert!(validate_topic_name("").is_err());
    assert!(validate_topic_name("has space").is_err());
    assert!(validate_topic_name("..").is_err());
}

async fn accept_all(member: &dyn Member, n: usize) -> Vec<RecordId> {
    let records = member
        .acquire(n, Duration::ZERO)
        .await
        .expect("acquire on the embedded broker");
    assert_eq!(records.len(), n);
    let acks: Vec<_> = records
        .iter()
        .map(|r| (r.id.clone(), AckKind::Accept))
        .collect();
    for r in member.settle(&acks).await.expect("settle") {
        r.expect("each accept succeeds");
    }
    records.into_iter().map(|r| r.id).collect()
}

async fn log_start(broker: &EmbeddedBroker, topic: &str) -> (i64, i64, usize) {
    let o = broker.offsets(topic).await.expect("offsets");
    let kept = broker.read_topic(topic).expect("read_topic").len();
    (o[0].earliest, o[0].latest, kept)
}

#[tokio::test(start_paused = true)]
async fn records_every_group_has_settled_are_dropped_and_offsets_stay() {
    let broker = EmbeddedBroker::builder()
        .start_from(StartFrom::Earliest)
        .build()
        .expect("valid settings");
    let topics = ["jobs".to_string()];
    let records: Vec<_> = (0..100)
        .map(|i| OutgoingRecord::new(format!("job {i}")))
        .collect();
    broker.produce("jobs", records).await.expect("produce");
    // Before any group reads the partition, everything is kept.
    assert_eq!(log_start(&broker, "jobs").await, (0, 100, 100));

    let a = broker.join("a", &topics).await.expect("join a");
    let b = broker.join("b", &topics).await.expect("join b");
    accept_all(&*a, 60).await;
    // Group b has settled nothing: its share start offset 0 holds every record.
    assert_eq!(log_start(&broker, "jobs").await, (0, 100, 100));

    accept_all(&*b, 30).await;
    assert_eq!(log_start(&broker, "jobs").await, (30, 100, 70));

    // A record released back stays, and is delivered again from the trimmed log.
    let r = b.acquire(1, Duration::ZERO).await.expect("acquire");
    assert_eq!(r[0].id.offset, 30);
    b.settle(&[(r[0].id.clone(), AckKind::Release)])
        .await
        .expect("release");
    let again = b.acquire(1, Duration::ZERO).await.expect("acquire again");
    assert_eq!((again[0].id.offset, again[0].delivery_count), (30, 2));
    assert_eq!(again[0].value.as_deref(), Some(&b"job 30"[..]));
    b.settle(&[(again[0].id.clone(), AckKind::Accept)])
        .await
        .expect("accept");

    accept_all(&*b, 69).await;
    assert_eq!(log_start(&broker, "jobs").await, (60, 100, 40));
    accept_all(&*a, 40).await;
    // Both groups are done: nothing is kept, and the next record gets the next offset.
    assert_eq!(log_start(&broker, "jobs").await, (100, 100, 0));
    let produced = broker
        .produce("jobs", vec![OutgoingRecord::new("late")])
        .await
        .expect("produce");
    assert_eq!(produced[0].offset, 100);
    let late = a.acquire(1, Duration::ZERO).await.expect("acquire");
    assert_eq!(late[0].id.offset, 100);

    // A group that starts later from `earliest` starts at the log start offset.
    let c = broker.join("c", &topics).await.expect("join c");
    let first = c.acquire(10, Duration::ZERO).await.expect("acquire c");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].id.offset, 100);
    // Reading below the log start offset starts at it.
    let read = broker.read("jobs", 0, 0, 10).await.expect("read");
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].id.offset, 100);
}

#[tokio::test(start_paused = true)]
async fn keep_settled_records_keeps_them() {
    let broker = EmbeddedBroker::builder()
        .start_from(StartFrom::Earliest)
        .keep_settled_records(true)
        .build()
        .expect("valid settings");
    let records: Vec<_> = (0..5)
        .map(|i| OutgoingRecord::new(format!("{i}")))
        .collect();
    broker.produce("jobs", records).await.expect("produce");
    let m = broker.join("g", &["jobs".to_string()]).await.expect("join");
    accept_all(&*m, 5).await;
    assert_eq!(log_start(&broker, "jobs").await, (0, 5, 5));
}

#[tokio::test(start_paused = true)]
async fn records_archived_at_the_delivery_limit_are_dropped_too() {
    let broker = EmbeddedBroker::builder()
        .start_from(StartFrom::Earliest)
        .delivery_count_limit(2)
        .lock_duration(Duration::from_secs(1))
        .build()
        .expect("valid settings");
    broker
        .produce("jobs", vec![OutgoingRecord::new("x")])
        .await
        .expect("produce");
    let m = broker.join("g", &["jobs".to_string()]).await.expect("join");
    for _ in 0..2 {
        let r = m.acquire(1, Duration::ZERO).await.expect("acquire");
        assert_eq!(r.len(), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // The second lock expired at the limit: archived, and dropped on the next acquire.
    assert!(
        m.acquire(1, Duration::ZERO)
            .await
            .expect("acquire")
            .is_empty()
    );
    assert_eq!(log_start(&broker, "jobs").await, (1, 1, 0));
}

#[tokio::test]
async fn a_record_over_max_message_bytes_is_refused_and_nothing_is_written() {
    let broker = EmbeddedBroker::new();
    let limit = DEFAULT_MAX_MESSAGE_BYTES;
    broker
        .produce("big", vec![OutgoingRecord::new(vec![b'x'; limit])])
        .await
        .expect("exactly the limit is accepted");
    let mut over = OutgoingRecord::new(vec![b'x'; limit - 2]);
    over.headers.push("h", "xy");
    let err = broker
        .produce("big", vec![OutgoingRecord::new("small"), over])
        .await
        .expect_err("a record over 1 MiB is refused");
    assert!(err.is_record_too_large(), "{err}");
    assert!(err.is_invalid_input(), "{err}");
    assert_eq!(err.kafka_code(), Some(10));
    assert!(
        err.to_string().contains("embedded.max_message_bytes"),
        "{err}"
    );
    // The batch is refused whole.
    assert_eq!(broker.read_topic("big").expect("topic").len(), 1);

    let small = EmbeddedBroker::builder()
        .max_message_bytes(10)
        .build()
        .expect("valid settings");
    let err = small
        .produce("t", vec![OutgoingRecord::new("eleven byte")])
        .await
        .expect_err("over 10 bytes");
    assert!(err.is_record_too_large(), "{err}");
    assert!(
        EmbeddedBroker::builder()
            .max_message_bytes(0)
            .build()
            .is_err()
    );
}

/// Whether `b` starts where `a` ends: both are slices of one buffer, side by side.
fn adjacent(a: &Bytes, b: &Bytes) -> bool {
    a.as_ptr().wrapping_add(a.len()) == b.as_ptr()
}

fn value(d: &Delivery) -> &Bytes {
    d.value.as_ref().expect("a value")
}

#[tokio::test]
async fn small_values_of_one_call_share_a_buffer_per_partition_and_large_ones_are_kept() {
    let broker = EmbeddedBroker::builder()
        .start_from(StartFrom::Earliest)
        .build()
        .expect("valid settings");
    broker.create_topic("t", 2).await.expect("create");
    let large = Bytes::from(vec![b'L'; 2000]);
    // Keyless: round-robin over the two partitions (1, 0, 1, 0, 1).
    let records = vec![
        OutgoingRecord::new("a1"),
        OutgoingRecord::new("b0"),
        OutgoingRecord::new("c1"),
        OutgoingRecord::new(large.clone()),
        OutgoingRecord::new("e1"),
    ];
    broker.produce("t", records).await.expect("produce");
    let stored = broker.read_topic("t").expect("topic");
    let by_value: Vec<(i32, &[u8])> = stored
        .iter()
        .map(|d| (d.id.partition, &value(d)[..]))
        .collect();
    assert_eq!(
        by_value,
        [
            (0, &b"b0"[..]),
            (0, &large[..]),
            (1, b"a1"),
            (1, b"c1"),
            (1, b"e1")
        ]
    );
    // Partition 1's three small values are neighbours in one buffer ...
    assert!(adjacent(value(&stored[2]), value(&stored[3])));
    assert!(adjacent(value(&stored[3]), value(&stored[4])));
    // ... not in partition 0's, which has one small value: nothing to share, so not packed.
    assert!(!adjacent(value(&stored[0]), value(&stored[2])));
    // The large value is the caller's own buffer, not a copy.
    assert_eq!(value(&stored[1]).as_ptr(), large.as_ptr());

    // A second call starts buffers of its own: its records never keep the first call's alive.
    broker
        .produce(
            "t",
            vec![OutgoingRecord::new("f"), OutgoingRecord::new("g")],
        )
        .await
        .expect("produce");
    // Partition 0 now holds b0, the large value and f; partition 1 a1, c1, e1 and g.
    let stored = broker.read_topic("t").expect("topic");
    assert_eq!(
        (&value(&stored[5])[..], &value(&stored[6])[..]),
        (&b"e1"[..], &b"g"[..])
    );
    assert!(!adjacent(value(&stored[5]), value(&stored[6])));
    // A delivery's value is the stored slice, not a copy of it.
    let member = broker.join("g", &["t".to_string()]).await.expect("join");
    let acquired = member.acquire(10, Duration::ZERO).await.expect("acquire");
    let c1 = acquired
        .iter()
        .find(|d| &value(d)[..] == b"c1")
        .expect("c1 acquired");
    assert_eq!(value(c1).as_ptr(), value(&stored[4]).as_ptr());
}

#[tokio::test]
async fn a_stored_record_keeps_its_key_headers_and_timestamp_in_48_bytes() {
    assert_eq!(std::mem::size_of::<StoredRecord>(), 48);
    let broker = EmbeddedBroker::new();
    let mut keyed = OutgoingRecord::new("v");
    keyed.key = Some(Bytes::from_static(b"k"));
    keyed.headers.push("h", "x");
    let before = SystemTime::now();
    broker
        .produce("t", vec![keyed, OutgoingRecord::new("plain")])
        .await
        .expect("produce");
    let stored = broker.read_topic("t").expect("topic");
    let keyed = stored
        .iter()
        .find(|d| d.key.is_some())
        .expect("the keyed record");
    assert_eq!(keyed.key.as_deref(), Some(&b"k"[..]));
    assert_eq!(keyed.headers.get("h"), Some(&b"x"[..]));
    let plain = stored
        .iter()
        .find(|d| d.key.is_none())
        .expect("the plain record");
    assert!(plain.headers.is_empty());
    assert_eq!(value(plain), &b"plain"[..]);
    // Milliseconds, as Kafka keeps them: at most a millisecond before the call.
    let ms = Duration::from_millis(1);
    assert!(
        plain.timestamp + ms > before,
        "{:?} vs {before:?}",
        plain.timestamp
    );
    assert!(plain.timestamp <= SystemTime::now());
}

#[test]
fn a_packed_buffer_holds_at_most_64_kib() {
    let values: Vec<Bytes> = (0..200u8).map(|i| Bytes::from(vec![i; 1000])).collect();
    let mut packer = Packer::new(values.len(), 200 * 1000).expect("200 small values");
    let packed: Vec<Bytes> = values.iter().map(|v| packer.pack(v.clone())).collect();
    assert_eq!(packed, values, "the bytes are unchanged");
    // Buffers are runs of neighbours: 200,000 bytes need four of at most 64 KiB.
    let mut runs = vec![packed[0].len()];
    for w in packed.windows(2) {
        if adjacent(&w[0], &w[1]) {
            *runs.last_mut().expect("a run") += w[1].len();
        } else {
            runs.push(w[1].len());
        }
    }
    assert_eq!(runs.len(), 4, "{runs:?}");
    assert!(runs.iter().all(|&r| r <= 64 * 1024), "{runs:?}");
    // An empty value and one over 1 KiB are not copied.
    assert!(packer.pack(Bytes::new()).is_empty());
    let big = Bytes::from(vec![0; 1025]);
    assert_eq!(packer.pack(big.clone()).as_ptr(), big.as_ptr());
    assert!(Packer::new(1, 10).is_none(), "one value: nothing to share");
}

#[test]
fn limits_out_of_range_are_refused_with_the_key_name() {
    let err = EmbeddedBroker::builder()
        .delivery_count_limit(11)
        .build()
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("share.delivery.count.limit")),
        "{err:?}"
    );
}
