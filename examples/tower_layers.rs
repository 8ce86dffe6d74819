//! Tower layers on a handler: a timeout per attempt and a rate limit over all jobs.
//!
//! Run it with `cargo run --example tower_layers`. A crawler's `fetch_page` handler gets two
//! layers from `tower`: `TimeoutLayer` (500 ms per attempt) and `RateLimitLayer` (5 attempts per
//! second, however many jobs run at once). One server hangs on the first request: that attempt is
//! cut off at 500 ms and retried after the backoff, and the retry succeeds. Twelve pages, eight
//! allowed at once, still start at most five per second.
//!
//! It exits with status 1 if the timed-out attempt was not retried or the rate limit did not hold.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shareworker::{EmbeddedBroker, Job, JobDefinition, JobError, Queue, Worker, worker::Outcome};
use shareworker_examples::Checks;
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::limit::RateLimitLayer;
use tower::timeout::TimeoutLayer;

/// How long one attempt may take.
const TIMEOUT: Duration = Duration::from_millis(500);
/// Attempts allowed per `PER`.
const RATE: u64 = 5;
const PER: Duration = Duration::from_secs(1);
const PAGES: usize = 12;

static START: OnceLock<Instant> = OnceLock::new();
/// Set if the hanging first attempt ever ran to its end (the timeout should drop it first).
static HUNG_ATTEMPT_FINISHED: AtomicBool = AtomicBool::new(false);

fn since_start() -> Duration {
    START.get_or_init(Instant::now).elapsed()
}

#[derive(Serialize, Deserialize, Debug)]
struct Page {
    url: String,
    /// The server hangs on the first request.
    hangs_once: bool,
}

/// Fetches a page; knows nothing about timeouts or rate limits.
async fn fetch(job: Job<Page>, starts: Arc<Mutex<Vec<Duration>>>) -> Result<(), JobError> {
    let at = since_start();
    starts.lock().unwrap_or_else(|p| p.into_inner()).push(at);
    let page = job.payload();
    println!(
        "{:6.2}s  fetch       {} (attempt {})",
        at.as_secs_f64(),
        page.url,
        job.attempt()
    );
    if page.hangs_once && job.attempt() == 1 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        HUNG_ATTEMPT_FINISHED.store(true, Ordering::SeqCst);
    } else {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("RUST_LOG").is_some() {
        shareworker::init_tracing();
    }
    START.get_or_init(Instant::now);

    let starts: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let log = starts.clone();
    let handler = JobDefinition::new("fetch_page", "pages", move |job| fetch(job, log.clone()))
        .concurrency(8)
        .backoff(Duration::from_millis(100), PER, 2.0, 0.0)
        // The first layer added is the innermost: the timeout applies to each attempt.
        .layer(TimeoutLayer::new(TIMEOUT))
        // Outside it, one rate limit shared by every job of the handler.
        .layer(RateLimitLayer::new(RATE, PER));

    let broker = EmbeddedBroker::builder()
        .start_from(shareworker::broker::StartFrom::Earliest)
        .build()?;
    let timed_out = Arc::new(Mutex::new(Vec::new()));
    let retries = timed_out.clone();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let done = accepted.clone();
    let all_done = Arc::new(Notify::new());
    let notify = all_done.clone();
    let worker = Worker::builder()
        .broker(broker.clone())
        .job(handler)
        .on_event(move |e| {
            let t = since_start().as_secs_f64();
            match &e.outcome {
                Outcome::Retrying { delay, error } => {
                    println!(
                        "{t:6.2}s  retry       {} attempt {} failed: {error}; next try in {delay:?}",
                        e.id, e.attempt
                    );
                    retries
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((e.id.offset, error.clone()));
                }
                Outcome::Accepted => {
                    let mut done = done.lock().unwrap_or_else(|p| p.into_inner());
                    done.push((e.id.offset, e.attempt));
                    if done.len() == PAGES {
                        notify.notify_one();
                    }
                }
                other => println!("{t:6.2}s  {other:?} {}", e.id),
            }
        })
        .build()
        .await?;

    let queue = Queue::new(broker);
    for i in 0..PAGES {
        let page = Page {
            url: format!("https://example.com/{i}"),
            hangs_once: i == 0,
        };
        queue.enqueue("pages", &page).await?;
    }
    println!(
        "enqueued {PAGES} pages; timeout {TIMEOUT:?} per attempt, at most {RATE} attempts per {PER:?}\n"
    );

    let shutdown = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());
    if tokio::time::timeout(Duration::from_secs(30), all_done.notified())
        .await
        .is_err()
    {
        println!("not every page was fetched within 30 s");
    }
    shutdown.shutdown();
    let summary = running.await??;

    let mut starts = starts.lock().unwrap_or_else(|p| p.into_inner()).clone();
    starts.sort();
    let first = starts.first().copied().unwrap_or_default();
    let mut per_second = Vec::new();
    for s in &starts {
        let second = (*s - first).as_secs() as usize;
        if per_second.len() <= second {
            per_second.resize(second + 1, 0);
        }
        per_second[second] += 1;
    }
    println!("\nattempts started in each second since the first: {per_second:?}");

    let mut checks = Checks::new();
    let timed_out = timed_out.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let accepted = accepted.lock().unwrap_or_else(|p| p.into_inner()).clone();
    checks.check(
        summary.accepted == PAGES as u64,
        format!("all {PAGES} pages fetched (got {})", summary.accepted),
    );
    checks.check(
        timed_out.len() == 1
            && timed_out
                .iter()
                .all(|(offset, e)| *offset == 0 && e.contains("timed out")),
        format!(
            "the hanging request (page 0) timed out once and nothing else failed: {timed_out:?}"
        ),
    );
    checks.check(
        accepted.contains(&(0, 2)) && !HUNG_ATTEMPT_FINISHED.load(Ordering::SeqCst),
        "its first attempt was dropped at the timeout and the retry succeeded",
    );
    // Tower's rate limit counts fixed windows of 1 s; allow 200 ms for scheduling.
    let window = PER - Duration::from_millis(200);
    let busiest = starts
        .iter()
        .enumerate()
        .map(|(i, s)| starts[i..].iter().take_while(|t| **t - *s < window).count())
        .max()
        .unwrap_or(0);
    checks.check(
        busiest as u64 <= RATE && starts.len() == PAGES + 1,
        format!(
            "the rate limit held: at most {RATE} of the {} attempts started within any {window:?} (at most {busiest})",
            starts.len()
        ),
    );
    checks.finish()?;
    Ok(())
}
