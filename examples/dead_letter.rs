//! A failing handler going through backoff to the dead-letter topic.
//!
//! Run it with `cargo run --example dead_letter`. The payment gateway is down: every attempt to
//! charge a card fails with a retryable error. The worker retries after 200 ms, 400 ms and 800 ms
//! (exponential backoff, no jitter), and after the 4th attempt writes the record to
//! `payments.dlq` with headers saying where it came from and why. A card number that can never
//! work fails permanently and goes there at once. The example then reads the dead-letter topic
//! back and prints every record with its headers.
//!
//! It exits with status 1 if the attempts, delays or dead letters are not as described.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shareworker::{EmbeddedBroker, Job, JobError, Queue, Worker, queue::Message, worker::Outcome};
use shareworker_examples::Checks;
use tokio::sync::Notify;
use tokio::time::Instant;

/// When the example started, for the timestamps.
static START: OnceLock<Instant> = OnceLock::new();
/// When each attempt started, by payment id.
static ATTEMPTS: Mutex<BTreeMap<u32, Vec<Duration>>> = Mutex::new(BTreeMap::new());

fn since_start() -> Duration {
    START.get_or_init(Instant::now).elapsed()
}

#[derive(Serialize, Deserialize, Debug)]
struct Payment {
    id: u32,
    card: String,
    cents: u64,
}

