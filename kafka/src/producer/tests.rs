use std::collections::HashMap;

use kafka_protocol::messages::FetchRequest;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::records::RecordBatchDecoder;

use super::*;
use crate::admin::{Admin, test_cluster, unique_name};
use shareworker_core::Header;

/// The Java client's `UtilsTest.testMurmur2` cases.
#[test]
fn murmur2_matches_the_java_client() {
    let cases: [(&[u8], i32); 6] = [
        (b"21", -973_932_308),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        (b"abc", 479_470_107),
    ];
    for (key, hash) in cases {
        assert_eq!(murmur2(key), hash, "{}", String::from_utf8_lossy(key));
    }
    // toPositive masks the sign bit; it is not abs().
    assert_eq!(
        partition_for_key(b"foobar", 3),
        1_357_151_166 % 3 // 2^31 - 790_332_482
    );
    assert_eq!(partition_for_key(b"21", 1), 0);
}

fn rec(key: Option<&str>, partition: Option<i32>) -> OutgoingRecord {
    OutgoingRecord {
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value: Some(Bytes::from_static(b"v")),
        partition,
        ..OutgoingRecord::default()
    }
}

#[test]
fn partitioning_without_a_broker() {
    let records = [
        rec(None, Some(2)),
        rec(Some("foobar"), None),
        rec(None, None),
        rec(Some("foobar"), Some(0)),
        rec(None, None),
        rec(None, None),
        rec(Some("abc"), None),
    ];
    let got = assign_partitions("t", &records, 3, 7).expect("valid");
    assert_eq!(
        got,
        [
            2,
            partition_for_key(b"foobar", 3),
            7 % 3,
            0, // an explicit partition beats the key
            8 % 3,
            9 % 3,
            partition_for_key(b"abc", 3),
        ]
    );
    // Round-robin wraps at u32::MAX without panicking.
    let unkeyed = [rec(None, None), rec(None, None)];
    assert_eq!(
        assign_partitions("t", &unkeyed, 3, u32::MAX).expect("valid"),
        [(u32::MAX % 3) as i32, 0]
    );
    for bad in [-1, 3, 100] {
        let err = assign_partitions("t", &[rec(None, Some(bad))], 3, 0).expect_err("bad");
        assert!(err.is_invalid_input(), "{err}");
        assert!(
            err.to_string().contains(&format!("partition {bad}")),
            "{err}"
        );
        assert!(err.to_string().contains("0 to 2"), "{err}");
    }
    assert!(assign_partitions("t", &records, 0, 0).is_err());
}

#[test]
fn big_partitions_are_cut_into_ordered_batches() {
    let big = |p| OutgoingRecord {
        value: Some(Bytes::from(vec![0u8; 400 * 1024])),
        partition: Some(p),
        ..OutgoingRecord::default()
    };
    let records = [big(0), big(0), rec(None, Some(1)), big(0), big(0), big(0)];
    let partitions = [0, 0, 1, 0, 0, 0];
    let rounds = plan_rounds(&records, &partitions);
    assert_eq!(
        rounds,
        vec![
            vec![(0, vec![0, 1]), (1, vec![2])],
            vec![(0, vec![3, 4])],
            vec![(0, vec![5])],
        ]
    );
    // Small calls: one round, one batch per partition.
    let small = [rec(None, Some(0)), rec(None, Some(1)), rec(None, Some(0))];
    assert_eq!(
        plan_rounds(&small, &[0, 1, 0]),
        vec![vec![(0, vec![0, 2]), (1, vec![1])]]
    );
}

#[test]
fn compression_names() {
    for c in Compression::ALL {
        assert_eq!(c.name().parse::<Compression>().ok(), Some(c));
    }
    assert_eq!(" LZ4 ".parse::<Compression>().ok(), Some(Compression::Lz4));
    assert_eq!(Compression::default(), Compression::Lz4);
    let err = "brotli".parse::<Compression>().expect_err("unknown");
    assert!(
        err.is_config() && err.to_string().contains("brotli"),
        "{err}"
    );
}

