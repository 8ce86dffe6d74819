//! e2e on shareworker: `EmbeddedBroker` + `Queue::send_batch`, then a `Worker` with a no-op
//! handler until every record is accepted and the group's lag is 0.
//!
//! The handler counts itself done through its `State`, as a service's handler reaches its
//! pool (and as the apalis run counts in its handler); no event observer is installed, since
//! a worker's usual configuration has none.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shareworker::{
    EmbeddedBroker, Job, JobDefinition, JobError, Queue, State, Worker,
    broker::{Broker, Bytes, StartFrom},
    queue::Message,
};

use crate::{Completion, E2e};

const TOPIC: &str = "bench";
const HANDLER: &str = "noop";

#[derive(Clone, Copy, Debug)]
pub(crate) enum Payload {
    /// `Message::json(&n)`, decoded by a `Job<u64>` handler.
    Json,
    /// `Message::bytes(n.to_le_bytes())`, read by a `Job<Bytes>` handler (no decoding).
    Bytes,
}

async fn noop_json(job: Job<u64>, State(done): State<Arc<Completion>>) -> Result<(), JobError> {
    std::hint::black_box(job.payload());
    done.one();
    Ok(())
}

async fn noop_bytes(job: Job<Bytes>, State(done): State<Arc<Completion>>) -> Result<(), JobError> {
    std::hint::black_box(job.payload());
    done.one();
    Ok(())
}

pub(crate) fn broker() -> Result<EmbeddedBroker, String> {
    EmbeddedBroker::builder()
        // Jobs are enqueued before the group first reads, so it must start at the beginning.
        .start_from(StartFrom::Earliest)
        .build()
        .map_err(|e| e.to_string())
}

pub(crate) async fn e2e(
    jobs: u64,
    concurrency: u32,
    prefetch: Option<u32>,
    batch: usize,
    payload: Payload,
) -> Result<E2e, String> {
    let broker = broker()?;
    let queue = Queue::new(broker.clone());

    let t0 = Instant::now();
    let mut next = 0u64;
    while next < jobs {
        let end = (next + batch as u64).min(jobs);
        let messages: Vec<Message> = match payload {
            Payload::Json => (next..end)
                .map(|n| Message::json(&n).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?,
            Payload::Bytes => (next..end)
                .map(|n| Message::bytes(n.to_le_bytes().to_vec()))
                .collect(),
        };
        queue
            .send_batch(TOPIC, messages)
            .await
            .map_err(|e| e.to_string())?;
        next = end;
    }
    let enqueue = t0.elapsed();
    let rss_after_enqueue = crate::memory_kib().1;

    let t1 = Instant::now();
    let done = Completion::new(jobs);
    let mut config = crate::default_config();
    config.concurrency = config.concurrency.max(concurrency);
    let def = match payload {
        Payload::Json => JobDefinition::handler(HANDLER, TOPIC, noop_json),
        Payload::Bytes => JobDefinition::handler(HANDLER, TOPIC, noop_bytes),
    };
    let worker = Worker::builder()
        .broker(broker.clone())
        .code_config_only()
        .without_signal_handling()
        .config(config)
        .state(done.clone())
        .job(match prefetch {
            Some(p) => def.concurrency(concurrency).prefetch(p),
            None => def.concurrency(concurrency),
        })
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let stop = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());
    done.wait().await;
    // Handlers finish before the settle batch reaches the broker: wait for lag 0, so that every
    // job is acknowledged on the broker, not only finished.
    loop {
        let lag: u64 = broker
            .lag(HANDLER)
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(|t| t.lag)
            .sum();
        if lag == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let dispatch = t1.elapsed();
    stop.shutdown();
    let summary = running
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if summary.accepted != jobs || done.count() != jobs {
        return Err(format!(
            "expected {jobs} accepted jobs, the worker reports {summary:?}"
        ));
    }
    Ok(E2e {
        rss_after_enqueue,
        enqueue,
        dispatch,
        note: format!(
            "prefetch={} payload={payload:?} batch={batch}",
            prefetch.map_or("auto".to_owned(), |p| p.to_string())
        ),
    })
}
