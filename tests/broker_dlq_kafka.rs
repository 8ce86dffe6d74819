//! The broker's own dead-letter queue (Kafka 4.4, KIP-1191) on the real broker
//! (`KAFKA_BOOTSTRAP`, Kafka 4.4.0 with share.version 2, the default of a fresh 4.4 cluster).
//! When the group has `errors.deadletterqueue.topic.name`, the runtime rejects after the last
//! attempt and the broker writes the dead letter with its `__dlq.*` headers; the handler's own
//! dead-letter topic gets nothing (never both). A record whose deliveries ran out because its
//! worker kept dying ends there too.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shareworker::broker::{BrokerAdmin, Delivery};
use shareworker::{
    Config, Job, JobDefinition, JobError, Worker,
    broker::{GroupConfig, OutgoingRecord, StartFrom},
    worker::Outcome,
};
use shareworker_tests::kafka;
use std::sync::Mutex;

fn stamp() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Reads `n` records of `topic` through a fresh share group that starts at the beginning.
async fn read_all(broker: &Arc<dyn BrokerAdmin>, topic: &str, n: usize) -> Vec<Delivery> {
    let group = format!("reader-{}", stamp());
    broker
        .configure_group(
            &group,
            &GroupConfig::default().start_from(StartFrom::Earliest),
        )
        .await
        .expect("earliest");
    let member = broker
        .join(&group, &[topic.to_owned()])
        .await
        .expect("join");
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < n && tokio::time::Instant::now() < deadline {
        got.extend(
            member
                .acquire(n - got.len(), Duration::from_secs(2))
                .await
                .expect("acquire"),
        );
    }
    let acks: Vec<_> = got
        .iter()
        .map(|d| (d.id.clone(), shareworker::broker::AckKind::Accept))
        .collect();
    member.settle(&acks).await.expect("settle");
    member.leave().await.expect("leave");
    got
}

fn header<'a>(d: &'a Delivery, name: &str) -> &'a str {
    d.headers
        .get_str(name)
        .unwrap_or_else(|| panic!("no header {name} on {}: {:?}", d.id, d.headers))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_writes_the_dead_letter_and_the_runtime_only_rejects() {
    let Some(url) = kafka::bootstrap() else {
        return;
    };
    let broker = kafka::connect(&url).await;
    let s = stamp();
    let topic = format!("bdlq-{s}");
    let dlq = format!("dlq.bdlq-{s}");
    let group = format!("bdlq-g-{s}");
    broker.create_topic(&topic, 1).await.expect("topic");
    broker
        .configure_group(
            &group,
            &GroupConfig::default()
                .start_from(StartFrom::Earliest)
                .broker_dead_letter(&dlq),
        )
        .await
        .expect("set the group's dead-letter topic (Kafka 4.4)");
    assert_eq!(
        broker.broker_dead_letter(&group).await.expect("describe"),
        Some(dlq.clone())
    );
    broker
        .produce(
            &topic,
            vec![OutgoingRecord::new("bad"), OutgoingRecord::new("good")],
        )
        .await
        .expect("produce");

    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let seen = outcomes.clone();
    let done = Arc::new(tokio::sync::Notify::new());
    let d = done.clone();
    let mut config = Config::default();
    config.http.enabled = false;
    let worker = Worker::builder()
        .broker_arc(broker.clone())
        .config(config)
        .code_config_only()
        .without_signal_handling()
        .on_event(move |e| {
            if matches!(
                e.outcome,
                Outcome::Accepted | Outcome::DeadLetteredByBroker { .. }
            ) && let Ok(mut o) = seen.lock()
            {
                o.push(e.outcome.clone());
                if o.len() == 2 {
                    d.notify_one();
                }
            }
        })
        .job(
            // The handler's own dead-letter topic stays the default `<topic>.dlq`: unused here.
            JobDefinition::new("bdlq", &topic, |job: Job<String>| async move {
                if job.payload() == "bad" {
                    Err(JobError::permanent("cannot handle `bad`"))
                } else {
                    Ok(())
                }
            })
            .group(&group),
        )
        .build()
        .await
        .expect("build");
    let stop = worker.shutdown_handle();
    let run = tokio::spawn(worker.run());
    tokio::time::timeout(Duration::from_secs(60), done.notified())
        .await
        .expect("both records settled within 60 s");
    stop.shutdown();
    let summary = run.await.expect("join").expect("run");
    assert_eq!(
        (summary.accepted, summary.dead_lettered),
        (1, 1),
        "{summary:?}"
    );
    let outcomes = outcomes.lock().expect("events").clone();
    assert!(
        outcomes.contains(&Outcome::DeadLetteredByBroker {
            topic: dlq.clone(),
            error: "cannot handle `bad`".into()
        }),
        "{outcomes:?}"
    );

    // The broker wrote the dead letter, with its headers naming the original.
    let letters = read_all(&broker, &dlq, 1).await;
    assert_eq!(letters.len(), 1, "one dead letter in {dlq}");
    let l = &letters[0];
    assert_eq!(header(l, "__dlq.errors.topic"), topic);
    assert_eq!(header(l, "__dlq.errors.partition"), "0");
    assert_eq!(header(l, "__dlq.errors.offset"), "0");
    assert_eq!(header(l, "__dlq.errors.group"), group);
    // Never both: the runtime wrote nothing to the handler's own dead-letter topic.
    let own = broker
        .end_offsets(&[format!("{topic}.dlq")])
        .await
        .expect("end offsets");
    assert!(
        own.iter().all(|(_, n)| *n == 0),
        "the runtime wrote its own dead letter too: {own:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_whose_workers_kept_dying_ends_in_the_brokers_dead_letter_queue() {
    let Some(url) = kafka::bootstrap() else {
        return;
    };
    let broker = kafka::connect(&url).await;
    let s = stamp();
    let topic = format!("bdlq-crash-{s}");
    let dlq = format!("dlq.bdlq-crash-{s}");
    let group = format!("bdlq-crash-g-{s}");
    broker.create_topic(&topic, 1).await.expect("topic");
    // What a worker of the group does at start: the topic exists and takes dead letters.
    broker
        .prepare_broker_dead_letter(&dlq)
        .await
        .expect("dlq topic");
    broker
        .configure_group(
            &group,
            &GroupConfig::default()
                .start_from(StartFrom::Earliest)
                .delivery_count_limit(2)
                .broker_dead_letter(&dlq),
        )
        .await
        .expect("configure");
    broker
        .produce(&topic, vec![OutgoingRecord::new("poison")])
        .await
        .expect("produce");
    // Two members in turn take the record and go away without settling it, as a worker that
    // crashes with it would (the session ends; the broker releases it, delivery count + 1).
    for delivery in 1..=2u16 {
        let member = broker
            .join(&group, std::slice::from_ref(&topic))
            .await
            .expect("join");
        let mut got = Vec::new();
        for _ in 0..30 {
            got = member
                .acquire(1, Duration::from_secs(2))
                .await
                .expect("acquire");
            if !got.is_empty() {
                break;
            }
        }
        assert_eq!(got.len(), 1, "delivery {delivery} came");
        assert_eq!(got[0].delivery_count, delivery);
        member.leave().await.expect("leave without settling");
    }
    // Out of deliveries: archived, and with a DLQ configured, written there by the broker.
    let letters = read_all(&broker, &dlq, 1).await;
    assert_eq!(letters.len(), 1, "the poison record is in {dlq}");
    assert_eq!(header(&letters[0], "__dlq.errors.topic"), topic);
    assert_eq!(header(&letters[0], "__dlq.errors.group"), group);
}
