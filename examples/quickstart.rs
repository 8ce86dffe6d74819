//! Quickstart: one handler on the embedded broker, no setup.
//!
//! Run it with `cargo run --example quickstart`. It enqueues a mix of jobs (fast ones, slow ones
//! that outlive their lock so it gets renewed, flaky ones that fail twice then succeed, and one
//! that always fails), runs them concurrently, shows retries with growing delays and the dead
//! letter, then exits with a summary once everything is done (status 1 if any of that did not
//! happen).
//!
//! On Kafka, by configuration only: `SHAREWORKER_BROKER=kafka://127.0.0.1:9092 cargo run
//! --example quickstart`. Kafka's locks last 15 s at least, so there the slow tasks finish
//! without needing a renewal.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shareworker::broker::AckKind;
use shareworker::{
    Config, Job, JobError, Queue, Worker,
    broker::{Broker, GroupConfig, StartFrom},
    worker::Outcome,
};
use shareworker_examples::Checks;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How many tasks the example enqueues.
const TASKS: usize = 25;
/// How long a slow task runs.
const SLOW: Duration = Duration::from_secs(5);

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fast,
    Slow,
    Flaky,
    Broken,
}

#[derive(Serialize, Deserialize, Debug)]
struct Task {
    id: u32,
    kind: Kind,
}