/// Charges a card; the gateway is down for the whole example.
#[shareworker::job(
    topic = "payments",
    max_attempts = 4,
    backoff(initial = "200ms", max = "5s", multiplier = 2.0, jitter = 0.0)
)]
async fn charge(job: Job<Payment>) -> Result<(), JobError> {
    let p = job.payload();
    let at = since_start();
    ATTEMPTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(p.id)
        .or_default()
        .push(at);
    println!(
        "{:6.2}s  charge      payment {}: attempt {} of {}",
        at.as_secs_f64(),
        p.id,
        job.attempt(),
        job.max_attempts()
    );
    if !p.card.chars().all(|c| c.is_ascii_digit()) {
        // No retry can fix this one: straight to the dead-letter topic.
        return Err(JobError::permanent(format!(
            "card number {:?} is not a number",
            p.card
        )));
    }
    Err(JobError::retry("payment gateway: 503 Service Unavailable"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("RUST_LOG").is_some() {
        shareworker::init_tracing();
    }
    START.get_or_init(Instant::now);

    let broker = EmbeddedBroker::builder()
        .start_from(shareworker::broker::StartFrom::Earliest)
        .build()?;
    // The backoff delays the worker announced, by payment offset.
    let delays: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let announced = delays.clone();
    let dead = Arc::new(AtomicUsize::new(0));
    let all_dead = Arc::new(Notify::new());
    let (d, notify) = (dead.clone(), all_dead.clone());
    let worker = Worker::builder()
        .broker(broker.clone())
        .registered_jobs()
        .on_event(move |e| {
            let t = since_start().as_secs_f64();
            match &e.outcome {
                Outcome::Retrying { delay, error } => {
                    announced
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(*delay);
                    println!(
                        "{t:6.2}s  retry       {} attempt {} failed: {error}; next try in {delay:?}",
                        e.id, e.attempt
                    );
                }
                Outcome::DeadLettering { error } => println!(
                    "{t:6.2}s  giving up   {} after attempt {}: {error}",
                    e.id, e.attempt
                ),
                Outcome::DeadLettered => {
                    println!("{t:6.2}s  dead letter {} written to payments.dlq", e.id);
                    if d.fetch_add(1, Ordering::SeqCst) + 1 == 2 {
                        notify.notify_one();
                    }
                }
                other => println!("{t:6.2}s  {other:?} {}", e.id),
            }
        })
        .build()
        .await?;

    let queue = Queue::new(broker.clone());
    let down = Payment {
        id: 1,
        card: "4111111111111111".into(),
        cents: 4200,
    };
    let invalid = Payment {
        id: 2,
        card: "not-a-card".into(),
        cents: 990,
    };
    // A key and a header of our own, to see them kept in the dead letter.
    let mut offsets = Vec::new();
    for p in [&down, &invalid] {
        let at = queue
            .send(
                "payments",
                Message::json(p)?
                    .key(format!("order-{}", p.id))
                    .header("trace-id", format!("trace-{}", p.id)),
            )
            .await?;
        offsets.push(at.offset.to_string());
    }
    let (down_at, invalid_at) = (offsets[0].as_str(), offsets[1].as_str());
    println!("enqueued 2 payments; the gateway is down\n");

    let shutdown = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());
    if tokio::time::timeout(Duration::from_secs(30), all_dead.notified())
        .await
        .is_err()
    {
        println!("the dead letters were not written within 30 s");
    }
    shutdown.shutdown();
    let summary = running.await??;

    // Read the dead-letter topic back, headers and all.
    let letters = broker.read_topic("payments.dlq").unwrap_or_default();
    println!("\npayments.dlq holds {} records:", letters.len());
    for r in &letters {
        println!(
            "  {} key {:?}: {}",
            r.id,
            String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()),
            String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
        );
        for h in r.headers.iter() {
            println!(
                "      {} = {}",
                h.key,
                String::from_utf8_lossy(h.value.as_deref().unwrap_or_default())
            );
        }
    }

    let mut checks = Checks::new();
    let attempts = ATTEMPTS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let tries = |id| attempts.get(&id).map_or(0, Vec::len);
    checks.check(
        tries(1) == 4,
        format!("payment 1 was tried 4 times (got {})", tries(1)),
    );
    checks.check(
        tries(2) == 1,
        format!(
            "payment 2 (permanent failure) was tried once (got {})",
            tries(2)
        ),
    );
    let delays = delays.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let expected = [200, 400, 800].map(Duration::from_millis);
    checks.check(
        delays == expected,
        format!("the delays between attempts doubled: {delays:?}"),
    );
    let starts = attempts.get(&1).cloned().unwrap_or_default();
    checks.check(
        starts
            .windows(2)
            .zip(expected)
            .all(|(w, delay)| w[1] - w[0] >= delay),
        "each retry came no sooner than its delay",
    );
    checks.check(
        summary.dead_lettered == 2 && letters.len() == 2,
        format!("2 dead letters in payments.dlq (got {})", letters.len()),
    );
    use shareworker::dead_letter::headers as dlq;
    // The dead letter of the record at `offset` in `payments`, and one of its headers.
    let letter = |offset: &str| {
        letters
            .iter()
            .find(|r| r.headers.get_str(dlq::OFFSET) == Some(offset))
    };
    let header = |offset: &str, k: &str| {
        letter(offset)
            .and_then(|r| r.headers.get_str(k))
            .unwrap_or("")
            .to_owned()
    };
    checks.check(
        header(invalid_at, dlq::ATTEMPTS) == "1"
            && header(invalid_at, dlq::ERROR).contains("not a number"),
        "payment 2's dead letter says 1 attempt and why",
    );
    checks.check(
        header(down_at, dlq::ATTEMPTS) == "4"
            && header(down_at, dlq::ERROR).contains("503")
            && header(down_at, dlq::TOPIC) == "payments"
            && header(down_at, dlq::PARTITION) == "0"
            && header(down_at, dlq::HANDLER) == "charge"
            && header(down_at, dlq::GROUP) == "charge"
            && !header(down_at, dlq::TIME).is_empty(),
        "payment 1's dead letter says where it came from, 4 attempts and the last error",
    );
    checks.check(
        letter(down_at).and_then(|r| r.key.as_deref()) == Some(b"order-1".as_slice())
            && header(down_at, "trace-id") == "trace-1",
        "the dead letter keeps the original key and headers",
    );
    checks.finish()?;
    Ok(())
}