#[test]
fn one_batch_without_producer_id_or_sequence() {
    let mut dup = OutgoingRecord::new("x").with_key("k");
    dup.headers.push("h", "first");
    dup.headers.push_header(Header {
        key: "none".into(),
        value: None,
    });
    dup.headers.push("h", "last");
    let tombstone = OutgoingRecord {
        key: Some(Bytes::from_static(b"gone")),
        ..OutgoingRecord::default()
    };
    let plain = OutgoingRecord::new("y");
    for compression in Compression::ALL {
        let bytes = encode_batch(&[&dup, &tombstone, &plain], compression, 1_700_000_000_000)
            .expect("encodes");
        let mut buf = bytes.clone();
        let info = RecordBatchDecoder::decode_batch_info(&mut buf).expect("batch info");
        assert_eq!(info.len(), 1, "{compression}: one batch");
        assert_eq!(info[0].record_count, 3);
        assert_eq!(info[0].base_sequence, -1);
        assert_eq!(info[0].producer_id, -1);
        assert_eq!(info[0].compression, compression.wire());
        let mut buf = bytes;
        let set = RecordBatchDecoder::decode(&mut buf).expect("decodes");
        let r = &set.records;
        assert_eq!(r.iter().map(|r| r.offset).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(r[0].timestamp, 1_700_000_000_000);
        // Duplicate names collapse: the last value, at the first one's position.
        let headers: Vec<_> = r[0]
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
            .collect();
        assert_eq!(
            headers,
            [
                ("h".to_owned(), Some(Bytes::from_static(b"last"))),
                ("none".to_owned(), None)
            ]
        );
        assert_eq!(r[1].value, None);
        assert_eq!(r[1].key.as_deref(), Some(&b"gone"[..]));
        assert_eq!(r[2].key, None);
    }
}

#[test]
fn backoff_grows_to_a_second() {
    let pauses: Vec<u64> = (1..=6).map(|a| backoff(a).as_millis() as u64).collect();
    assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000]);
    assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
}

/// Reads the records of `topic`/`partition` from `offset` with Fetch (v13+, by topic id).
async fn fetch(cluster: &Cluster, topic: &str, partition: i32, offset: i64) -> Vec<Record> {
    let meta = cluster.topic(topic).await.expect("topic");
    let leader = meta
        .partitions
        .iter()
        .find(|p| p.index == partition)
        .expect("partition")
        .leader;
    let conn = cluster.node(leader).await.expect("leader");
    let req = FetchRequest::default()
        .with_max_wait_ms(100)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic_id(meta.id)
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let (resp, _) = conn
        .call(&req, Versions { min: 13, max: 16 })
        .await
        .expect("fetch");
    assert_eq!(resp.error_code, 0);
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let mut bytes = p.records.clone().unwrap_or_default();
    RecordBatchDecoder::decode_all(&mut bytes)
        .expect("decodes")
        .into_iter()
        .flat_map(|s| s.records)
        .collect()
}

#[tokio::test]
async fn produce_keys_headers_and_offsets_on_the_real_broker() {
    let Some(cluster) = test_cluster().await else {
        return;
    };
    let admin = Admin::new(cluster.clone());
    let topic = unique_name("produce");
    admin.create_topic(&topic, 3).await.expect("create");
    let producer = Producer::new(cluster.clone(), Compression::default());

    let before = admin.list_offsets(&topic).await.expect("offsets");
    assert_eq!(before, [(0, 0, 0), (1, 0, 0), (2, 0, 0)]);

    let mut records = Vec::new();
    for i in 0..30 {
        let mut r = OutgoingRecord::new(format!("value-{i}")).with_key(format!("key-{}", i % 7));
        r.headers.push("i", i.to_string());
        r.headers.push_header(Header {
            key: "empty".into(),
            value: None,
        });
        records.push(r);
    }
    records.push(OutgoingRecord::new("unkeyed-a"));
    records.push(OutgoingRecord::new("unkeyed-b"));
    records.push(OutgoingRecord {
        partition: Some(2),
        key: Some(Bytes::from_static(b"tomb")),
        ..OutgoingRecord::default()
    });
    let written = producer
        .produce(&topic, records.clone())
        .await
        .expect("produce");
    assert_eq!(written.len(), records.len());

    // Keys land where the Java client puts them; explicit partitions are honoured.
    for (r, w) in records.iter().zip(&written).take(30) {
        let key = r.key.as_ref().expect("keyed");
        assert_eq!(w.partition, partition_for_key(key, 3));
    }
    assert_ne!(written[30].partition, written[31].partition, "round-robin");
    assert_eq!(written[32].partition, 2);

    // Offsets: 0, 1, 2... per partition in input order, and the log end moved exactly.
    let mut next: HashMap<i32, i64> = HashMap::new();
    for w in &written {
        let n = next.entry(w.partition).or_default();
        assert_eq!(w.offset, *n, "{w:?}");
        *n += 1;
    }
    let after = admin.list_offsets(&topic).await.expect("offsets");
    for (p, earliest, latest) in &after {
        assert_eq!(*earliest, 0);
        assert_eq!(*latest, next.get(p).copied().unwrap_or(0), "partition {p}");
    }

    // What the broker stored: key, value, headers, tombstone.
    for (i, (r, w)) in records.iter().zip(&written).enumerate() {
        let got = fetch(&cluster, &topic, w.partition, w.offset).await;
        let first = got.iter().find(|g| g.offset == w.offset).expect("stored");
        assert_eq!(first.key, r.key, "record {i}");
        assert_eq!(first.value, r.value, "record {i}");
        let headers: Vec<_> = first
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
            .collect();
        let want: Vec<_> = r
            .headers
            .iter()
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect();
        assert_eq!(headers, want, "record {i}");
    }

    // A second call appends after the first.
    let more = producer
        .produce(&topic, vec![OutgoingRecord::new("x").with_key("key-0")])
        .await
        .expect("produce");
    assert_eq!(more[0].partition, written[0].partition);
    assert_eq!(more[0].offset, next[&written[0].partition]);
}