/// The handler: everything else (fetching, concurrency, renewal, retries, dead letters) is the
/// runtime's job.
#[shareworker::job(
    topic = "tasks",
    concurrency = 8,
    max_attempts = 4,
    backoff(initial = "250ms", max = "4s", multiplier = 2.0, jitter = 0.0)
)]
async fn process(job: Job<Task>) -> Result<(), JobError> {
    let task = job.payload();
    match task.kind {
        Kind::Fast => tokio::time::sleep(Duration::from_millis(50)).await,
        // Longer than the 2 s lock this example sets: the runtime renews it every second.
        Kind::Slow => tokio::time::sleep(SLOW).await,
        Kind::Flaky if job.attempt() < 3 => {
            return Err(JobError::retry(format!(
                "upstream unavailable (attempt {})",
                job.attempt()
            )));
        }
        Kind::Flaky => {}
        Kind::Broken => return Err(JobError::retry("this task always fails")),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The runtime logs every retry and dead letter too; RUST_LOG=info shows them.
    if std::env::var_os("RUST_LOG").is_some() {
        shareworker::init_tracing();
    }

    let started = Instant::now();
    let names: Arc<Mutex<HashMap<i64, String>>> = Arc::default();
    let labels = names.clone();
    // Counts tasks that are done for good (accepted or dead-lettered).
    let finished = Arc::new(AtomicUsize::new(0));
    let all_done = Arc::new(Notify::new());
    let (fin, done) = (finished.clone(), all_done.clone());
    // Lock renewals per record, for the checks at the end.
    let renewals: Arc<Mutex<HashMap<i64, usize>>> = Arc::default();
    let renewed = renewals.clone();

    let mut config = Config::default();
    // A short lock so the slow tasks show renewal within seconds (Kafka's minimum is 15 s).
    config.embedded.lock_duration = Duration::from_secs(2);

    let worker = Worker::builder()
        .registered_jobs()
        .config(config)
        .on_event(move |e| {
            if matches!(e.outcome, Outcome::Accepted | Outcome::DeadLettered)
                && fin.fetch_add(1, Ordering::SeqCst) + 1 == TASKS
            {
                done.notify_one();
            }
            let names = labels.lock().unwrap_or_else(|p| p.into_inner());
            let name = names.get(&e.id.offset).map_or("?", String::as_str);
            let t = started.elapsed().as_secs_f64();
            match &e.outcome {
                Outcome::Accepted => println!(
                    "{t:6.2}s  done        {name} (attempt {}, took {:?})",
                    e.attempt,
                    e.took.unwrap_or_default()
                ),
                Outcome::Retrying { delay, error } => println!(
                    "{t:6.2}s  retry       {name} attempt {} failed: {error}; next try in {delay:?}",
                    e.attempt
                ),
                Outcome::DeadLettering { error } => println!(
                    "{t:6.2}s  giving up   {name} after attempt {}: {error}",
                    e.attempt
                ),
                Outcome::LockRenewed => {
                    *renewed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(e.id.offset)
                        .or_default() += 1;
                    println!("{t:6.2}s  renewed     {name}: still running, lock extended")
                }
                Outcome::DeadLettered => {
                    println!("{t:6.2}s  dead letter {name} written to tasks.dlq")
                }
                other => println!("{t:6.2}s  {other:?} {name}"),
            }
        })
        .build()
        .await?;

    // The same code runs on Kafka (SHAREWORKER_BROKER=kafka://127.0.0.1:9092): there the topic
    // must exist, and a new share group starts at the end of the topic unless told otherwise.
    let broker = worker.broker();
    broker.create_topic("tasks", 1).await?;
    broker
        .configure_group(
            "process",
            &GroupConfig::default().start_from(StartFrom::Earliest),
        )
        .await?;

    // Enqueue a mix of jobs on the worker's broker.
    let queue = Queue::from_arc(worker.broker());
    let mut kinds = vec![
        Kind::Slow,
        Kind::Slow,
        Kind::Flaky,
        Kind::Flaky,
        Kind::Broken,
    ];
    kinds.extend(std::iter::repeat_n(Kind::Fast, 20));
    let (mut slow, mut broken) = (Vec::new(), None);
    for (id, kind) in kinds.into_iter().enumerate() {
        let id = id as u32;
        let at = queue.enqueue("tasks", &Task { id, kind }).await?;
        match kind {
            Kind::Slow => slow.push(at.offset),
            Kind::Broken => broken = Some(at.offset),
            _ => {}
        }
        names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(at.offset, format!("task {id:>2} ({kind:?})"));
    }
    println!(
        "enqueued {TASKS} tasks on the {} broker; processing with concurrency 8\n",
        broker.kind()
    );

    let shutdown = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());

    // Wait until every task is done (accepted or dead-lettered), then stop gracefully.
    if tokio::time::timeout(Duration::from_secs(60), all_done.notified())
        .await
        .is_err()
    {
        println!("not every task was done after 60 s; stopping");
    }
    shutdown.shutdown();
    let summary = running.await??;

    let dead = dead_letters(&*broker, broken.unwrap_or(-1)).await?;
    println!(
        "\nsummary after {:.1}s: {} accepted, {} retries, {} dead-lettered",
        started.elapsed().as_secs_f64(),
        summary.accepted,
        summary.retried,
        summary.dead_lettered
    );
    let h = |k: &str| {
        dead.as_ref()
            .and_then(|d| d.headers.get_str(k))
            .unwrap_or("?")
            .to_owned()
    };
    if let Some(d) = &dead {
        println!(
            "dead letter: {} from tasks offset {} after {} attempts: {}",
            String::from_utf8_lossy(d.value.as_deref().unwrap_or_default()),
            h(shareworker::dead_letter::headers::OFFSET),
            h(shareworker::dead_letter::headers::ATTEMPTS),
            h(shareworker::dead_letter::headers::ERROR),
        );
    }

    // Exit with status 1 unless all of the above happened.
    let mut checks = Checks::new();
    checks.check(
        summary.accepted == 24,
        format!("24 tasks accepted (got {})", summary.accepted),
    );
    checks.check(
        summary.retried == 7,
        format!(
            "7 retries: 2 per flaky task, 3 for the broken one (got {})",
            summary.retried
        ),
    );
    checks.check(
        dead.is_some() && h(shareworker::dead_letter::headers::ATTEMPTS) == "4",
        "the broken task is in tasks.dlq after 4 attempts",
    );
    let lock = broker.group_limits("process").await?.lock_duration;
    if lock < SLOW {
        let renewals = renewals.lock().unwrap_or_else(|p| p.into_inner());
        checks.check(
            slow.iter()
                .all(|o| renewals.get(o).is_some_and(|n| *n >= 2)),
            format!("each slow task's {lock:?} lock was renewed while it ran for {SLOW:?}"),
        );
    } else {
        println!("  (the lock lasts {lock:?} here: the {SLOW:?} tasks needed no renewal)");
    }
    checks.finish()?;
    Ok(())
}

/// Reads the dead letter of the record at `offset` in `tasks` through the broker seam, as any
/// consumer would; accepts what it reads, so the next run sees only its own.
async fn dead_letters(
    broker: &dyn Broker,
    offset: i64,
) -> Result<Option<shareworker::broker::Delivery>, shareworker::Error> {
    let group = "quickstart-dlq-reader";
    broker
        .configure_group(
            group,
            &GroupConfig::default().start_from(StartFrom::Earliest),
        )
        .await?;
    let member = broker.join(group, &["tasks.dlq".to_string()]).await?;
    let offset = offset.to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut found = None;
    while found.is_none() && Instant::now() < deadline {
        // Returns as soon as something arrives (at once on the embedded broker).
        let records = member.acquire(100, Duration::from_secs(5)).await?;
        let acks: Vec<_> = records
            .iter()
            .map(|r| (r.id.clone(), AckKind::Accept))
            .collect();
        member.settle(&acks).await?;
        found = records.into_iter().find(|r| {
            r.headers.get_str(shareworker::dead_letter::headers::OFFSET) == Some(offset.as_str())
        });
    }
    member.leave().await?;
    Ok(found)
}
