use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, FindCoordinatorResponse, MetadataResponse, ResponseHeader,
    ShareGroupHeartbeatResponse, api_versions_response, find_coordinator_response,
    metadata_response,
};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::super::broker::KafkaBroker;
use super::*;
use shareworker_core::{Broker, OutgoingRecord};

#[test]
fn labels_are_bounded_names() {
    assert_eq!(
        api_label("DescribeShareGroupOffsets for group `g`"),
        "DescribeShareGroupOffsets"
    );
    assert_eq!(api_label("ShareFetch"), "ShareFetch");
    assert_eq!(api_label("`odd`"), "other");
    assert_eq!(code_label(6), "NOT_LEADER_OR_FOLLOWER");
    assert_eq!(code_label(121), "INVALID_RECORD_STATE");
    assert_eq!(code_label(-999), "ERROR_-999");
}

fn count(counts: &ErrorCounts, api: &str, code: &str) -> Option<u64> {
    counts
        .snapshot()
        .into_iter()
        .find(|e| e.api == api && e.code == code)
        .map(|e| e.count)
}

#[test]
fn counts_accumulate_per_client_and_building_an_error_counts_nothing() {
    let one = ErrorCounts::default();
    let other = ErrorCounts::default();
    one.record("TestApiForCounts with details", "TIMEOUT_TEST");
    one.record("TestApiForCounts", "TIMEOUT_TEST");
    let e = one.error("TestApiForCounts `t`", 6, Some("moved"));
    assert_eq!(e.kafka_code(), Some(6));
    one.answered("TestApiForCounts", 0);
    // Built, kept, built again: no count anywhere.
    for _ in 0..3 {
        let _ = Error::kafka("TestApiForCounts", 6, None);
    }
    assert_eq!(count(&one, "TestApiForCounts", "TIMEOUT_TEST"), Some(2));
    assert_eq!(
        count(&one, "TestApiForCounts", "NOT_LEADER_OR_FOLLOWER"),
        Some(1)
    );
    assert_eq!(one.snapshot().len(), 2, "code 0 is no error");
    assert!(other.snapshot().is_empty(), "{:?}", other.snapshot());
}

/// A stand-in Kafka broker on a free local port, enough to connect and join a share group:
/// ApiVersions, Metadata, FindCoordinator, and ShareGroupHeartbeat, which accepts the first
/// heartbeat and answers GROUP_AUTHORIZATION_FAILED to every later one (a fatal error the
/// member keeps and fails every acquire with).
struct FakeBroker {
    port: u16,
    heartbeats: Arc<AtomicUsize>,
}

impl FakeBroker {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local address").port();
        let heartbeats = Arc::new(AtomicUsize::new(0));
        let seen = heartbeats.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, port, seen.clone()));
            }
        });
        Self { port, heartbeats }
    }

    fn url(&self) -> String {
        format!("kafka://127.0.0.1:{}", self.port)
    }
}

fn response<M: Encodable + HeaderVersion>(correlation: i32, version: i16, body: &M) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation)
        .encode(&mut buf, M::header_version(version))
        .expect("header encodes");
    body.encode(&mut buf, version).expect("body encodes");
    let len = i32::try_from(buf.len() - 4).expect("small frame");
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf
}

