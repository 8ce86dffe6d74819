//! A long-running job kept alive by lock renewal.
//!
//! Run it with `cargo run --example long_task`. The embedded broker here locks an acquired record
//! for 2 s; the job runs for 5 s. The worker renews the lock every second while the handler runs,
//! so the record is never handed out again: a second member of the same share group keeps asking
//! for records the whole time and gets none. Without renewal the lock would expire after 2 s and
//! that member would receive the record as its second delivery.
//!
//! It exits with status 1 if the lock was not renewed or the record was delivered twice.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shareworker::broker::AckKind;
use shareworker::{EmbeddedBroker, Job, JobError, Queue, Worker, worker::Outcome};
use shareworker_examples::Checks;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The embedded broker's acquisition lock.
const LOCK: Duration = Duration::from_secs(2);
/// How long the job runs.
const WORK: Duration = Duration::from_secs(5);

/// When the example started, for the timestamps.
static START: OnceLock<Instant> = OnceLock::new();
/// Handler calls (deliveries) so far.
static CALLS: AtomicU32 = AtomicU32::new(0);
/// The attempt number of the last call.
static ATTEMPT: AtomicU32 = AtomicU32::new(0);
/// Signalled when the handler starts.
static STARTED: Notify = Notify::const_new();

fn t() -> f64 {
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

#[derive(Serialize, Deserialize, Debug)]
struct Render {
    video: String,
}

/// Renders for 5 s, reporting progress every second. Nothing in it knows about locks.
#[shareworker::job(topic = "renders", concurrency = 1)]
async fn render(job: Job<Render>) -> Result<(), JobError> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    ATTEMPT.store(u32::from(job.attempt()), Ordering::SeqCst);
    STARTED.notify_one();
    let video = &job.payload().video;
    println!(
        "{:6.2}s  render      {video}: started (attempt {})",
        t(),
        job.attempt()
    );
    let steps = WORK.as_secs();
    for step in 1..=steps {
        tokio::time::sleep(Duration::from_secs(1)).await;
        println!("{:6.2}s  render      {video}: {step}/{steps} s done", t());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("RUST_LOG").is_some() {
        shareworker::init_tracing();
    }
    START.get_or_init(Instant::now);

    // Kafka's shortest lock is 15 s; the embedded broker takes any, so the example is quick.
    let broker = EmbeddedBroker::builder()
        .lock_duration(LOCK)
        .start_from(shareworker::broker::StartFrom::Earliest)
        .build()?;
    let renewals = Arc::new(AtomicUsize::new(0));
    let renewed = renewals.clone();
    let done = Arc::new(Notify::new());
    let finished = done.clone();
    let worker = Worker::builder()
        .broker(broker.clone())
        .registered_jobs()
        .on_event(move |e| match &e.outcome {
            Outcome::LockRenewed => {
                renewed.fetch_add(1, Ordering::SeqCst);
                println!(
                    "{:6.2}s  renewed     lock on {} for another {LOCK:?}",
                    t(),
                    e.id
                );
            }
            Outcome::Accepted => {
                println!(
                    "{:6.2}s  done        {} accepted on attempt {}",
                    t(),
                    e.id,
                    e.attempt
                );
                finished.notify_one();
            }
            other => println!("{:6.2}s  {other:?} {}", t(), e.id),
        })
        .build()
        .await?;

    Queue::new(broker.clone())
        .enqueue(
            "renders",
            &Render {
                video: "intro.mp4".into(),
            },
        )
        .await?;
    println!("enqueued one 5 s render; the broker locks a record for {LOCK:?}\n");

    let shutdown = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());
    STARTED.notified().await;

    // Another member of the same share group, asking for records while the job runs: it gets
    // the record only if its lock expires.
    let other = {
        use shareworker::broker::Broker;
        broker.join("render", &["renders".to_string()]).await?
    };
    let mut stolen = 0;
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            tokio::select! {
                _ = done.notified() => break,
                got = other.acquire(10, Duration::from_millis(500)) => {
                    let got = got?;
                    for r in &got {
                        println!("{:6.2}s  other member got {} (delivery {})", t(), r.id, r.delivery_count);
                    }
                    stolen += got.len();
                    let back: Vec<_> = got.iter().map(|r| (r.id.clone(), AckKind::Release)).collect();
                    other.settle(&back).await?;
                }
            }
        }
        Ok::<_, shareworker::Error>(())
    })
    .await;
    other.leave().await?;
    shutdown.shutdown();
    let summary = running.await??;
    if waited.is_err() {
        println!("the job did not finish within 30 s");
    }

    let mut checks = Checks::new();
    let renewals = renewals.load(Ordering::SeqCst);
    checks.check(
        renewals >= 2,
        format!("the {LOCK:?} lock was renewed while the {WORK:?} job ran ({renewals} renewals)"),
    );
    checks.check(
        summary.accepted == 1 && ATTEMPT.load(Ordering::SeqCst) == 1,
        "the job was accepted on its first attempt",
    );
    checks.check(
        CALLS.load(Ordering::SeqCst) == 1 && summary.retried == 0,
        "the handler ran once: no retry, no redelivery",
    );
    checks.check(
        stolen == 0,
        format!("the other member of the group never got the record ({stolen} records)"),
    );
    checks.finish()?;
    Ok(())
}
