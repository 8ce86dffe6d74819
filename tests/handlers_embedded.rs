//! Handlers as users write them: payload types, tower layers and the testing harness, on the
//! embedded broker with paused time.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shareworker::testing::TestWorker;
use shareworker::{Job, JobDefinition, JobError, broker::Bytes, queue::Message, worker::Outcome};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn raw_payloads_reach_bytes_and_string_handlers() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s1 = seen.clone();
    let s2 = seen.clone();
    let mut t = TestWorker::new()
        .job(JobDefinition::new(
            "text",
            "texts",
            move |job: Job<String>| {
                let seen = s1.clone();
                async move {
                    seen.lock()
                        .expect("lock")
                        .push(format!("text:{}", job.payload()));
                    Ok::<(), JobError>(())
                }
            },
        ))
        .job(JobDefinition::new("raw", "raws", move |job: Job<Bytes>| {
            let seen = s2.clone();
            async move {
                seen.lock()
                    .expect("lock")
                    .push(format!("raw:{}", job.payload().len()));
                Ok::<(), JobError>(())
            }
        }));
    t.send("texts", Message::text("not json at all"))
        .await
        .expect("enqueue text");
    t.send("raws", Message::bytes(vec![0xff_u8, 0, 1]))
        .await
        .expect("enqueue bytes");
    let report = t.run_until_idle().await.expect("run");
    let mut seen = seen.lock().expect("lock").clone();
    seen.sort();
    assert_eq!(
        seen,
        ["raw:3", "text:not json at all"],
        "raw payloads are passed through untouched"
    );
    assert_eq!(report.summary().accepted, 2);
}

#[tokio::test(start_paused = true)]
async fn tower_timeout_layer_makes_a_retryable_failure() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let def = JobDefinition::new("slow", "slow", move |_job: Job<u32>| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<(), JobError>(())
        }
    })
    .max_attempts(3)
    .backoff(
        Duration::from_millis(100),
        Duration::from_millis(100),
        1.0,
        0.0,
    )
    .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(1)));
    let mut t = TestWorker::new().job(def);
    let at = t.enqueue("slow", &1).await.expect("enqueue");
    let report = t.run_until_idle().await.expect("run");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the layer's timeout is retried up to max_attempts"
    );
    assert_eq!(
        report.final_outcome("slow", at.partition, at.offset),
        Some(&Outcome::DeadLettered),
        "after the last timed-out attempt the record is dead-lettered: {report:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn permanent_error_passes_through_a_layer() {
    let def = JobDefinition::new("bad", "bad", |_job: Job<u32>| async {
        Err::<(), _>(JobError::permanent("never valid"))
    })
    .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(1)));
    let mut t = TestWorker::new().job(def);
    let at = t.enqueue("bad", &1).await.expect("enqueue");
    let report = t.run_until_idle().await.expect("run");
    assert_eq!(
        report.attempts("bad", at.partition, at.offset),
        1,
        "a permanent error is not retried"
    );
    let dlq = report
        .dead_letters("bad.dlq")
        .expect("dead-letter topic exists");
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        dlq[0]
            .headers
            .get_str(shareworker::dead_letter::headers::ERROR),
        Some("never valid")
    );
}