#[tokio::test]
async fn every_compression_is_accepted_by_the_real_broker() {
    let Some(cluster) = test_cluster().await else {
        return;
    };
    let topic = unique_name("compression");
    Admin::new(cluster.clone())
        .create_topic(&topic, 1)
        .await
        .expect("create");
    let mut offset = 0;
    for compression in Compression::ALL {
        let producer = Producer::new(cluster.clone(), compression);
        let records: Vec<_> = (0..50)
            .map(|i| OutgoingRecord::new(format!("{compression} record {i} {}", "x".repeat(100))))
            .collect();
        let written = producer.produce(&topic, records).await.expect("produce");
        assert_eq!(
            written.first().map(|w| w.offset),
            Some(offset),
            "{compression}"
        );
        assert_eq!(
            written.last().map(|w| w.offset),
            Some(offset + 49),
            "{compression}"
        );
        let got = fetch(&cluster, &topic, 0, offset).await;
        assert_eq!(
            got.iter()
                .find(|r| r.offset == offset + 49)
                .and_then(|r| r.value.clone()),
            Some(Bytes::from(format!(
                "{compression} record 49 {}",
                "x".repeat(100)
            )))
        );
        offset += 50;
    }
}

#[tokio::test]
async fn large_calls_are_split_in_order_on_the_real_broker() {
    let Some(cluster) = test_cluster().await else {
        return;
    };
    let topic = unique_name("large");
    let admin = Admin::new(cluster.clone());
    admin.create_topic(&topic, 1).await.expect("create");
    // 3 MiB for one partition: above the broker's 1 MiB max.message.bytes as one batch.
    let records: Vec<_> = (0..12)
        .map(|i| OutgoingRecord::new(vec![i as u8; 256 * 1024]))
        .collect();
    let producer = Producer::new(cluster.clone(), Compression::None);
    let written = producer.produce(&topic, records).await.expect("produce");
    let offsets: Vec<i64> = written.iter().map(|w| w.offset).collect();
    assert_eq!(offsets, (0..12).collect::<Vec<_>>());
    assert_eq!(
        admin.list_offsets(&topic).await.expect("offsets"),
        [(0, 0, 12)]
    );
}

#[tokio::test]
async fn bad_produce_input_on_the_real_broker() {
    let Some(cluster) = test_cluster().await else {
        return;
    };
    let admin = Admin::new(cluster.clone());
    let producer = Producer::new(cluster.clone(), Compression::default());

    let missing = unique_name("missing");
    let err = producer
        .produce(&missing, vec![OutgoingRecord::new("x")])
        .await
        .expect_err("no such topic");
    assert!(err.is_unknown_topic(), "{err:?}");

    let err = producer
        .produce("", vec![OutgoingRecord::new("x")])
        .await
        .expect_err("empty name");
    assert!(err.is_invalid_input(), "{err:?}");

    let topic = unique_name("bad-partition");
    admin.create_topic(&topic, 2).await.expect("create");
    let records = vec![
        OutgoingRecord::new("fine"),
        OutgoingRecord {
            partition: Some(2),
            ..OutgoingRecord::new("no such partition")
        },
    ];
    let err = producer
        .produce(&topic, records)
        .await
        .expect_err("partition 2");
    assert!(err.is_invalid_input(), "{err:?}");
    assert!(err.to_string().contains("partition 2"), "{err}");
    // Nothing was sent, not even the valid record.
    assert_eq!(
        admin.list_offsets(&topic).await.expect("offsets"),
        [(0, 0, 0), (1, 0, 0)]
    );
    assert_eq!(
        producer.produce(&topic, Vec::new()).await.expect("empty"),
        []
    );
}
