//! Several handlers in one worker, each with its own topic, share group and concurrency.
//!
//! Run it with `cargo run --example several_handlers`. Three `#[job]` handlers run in one
//! process: `send_email` (topic `emails`, its own group, 2 at a time), and `make_thumbnail`
//! (topic `images`, 4 at a time) and `transcode` (topic `videos`, 1 at a time), which share the
//! group `media`: one group member fetches for both. Each handler prints how many of its jobs
//! run at once; each stays within its own limit while the others keep going.
//!
//! Concurrency can be changed without recompiling, e.g.
//! `SHAREWORKER_HANDLERS__SEND_EMAIL__CONCURRENCY=1 cargo run --example several_handlers`.
//! It exits with status 1 if a handler ran more jobs at once than its limit, never reached it,
//! or did not finish its jobs.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use shareworker::{EmbeddedBroker, Job, JobError, Queue, Worker, worker::Outcome};
use shareworker_examples::Checks;
use tokio::sync::Notify;
use tokio::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();
static ALL_DONE: Notify = Notify::const_new();

/// Jobs running now and the most at once, for one handler.
struct Gauge {
    running: AtomicU32,
    peak: AtomicU32,
    done: AtomicU32,
}

impl Gauge {
    const fn new() -> Self {
        Self {
            running: AtomicU32::new(0),
            peak: AtomicU32::new(0),
            done: AtomicU32::new(0),
        }
    }

    /// Runs one job of `handler` for `took`, printing how many of its jobs run at once.
    async fn run(&self, handler: &str, item: &str, took: Duration) {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
        println!("{t:6.2}s  {handler:<14} {item:<12} start ({now} running)");
        tokio::time::sleep(took).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.done.fetch_add(1, Ordering::SeqCst);
    }
}

static EMAILS: Gauge = Gauge::new();
static THUMBNAILS: Gauge = Gauge::new();
static VIDEOS: Gauge = Gauge::new();

#[shareworker::job(topic = "emails", concurrency = 2)]
async fn send_email(job: Job<String>) -> Result<(), JobError> {
    EMAILS
        .run("send_email", job.payload(), Duration::from_millis(300))
        .await;
    Ok(())
}

#[shareworker::job(topic = "images", group = "media", concurrency = 4)]
async fn make_thumbnail(job: Job<String>) -> Result<(), JobError> {
    THUMBNAILS
        .run("make_thumbnail", job.payload(), Duration::from_millis(200))
        .await;
    Ok(())
}

#[shareworker::job(topic = "videos", group = "media", concurrency = 1)]
async fn transcode(job: Job<String>) -> Result<(), JobError> {
    VIDEOS
        .run("transcode", job.payload(), Duration::from_millis(500))
        .await;
    Ok(())
}

/// Jobs per handler: (handler, topic, how many).
const JOBS: [(&str, &str, u32); 3] = [
    ("send_email", "emails", 8),
    ("make_thumbnail", "images", 12),
    ("transcode", "videos", 3),
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("RUST_LOG").is_some() {
        shareworker::init_tracing();
    }
    START.get_or_init(Instant::now);
    let total: u32 = JOBS.iter().map(|j| j.2).sum();

    let broker = EmbeddedBroker::builder()
        .start_from(shareworker::broker::StartFrom::Earliest)
        .build()?;
    let accepted = std::sync::Arc::new(AtomicU32::new(0));
    let counted = accepted.clone();
    let worker = Worker::builder()
        .broker(broker.clone())
        .registered_jobs()
        .on_event(move |e| {
            if e.outcome == Outcome::Accepted && counted.fetch_add(1, Ordering::SeqCst) + 1 == total
            {
                ALL_DONE.notify_one();
            }
        })
        .build()
        .await?;

    // The configuration in force: code attributes, then shareworker.toml and SHAREWORKER_*.
    let limits: Vec<(&str, u32)> = JOBS
        .iter()
        .map(|(name, _, _)| {
            let Some(h) = worker.config().handlers.get(*name) else {
                return (*name, 0);
            };
            println!(
                "{name:<14} reads {:<6} in group {:<10} concurrency {}",
                h.topic, h.group, h.concurrency
            );
            (*name, h.concurrency)
        })
        .collect();

    let queue = Queue::new(broker);
    for (name, topic, n) in JOBS {
        for i in 1..=n {
            queue
                .send(
                    topic,
                    shareworker::queue::Message::text(format!("{topic} {i}")),
                )
                .await?;
        }
        println!("enqueued {n} jobs for {name}");
    }
    println!();

    let shutdown = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());
    if tokio::time::timeout(Duration::from_secs(30), ALL_DONE.notified())
        .await
        .is_err()
    {
        println!("not every job was done within 30 s");
    }
    shutdown.shutdown();
    let summary = running.await??;

    let mut checks = Checks::new();
    checks.check(
        summary.accepted == u64::from(total),
        format!("all {total} jobs done (got {})", summary.accepted),
    );
    for ((name, limit), gauge) in limits.into_iter().zip([&EMAILS, &THUMBNAILS, &VIDEOS]) {
        let peak = gauge.peak.load(Ordering::SeqCst);
        let done = gauge.done.load(Ordering::SeqCst);
        checks.check(
            peak == limit,
            format!("{name} ran at most {limit} at once, and that many ({peak}; {done} done)"),
        );
    }
    checks.finish()?;
    Ok(())
}
