//! End to end with a real Prometheus server (Debian package `prometheus`): it scrapes a worker
//! running under load on the embedded broker, and the KEDA query over its HTTP API returns the
//! replica hint the worker computed.

use std::time::Duration;

use shareworker::{
    Config, EmbeddedBroker, Job, JobDefinition, JobError, Queue, Worker, broker::StartFrom,
};
use shareworker_tests::http::{request, sample};
use shareworker_tests::prometheus::{Prometheus, prometheus};

/// The query of the KEDA ScaledObject in the docs and the worker template.
const KEDA_QUERY: &str = r#"max(shareworker_desired_replicas{group="resize"})"#;

async fn worker_hint(addr: std::net::SocketAddr) -> f64 {
    let (status, text) = request(addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    sample(
        &text,
        "shareworker_desired_replicas",
        &[("group", "resize")],
    )
    .expect("the hint is exported")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_the_replica_hint_the_worker_computed() {
    let Some(binary) = prometheus() else {
        return;
    };
    let broker = EmbeddedBroker::builder()
        .start_from(StartFrom::Earliest)
        .default_partitions(4)
        .build()
        .expect("broker");
    let mut config = Config::default();
    config.http.address = "127.0.0.1:0".into();
    // Recompute every 3 s; plan for 20 % use of each replica, so 100 jobs/s at 50 ms on 8
    // slots asks for several replicas although one keeps up.
    config.autoscale.refresh = Duration::from_secs(3);
    config.autoscale.target_utilization = 0.2;
    let worker = Worker::builder()
        .broker(broker.clone())
        .config(config)
        .code_config_only()
        .without_signal_handling()
        .job(
            JobDefinition::new("resize", "images", |_: Job<u32>| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<(), JobError>(())
            })
            .concurrency(8),
        )
        .build()
        .await
        .expect("build");
    let addr = worker.http_address().expect("on");
    let stop = worker.shutdown_handle();
    let run = tokio::spawn(worker.run());
    // Load: 100 jobs a second, until the test ends.
    let queue = Queue::new(broker);
    let load = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for i in 0u32.. {
            tick.tick().await;
            if queue.enqueue("images", &i).await.is_err() {
                return;
            }
        }
    });
    let prom = Prometheus::start(&binary, addr, Duration::from_millis(500)).await;

    // Wait for two scrapes that carry the hint.
    let mut scrapes = 0.0;
    for _ in 0..120 {
        let r = prom
            .query(r#"count_over_time(shareworker_desired_replicas{group="resize"}[5m])"#)
            .await;
        scrapes = r
            .first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if scrapes >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        scrapes >= 2.0,
        "fewer than two scrapes in 30 s; targets {:?}; log:\n{}",
        prom.target_health().await,
        prom.log()
    );
    assert_eq!(prom.target_health().await, ["up"]);

    // The hint changes only at a refresh (every 3 s) and Prometheus scrapes every 0.5 s: read
    // the worker, let two scrapes pass, ask Prometheus, read the worker again. When the worker
    // did not change its mind meanwhile, Prometheus must say the same.
    let mut compared = None;
    for _ in 0..10 {
        // Let the first refreshes see the load (the arrival rate needs two readings).
        tokio::time::sleep(Duration::from_secs(4)).await;
        let before = worker_hint(addr).await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let r = prom.query(KEDA_QUERY).await;
        let after = worker_hint(addr).await;
        assert_eq!(r.len(), 1, "one series from the KEDA query: {r:?}");
        let seen: f64 = r[0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .expect("a number");
        if before == after {
            compared = Some((before, seen));
            break;
        }
    }
    let (worker, seen) = compared.expect("the hint kept changing for 10 tries");
    assert_eq!(seen, worker, "Prometheus and the worker disagree");
    // 100/s x 0.05 s = 5 handlers busy; 8 slots at 20 % = 1.6 per replica: 4 replicas (3 when
    // the measured rate dips below 96/s). Generous: anything from 2 to 6.
    assert!(
        (2.0..=6.0).contains(&worker),
        "hint {worker} under 100 jobs/s at 50 ms"
    );

    load.abort();
    stop.shutdown();
    run.await.expect("join").expect("run");
}