async fn serve(mut socket: TcpStream, port: u16, heartbeats: Arc<AtomicUsize>) {
    let host = || StrBytes::from_static_str("127.0.0.1");
    loop {
        let Ok(len) = socket.read_i32().await else {
            return;
        };
        let mut frame = vec![0; usize::try_from(len).unwrap_or(0)];
        if socket.read_exact(&mut frame).await.is_err() || frame.len() < 8 {
            return;
        }
        let mut head = &frame[..8];
        let (key, version, correlation) = (head.get_i16(), head.get_i16(), head.get_i32());
        let out = match key {
            18 => {
                let api = |key, min, max| {
                    api_versions_response::ApiVersion::default()
                        .with_api_key(key)
                        .with_min_version(min)
                        .with_max_version(max)
                };
                let body = ApiVersionsResponse::default().with_api_keys(vec![
                    api(18, 3, 3),
                    api(3, 12, 13),
                    api(10, 4, 6),
                    api(76, 1, 1),
                    api(78, 1, 2),
                    api(79, 1, 2),
                ]);
                response(correlation, version, &body)
            }
            3 => {
                let body = MetadataResponse::default().with_brokers(vec![
                    metadata_response::MetadataResponseBroker::default()
                        .with_node_id(BrokerId(1))
                        .with_host(host())
                        .with_port(i32::from(port)),
                ]);
                response(correlation, version, &body)
            }
            10 => {
                let body = FindCoordinatorResponse::default().with_coordinators(vec![
                    find_coordinator_response::Coordinator::default()
                        .with_key(StrBytes::from_static_str("group"))
                        .with_node_id(BrokerId(1))
                        .with_host(host())
                        .with_port(i32::from(port)),
                ]);
                response(correlation, version, &body)
            }
            76 => {
                let body = if heartbeats.fetch_add(1, Ordering::SeqCst) == 0 {
                    ShareGroupHeartbeatResponse::default()
                        .with_member_epoch(1)
                        .with_heartbeat_interval_ms(10)
                } else {
                    ShareGroupHeartbeatResponse::default()
                        .with_error_code(30)
                        .with_error_message(Some(StrBytes::from_static_str("no ACL")))
                };
                response(correlation, version, &body)
            }
            // Anything else goes unanswered: the test does not send it.
            _ => continue,
        };
        if socket.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// A fatal error the broker answered once is counted once, however many acquires return it
/// afterwards; another client of the same process counts nothing it did not see.
#[tokio::test]
async fn a_kept_fatal_error_counts_once_and_only_for_its_client() {
    let fake = FakeBroker::start().await;
    let broker = KafkaBroker::connect(&fake.url()).await.expect("connect");
    let bystander = KafkaBroker::connect(&fake.url()).await.expect("connect");
    let member = broker
        .join("group", &["jobs".to_owned()])
        .await
        .expect("the first heartbeat is accepted");
    let first = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match member.acquire(1, Duration::from_millis(50)).await {
                Err(e) => break e,
                Ok(got) => assert!(got.is_empty(), "nothing is assigned"),
            }
        }
    })
    .await
    .expect("the refused heartbeat fails acquire");
    assert!(first.is_not_authorized(), "{first:?}");
    for _ in 0..3 {
        let again = member
            .acquire(1, Duration::from_millis(50))
            .await
            .expect_err("the fatal error is kept");
        assert_eq!(again.to_string(), first.to_string());
    }
    let counts = broker.error_counts();
    let refused: Vec<_> = counts
        .iter()
        .filter(|e| e.api == "ShareGroupHeartbeat")
        .map(|e| (e.code.as_str(), e.count))
        .collect();
    assert_eq!(
        refused,
        [("GROUP_AUTHORIZATION_FAILED", 1)],
        "heartbeats answered: {}; counts: {counts:?}",
        fake.heartbeats.load(Ordering::SeqCst)
    );
    assert!(
        bystander.error_counts().is_empty(),
        "{:?}",
        bystander.error_counts()
    );
}

/// Two clients of one real broker count their own refusals (the metadata lookup before the
/// produce is the request refused).
#[tokio::test]
async fn two_clients_of_the_real_broker_count_apart() {
    let Some(bootstrap) = super::super::admin::test_bootstrap() else {
        return;
    };
    let url = if bootstrap.starts_with("kafka://") {
        bootstrap
    } else {
        format!("kafka://{bootstrap}")
    };
    let one = KafkaBroker::connect(&url).await.expect("connect");
    let other = KafkaBroker::connect(&url).await.expect("connect");
    let refused = |b: &KafkaBroker| {
        b.error_counts()
            .into_iter()
            .filter(|e| e.code == "INVALID_TOPIC_EXCEPTION")
            .map(|e| e.count)
            .sum::<u64>()
    };
    for (broker, times) in [(&one, 2), (&other, 1)] {
        for _ in 0..times {
            let e = broker
                .produce("not a valid topic name!", vec![OutgoingRecord::new("x")])
                .await
                .expect_err("Kafka refuses the topic name");
            assert_eq!(e.kafka_code(), Some(17), "{e:?}");
        }
    }
    assert_eq!((refused(&one), refused(&other)), (2, 1));
}
