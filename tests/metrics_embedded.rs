//! The worker's HTTP endpoint on the embedded broker: `/metrics` (checked by the real `promtool`),
//! `/healthz`, `/readyz`, share lag and the replica hint. Real time: the endpoint is a real
//! socket on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use shareworker::{
    Config, EmbeddedBroker, Job, JobDefinition, JobError, Queue, Worker, broker::StartFrom,
    worker::Outcome,
};
use shareworker_tests::http::{request, sample, try_request, wait_for_metrics};
use tokio::sync::{Notify, Semaphore};

fn config() -> Config {
    let mut c = Config::default();
    c.http.address = "127.0.0.1:0".into();
    c.autoscale.refresh = Duration::from_millis(200);
    c.shutdown_grace = Duration::from_secs(10);
    c
}

fn broker() -> EmbeddedBroker {
    EmbeddedBroker::builder()
        .start_from(StartFrom::Earliest)
        .build()
        .expect("broker")
}

/// Waits until `cond` holds on the metrics text, or panics with the last text seen.
async fn wait_for(addr: SocketAddr, what: &str, cond: impl Fn(&str) -> bool) -> String {
    wait_for_metrics(
        addr,
        what,
        Duration::from_secs(10),
        Duration::from_millis(50),
        cond,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_report_jobs_by_outcome_and_readiness() {
    let broker = broker();
    let queue = Queue::new(broker.clone());
    for i in 0..20 {
        queue.enqueue("m.ok", &i).await.expect("enqueue");
    }
    for i in 0..2 {
        queue.enqueue("m.bad", &i).await.expect("enqueue");
    }
    // A job that runs until the test lets it go, to see /readyz during the shutdown grace.
    queue.enqueue("m.slow", &0).await.expect("enqueue");
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let started = Arc::new(Notify::new());
    let s = started.clone();
    let worker = Worker::builder()
        .broker(broker)
        .config(config())
        .code_config_only()
        .without_signal_handling()
        .job(
            JobDefinition::new("ok", "m.ok", |_: Job<u32>| async { Ok::<(), JobError>(()) })
                .concurrency(4),
        )
        .job(JobDefinition::new("bad", "m.bad", |_: Job<u32>| async {
            Err::<(), JobError>(JobError::permanent("always wrong"))
        }))
        .job(JobDefinition::new("slow", "m.slow", move |_: Job<u32>| {
            let g = g.clone();
            let s = s.clone();
            async move {
                s.notify_one();
                let _permit = g.acquire().await;
                Ok::<(), JobError>(())
            }
        }))
        .build()
        .await
        .expect("build");
    let addr = worker.http_address().expect("the endpoint is on");
    // Bound before run: liveness answers at once, readiness only after joining.
    let stop = worker.shutdown_handle();
    let (status, body) = request(addr, "GET", "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = request(addr, "GET", "/readyz").await;
    assert_eq!(status, 503, "not joined yet: {body}");
    let run = tokio::spawn(worker.run());

    let text = wait_for(addr, "20 accepted and 2 dead letters", |t| {
        sample(
            t,
            "shareworker_jobs_total",
            &[("handler", "ok"), ("outcome", "accepted")],
        ) == Some(20.0)
            && sample(
                t,
                "shareworker_jobs_total",
                &[("handler", "bad"), ("outcome", "dead_lettered")],
            ) == Some(2.0)
    })
    .await;
    // Ready once every group has joined: the first group's jobs may all be done before the
    // last group has joined, so readiness is polled (for up to 10 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = request(addr, "GET", "/readyz").await;
        if status == 200 {
            assert_eq!(body, "ready\n");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready 10 s after the jobs ran: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every attempt is timed; settled-for-good records go into the attempts histogram.
    assert_eq!(
        sample(
            &text,
            "shareworker_handler_duration_seconds_count",
            &[("handler", "ok"), ("group", "ok")]
        ),
        Some(20.0)
    );
    assert_eq!(
        sample(
            &text,
            "shareworker_job_attempts_count",
            &[("handler", "bad")]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "shareworker_job_attempts_sum", &[("handler", "bad")]),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "shareworker_concurrency_limit", &[("handler", "ok")]),
        Some(4.0)
    );
    assert_eq!(
        sample(&text, "shareworker_worker_concurrency_limit", &[]),
        Some(512.0)
    );
    assert_eq!(
        sample(
            &text,
            "shareworker_jobs_total",
            &[("handler", "ok"), ("outcome", "released")]
        ),
        Some(0.0),
        "every outcome is exported from the start"
    );
    assert!(
        sample(
            &text,
            "shareworker_fetched_records_total",
            &[("group", "ok")]
        )
        .is_some_and(|n| n >= 20.0),
        "{text}"
    );
    started.notified().await;
    let text = wait_for(
        addr,
        "the slow job in flight and the lag of its group",
        |t| {
            sample(t, "shareworker_jobs_in_flight", &[("handler", "slow")]) == Some(1.0)
                && sample(
                    t,
                    "shareworker_share_lag_records",
                    &[("group", "slow"), ("topic", "m.slow")],
                ) == Some(1.0)
        },
    )
    .await;
    // One job in flight and nothing arriving: one replica is wanted, not zero.
    assert_eq!(
        sample(&text, "shareworker_desired_replicas", &[("group", "slow")]),
        Some(1.0)
    );
    assert_eq!(sample(&text, "shareworker_ready", &[]), Some(1.0));
    assert_eq!(sample(&text, "shareworker_broker_up", &[]), Some(1.0));

    // Wrong method and unknown path.
    let (status, _) = request(addr, "POST", "/metrics").await;
    assert_eq!(status, 405);
    let (status, body) = request(addr, "GET", "/nothing-here").await;
    assert_eq!(status, 404);
    assert!(
        body.contains("/metrics"),
        "the 404 says what is served: {body}"
    );

    // Shutting down: not ready while the slow job finishes within the grace period.
    stop.shutdown();
    let mut saw = String::new();
    for _ in 0..100 {
        let (status, body) = request(addr, "GET", "/readyz").await;
        if status == 503 {
            saw = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(saw, "not ready: shutting down\n");
    let (status, _) = request(addr, "GET", "/healthz").await;
    assert_eq!(status, 200, "alive while draining");
    gate.add_permits(1);
    let summary = run.await.expect("join").expect("run");
    assert_eq!(summary.accepted, 21);
    // The endpoint stops with the worker.
    assert!(
        try_request(addr, "GET", "/healthz").await.is_err(),
        "still serving after run()"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_lag_and_the_replica_hint_follow_a_backlog() {
    let broker = broker();
    let queue = Queue::new(broker.clone());
    for i in 0..300 {
        queue.enqueue("m.backlog", &i).await.expect("enqueue");
    }
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let done = Arc::new(AtomicU32::new(0));
    let d = done.clone();
    let mut c = config();
    c.autoscale.max_replicas = 7;
    let worker = Worker::builder()
        .broker(broker)
        .config(c)
        .code_config_only()
        .without_signal_handling()
        .on_event(move |e| {
            if e.outcome == Outcome::Accepted {
                d.fetch_add(1, Ordering::SeqCst);
            }
        })
        .job(
            JobDefinition::new("backlog", "m.backlog", move |_: Job<u32>| {
                let g = g.clone();
                async move {
                    // The first 10 jobs take 10 ms each; then all wait for the gate.
                    if let Ok(p) = g.acquire().await {
                        p.forget();
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Ok::<(), JobError>(())
                }
            })
            .concurrency(2)
            .prefetch(0),
        )
        .build()
        .await
        .expect("build");
    let addr = worker.http_address().expect("on");
    let stop = worker.shutdown_handle();
    let run = tokio::spawn(worker.run());
    gate.add_permits(10);
    // 300 waiting, 10 ms each, 2 at a time at 80 %: draining in 60 s needs well under one
    // replica, but something waits: at least 1, and never above the configured 7.
    let text = wait_for(addr, "a lag of 300 minus what finished", |t| {
        sample(t, "shareworker_share_lag_records", &[("group", "backlog")])
            .is_some_and(|l| l > 0.0 && l <= 300.0 - 10.0)
            && done.load(Ordering::SeqCst) == 10
    })
    .await;
    let desired = sample(
        &text,
        "shareworker_desired_replicas",
        &[("group", "backlog")],
    )
    .expect("hint");
    assert!((1.0..=7.0).contains(&desired), "{desired}: {text}");
    gate.add_permits(1000);
    let text = wait_for(addr, "no lag once everything ran", |t| {
        sample(
            t,
            "shareworker_share_lag_records",
            &[("group", "backlog"), ("topic", "m.backlog")],
        ) == Some(0.0)
    })
    .await;
    assert_eq!(
        sample(
            &text,
            "shareworker_jobs_total",
            &[("handler", "backlog"), ("outcome", "accepted")]
        ),
        Some(300.0)
    );
    stop.shutdown();
    run.await.expect("join").expect("run");
}

/// The real `promtool check metrics` (Debian package `prometheus`, installed by
/// `scripts/prometheus.sh`) finds nothing to say about the exposition of a worker that has
/// done everything once: accepted, retried, dead-lettered, renewed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_wrong_with_the_metrics() {
    let Some(promtool) = shareworker_tests::prometheus::promtool() else {
        return;
    };
    let broker = broker();
    let queue = Queue::new(broker.clone());
    for i in 0..5 {
        queue.enqueue("p.jobs", &i).await.expect("enqueue");
    }
    let worker = Worker::builder()
        .broker(broker)
        .config(config())
        .code_config_only()
        .without_signal_handling()
        .job(JobDefinition::new(
            "mixed",
            "p.jobs",
            |job: Job<u32>| async move {
                match *job.payload() {
                    0 => Err(JobError::permanent("bad input")),
                    1 if job.attempt() == 1 => {
                        Err(JobError::retry_after(Duration::from_millis(10), "again"))
                    }
                    _ => Ok(()),
                }
            },
        ))
        .build()
        .await
        .expect("build");
    let addr = worker.http_address().expect("on");
    let stop = worker.shutdown_handle();
    let run = tokio::spawn(worker.run());
    let text = wait_for(addr, "4 accepted, 1 dead letter", |t| {
        sample(t, "shareworker_jobs_total", &[("outcome", "accepted")]) == Some(4.0)
            && sample(t, "shareworker_jobs_total", &[("outcome", "dead_lettered")]) == Some(1.0)
    })
    .await;
    let out = shareworker_tests::prometheus::check_metrics(&promtool, &text);
    assert!(
        out.is_empty(),
        "promtool check metrics said:\n{out}\non:\n{text}"
    );
    // And it does complain about a badly named metric, so silence above means something.
    let bad = "# HELP shareworker_bad_seconds_total x\n# TYPE shareworker_bad_seconds_total gauge\nshareworker_bad_seconds_total 1\n";
    let out = shareworker_tests::prometheus::check_metrics(&promtool, bad);
    assert!(!out.is_empty(), "promtool accepted a gauge named _total");
    stop.shutdown();
    run.await.expect("join").expect("run");
}