#[tokio::test(start_paused = true)]
async fn rate_limit_layer_holds_across_concurrent_jobs() {
    let starts: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let s = starts.clone();
    let def = JobDefinition::new("limited", "limited", move |_job: Job<u32>| {
        let s = s.clone();
        async move {
            s.lock().expect("lock").push(Instant::now());
            Ok::<(), JobError>(())
        }
    })
    .concurrency(16)
    .layer(tower::limit::RateLimitLayer::new(2, Duration::from_secs(1)));
    let mut t = TestWorker::new().job(def);
    for i in 0..10 {
        t.enqueue("limited", &i).await.expect("enqueue");
    }
    let report = t.run_until_idle().await.expect("run");
    assert_eq!(report.summary().accepted, 10);
    let starts = starts.lock().expect("lock").clone();
    let first = starts[0];
    for (i, at) in starts.iter().enumerate() {
        let window = (at.duration_since(first).as_millis() / 1000) as usize;
        assert!(
            i / 2 <= window,
            "job {i} started at {:?}: the shared rate limit allows 2 per second across all 16 slots",
            at.duration_since(first)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn jobs_see_shutdown_through_cancelled() {
    let saw_cancel = Arc::new(AtomicU32::new(0));
    let c = saw_cancel.clone();
    let def = JobDefinition::new("long", "long", move |job: Job<u32>| {
        let c = c.clone();
        async move {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => Ok(()),
                _ = job.cancelled() => {
                    c.fetch_add(1, Ordering::SeqCst);
                    Err(JobError::retry("interrupted by shutdown"))
                }
            }
        }
    });
    let broker = shareworker::EmbeddedBroker::builder()
        .start_from(shareworker::broker::StartFrom::Earliest)
        .build()
        .expect("broker");
    let queue = shareworker::Queue::new(broker.clone());
    queue.enqueue("long", &1).await.expect("enqueue");
    let mut config = shareworker::Config::default();
    config.http.enabled = false;
    let worker = shareworker::Worker::builder()
        .broker(broker)
        .config(config)
        .code_config_only()
        .without_signal_handling()
        .job(def)
        .build()
        .await
        .expect("build");
    let stop = worker.shutdown_handle();
    let run = tokio::spawn(worker.run());
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.shutdown();
    let summary = run.await.expect("join").expect("run");
    assert_eq!(
        saw_cancel.load(Ordering::SeqCst),
        1,
        "the handler saw job.cancelled() fire"
    );
    assert_eq!(
        summary.retried, 1,
        "its retryable error at shutdown counts as a retry: {summary:?}"
    );
}

/// A payload format of the user's own, next to serde's JSON impls: a count as decimal text.
#[derive(Debug, PartialEq)]
struct Count(u32);

impl shareworker::codec::Decode for Count {
    fn decode(raw: &Bytes) -> Result<Self, shareworker::codec::DecodeError> {
        let text = std::str::from_utf8(raw).map_err(shareworker::codec::DecodeError::new)?;
        text.parse().map(Count).map_err(|e| {
            shareworker::codec::DecodeError::new(format!("not a count ({e}): {text:?}"))
        })
    }
}

impl shareworker::codec::Encode for Count {
    fn encode(&self) -> Result<Bytes, shareworker::codec::EncodeError> {
        Ok(Bytes::from(self.0.to_string()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_format_of_our_own_is_decoded_and_what_does_not_decode_is_dead_lettered_with_why() {
    let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
    let texts: Arc<Mutex<Vec<String>>> = Arc::default();
    let (s, tx) = (seen.clone(), texts.clone());
    let mut t = TestWorker::new()
        .job(JobDefinition::new(
            "count",
            "counts",
            move |job: Job<Count>| {
                let seen = s.clone();
                async move {
                    seen.lock().expect("lock").push(job.payload().0);
                    Ok::<(), JobError>(())
                }
            },
        ))
        .job(JobDefinition::new(
            "text",
            "texts",
            move |job: Job<String>| {
                let texts = tx.clone();
                async move {
                    texts.lock().expect("lock").push(job.into_payload());
                    Ok::<(), JobError>(())
                }
            },
        ));
    // Typed producers: the same traits encode, so the handlers get what was sent.
    t.enqueue("counts", &Count(41)).await.expect("enqueue");
    t.enqueue("texts", "said \"hi\"").await.expect("enqueue");
    t.enqueue("texts", &String::from("plain"))
        .await
        .expect("enqueue");
    let bad = t
        .send("counts", Message::text("forty-two"))
        .await
        .expect("enqueue");
    let report = t.run_until_idle().await.expect("run");
    assert_eq!(*seen.lock().expect("lock"), [41]);
    let mut texts = texts.lock().expect("lock").clone();
    texts.sort();
    assert_eq!(
        texts,
        ["plain", "said \"hi\""],
        "text is sent raw, not JSON-quoted"
    );
    assert_eq!(
        report.final_outcome("counts", bad.partition, bad.offset),
        Some(&Outcome::DeadLettered)
    );
    let letters = report.dead_letters("counts.dlq").expect("read");
    assert_eq!(letters.len(), 1);
    let headers = &letters[0].headers;
    assert_eq!(
        headers.get_str(shareworker::dead_letter::headers::ATTEMPTS),
        Some("1"),
        "a payload that does not decode is permanent"
    );
    assert_eq!(
        headers.get_str(shareworker::dead_letter::headers::ERROR),
        Some("not a count (invalid digit found in string): \"forty-two\""),
        "the dead letter says what the decoder said"
    );
}
