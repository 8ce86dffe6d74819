//! Long-running measurements the project owns, run by hand (never in CI).
//!
//! `soak drain`: the embedded broker's memory before and after a drain. It enqueues `JOBS`
//! (default 1,000,000) small jobs, runs a no-op handler until every one is settled, stops the
//! worker and prints the process's resident memory at each step; `ROUNDS` (default 2) does it
//! again on the same broker, to tell memory the allocator keeps for reuse from memory that grows.
//! `KEEP=1` keeps settled records (`keep_settled_records`), to compare.
//!
//! `soak kafka`: a worker on a real broker (`KAFKA_BOOTSTRAP`, host:port) for `SOAK_SECS` seconds
//! while a producer in the same process enqueues `RATE` jobs a second; every `FAIL_EVERY`th job
//! (default 50: 2 %) fails on its first attempt and succeeds on the next. Every `SAMPLE_SECS` it
//! prints a `sample` line: resident memory and open file descriptors from `/proc/self`, and the
//! tokio runtime's alive tasks. At the end it waits for every produced job to be accepted or
//! dead-lettered (at most `DRAIN_SECS`), stops the worker and prints a `result` line. It exits
//! with 1 when a job is lost or resident memory after `WARMUP_SECS` varied by more than
//! `RSS_TOLERANCE_PCT` (default 10). `scripts/soak.sh` starts a broker and runs this.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shareworker::{
    Config, EmbeddedBroker, Job, JobDefinition, JobError, KafkaBroker, Queue, Worker,
    broker::{Broker, GroupConfig, OutgoingRecord, StartFrom},
    queue::Message,
    worker::Outcome,
};
use tokio::time::Instant;

type AnyError = Box<dyn std::error::Error + Send + Sync>;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, AnyError> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{name}={v}: not a valid value").into()),
        Err(_) => Ok(default),
    }
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() -> Result<(), AnyError> {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match mode.as_str() {
        "drain" => rt.block_on(drain()),
        "kafka" => {
            let ok = rt.block_on(kafka())?;
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        _ => Err("usage: soak drain | soak kafka (see the file's documentation)".into()),
    }
}

fn quiet_config(concurrency: u32) -> Config {
    let mut config = Config::default();
    config.http.enabled = false;
    config.concurrency = concurrency;
    config
}

async fn drain() -> Result<(), AnyError> {
    let rounds: u32 = env_or("ROUNDS", 2)?;
    let keep: u8 = env_or("KEEP", 0)?;
    let baseline = status_kib("VmRSS");
    let broker = EmbeddedBroker::builder()
        .start_from(StartFrom::Earliest)
        .keep_settled_records(keep == 1)
        .build()?;
    for round in 1..=rounds {
        drain_round(&broker, round, keep == 1, baseline).await?;
    }
    Ok(())
}

async fn drain_round(
    broker: &EmbeddedBroker,
    round: u32,
    keep: bool,
    baseline: u64,
) -> Result<(), AnyError> {
    let jobs: u64 = env_or("JOBS", 1_000_000)?;
    let started = Instant::now();
    let mut next = 0u64;
    while next < jobs {
        let n = (jobs - next).min(10_000);
        let batch: Vec<OutgoingRecord> = (next..next + n)
            .map(|i| OutgoingRecord::new(i.to_string()))
            .collect();
        broker.produce("drain", batch).await?;
        next += n;
    }
    let enqueued = status_kib("VmRSS");
    let def = JobDefinition::new("drain", "drain", |_job: Job<u64>| async move {
        Ok::<(), JobError>(())
    })
    .concurrency(256)
    .prefetch(256)
    .no_dead_letter();
    let worker = Worker::builder()
        .broker(broker.clone())
        .config(quiet_config(256))
        .code_config_only()
        .without_signal_handling()
        .job(def)
        .build()
        .await?;
    let stop = worker.shutdown_handle();
    let run = tokio::spawn(worker.run());
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let lag: u64 = broker.lag("drain").await?.iter().map(|t| t.lag).sum();
        if lag == 0 {
            break;
        }
    }
    stop.shutdown();
    let summary = run.await??;
    let drained = status_kib("VmRSS");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = status_kib("VmRSS");
    let offsets = broker.offsets("drain").await?;
    let kept: i64 = offsets.iter().map(|o| o.latest - o.earliest).sum();
    println!(
        "drain round={round} jobs={jobs} keep_settled={keep} accepted={} took_s={:.1} records_kept={kept} \
         rss_baseline_mib={:.1} rss_enqueued_mib={:.1} rss_drained_mib={:.1} rss_after_2s_mib={:.1} peak_mib={:.1}",
        summary.accepted,
        started.elapsed().as_secs_f64(),
        mib(baseline),
        mib(enqueued),
        mib(drained),
        mib(settled),
        mib(status_kib("VmHWM")),
    );
    Ok(())
}

/// What the soak has seen, in memory that does not grow with the run: counters, and only the
/// records in flight. (It kept every record it had seen in two sets, some 40 bytes a job that
/// grew in doubling steps and read as the worker's own growth.)
#[derive(Default)]
struct Tally {
    produced: AtomicU64,
    done: AtomicU64,
    flight: Mutex<Flight>,
    accepted: AtomicU64,
    dead_lettered: AtomicU64,
    retried: AtomicU64,
    other: AtomicU64,
}

#[derive(Default)]
struct Flight {
    /// Produced, not yet accepted or dead-lettered.
    pending: HashSet<(i32, i64)>,
    /// Accepted or dead-lettered before the producer heard its offset (the worker can be that
    /// quick); at the end, a record done twice or never produced.
    early: HashSet<(i32, i64)>,
}

impl Tally {
    fn produced_one(&self, key: (i32, i64)) {
        self.produced.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut f) = self.flight.lock()
            && !f.early.remove(&key)
        {
            f.pending.insert(key);
        }
    }

    fn done_one(&self, key: (i32, i64)) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut f) = self.flight.lock()
            && !f.pending.remove(&key)
        {
            f.early.insert(key);
        }
    }

    fn produced(&self) -> u64 {
        self.produced.load(Ordering::Relaxed)
    }

    fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Produced and never accepted or dead-lettered (so far).
    fn lost(&self) -> usize {
        self.flight.lock().map_or(usize::MAX, |f| f.pending.len())
    }

    /// Done and never produced, or done twice (once the producer has finished).
    fn unexplained(&self) -> usize {
        self.flight.lock().map_or(usize::MAX, |f| f.early.len())
    }
}

async fn kafka() -> Result<bool, AnyError> {
    let bootstrap: String = env_or("KAFKA_BOOTSTRAP", "127.0.0.1:25260".to_string())?;
    let secs: u64 = env_or("SOAK_SECS", 300)?;
    let rate: u64 = env_or("RATE", 200)?;
    let sample_secs: u64 = env_or("SAMPLE_SECS", 10)?;
    let warmup_secs: u64 = env_or("WARMUP_SECS", 60)?;
    let drain_secs: u64 = env_or("DRAIN_SECS", 180)?;
    let fail_every: u64 = env_or("FAIL_EVERY", 50)?;
    let tolerance: f64 = env_or("RSS_TOLERANCE_PCT", 10.0)?;
    let handle_ms: u64 = env_or("HANDLE_MS", 5)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let topic = format!("soak-{}-{stamp}", std::process::id());
    let group = format!("{topic}-g");

    let broker = KafkaBroker::connect(&format!("kafka://{bootstrap}")).await?;
    broker.create_topic(&topic, 3).await?;
    broker
        .configure_group(
            &group,
            &GroupConfig::default().start_from(StartFrom::Earliest),
        )
        .await?;
    let tally = Arc::new(Tally::default());
    let t = tally.clone();
    let def = JobDefinition::new("soak", &topic, move |job: Job<u64>| async move {
        tokio::time::sleep(Duration::from_millis(handle_ms)).await;
        if *job.payload() % fail_every == 7 && job.attempt() == 1 {
            return Err(JobError::retry_after(
                Duration::from_millis(500),
                "failing once on purpose",
            ));
        }
        Ok(())
    })
    .group(&group)
    .concurrency(64)
    .prefetch(64);
    let worker = Worker::builder()
        .broker(broker)
        .config(quiet_config(64))
        .code_config_only()
        .without_signal_handling()
        .on_event(move |e| {
            let key = (e.id.partition, e.id.offset);
            let done = match &e.outcome {
                Outcome::Accepted => {
                    t.accepted.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Outcome::DeadLettered | Outcome::DeadLetteredByBroker { .. } => {
                    t.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Outcome::Retrying { .. } => {
                    t.retried.fetch_add(1, Ordering::Relaxed);
                    false
                }
                Outcome::LockRenewed => false,
                _ => {
                    t.other.fetch_add(1, Ordering::Relaxed);
                    false
                }
            };
            if done {
                t.done_one(key);
            }
        })
        .job(def)
        .build()
        .await?;
    let queue = Queue::from_arc(worker.broker());
    let stop = worker.shutdown_handle();
    let run = tokio::spawn(worker.run());

    let began = Instant::now();
    let end = began + Duration::from_secs(secs);
    // The producer: RATE jobs a second, in ten batches a second.
    let p_tally = tally.clone();
    let p_topic = topic.clone();
    let producer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut next = 0u64;
        let mut errors = 0u64;
        let mut owed = 0.0f64;
        while Instant::now() < end {
            tick.tick().await;
            owed += rate as f64 / 10.0;
            let n = owed.floor() as u64;
            owed -= n as f64;
            let batch: Vec<Message> = (next..next + n)
                .map(|i| Message::bytes(i.to_string()))
                .collect();
            match queue.send_batch(&p_topic, batch).await {
                Ok(produced) => {
                    next += n;
                    for r in &produced {
                        p_tally.produced_one((r.partition, r.offset));
                    }
                }
                Err(e) => {
                    errors += 1;
                    eprintln!("produce failed (not counted as produced): {e}");
                }
            }
        }
        errors
    });

    let mut samples: Vec<(u64, u64)> = Vec::new();
    println!("soak topic={topic} group={group} secs={secs} rate={rate}/s fail_every={fail_every}");
    let metrics = tokio::runtime::Handle::current().metrics();
    let mut next_sample = began;
    let drain_end = end + Duration::from_secs(drain_secs);
    loop {
        let now = Instant::now();
        if now >= next_sample {
            next_sample += Duration::from_secs(sample_secs);
            let t = now.duration_since(began).as_secs();
            let rss = status_kib("VmRSS");
            samples.push((t, rss));
            println!(
                "sample t_s={t} rss_kib={rss} fds={} tokio_tasks={} produced={} done={} retried={} other={}",
                open_fds(),
                metrics.num_alive_tasks(),
                tally.produced(),
                tally.done(),
                tally.retried.load(Ordering::Relaxed),
                tally.other.load(Ordering::Relaxed),
            );
        }
        if now >= end && producer.is_finished() && tally.lost() == 0 {
            break;
        }
        if now >= drain_end {
            println!("drain: gave up after {drain_secs}s");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let produce_errors = producer.await?;
    stop.shutdown();
    let summary = run.await??;
    let after: Vec<u64> = samples
        .iter()
        .filter(|(t, _)| *t >= warmup_secs && *t <= secs)
        .map(|(_, r)| *r)
        .collect();
    let (lo, hi) = (
        after.iter().copied().min().unwrap_or(0),
        after.iter().copied().max().unwrap_or(0),
    );
    let growth = if lo > 0 {
        (hi as f64 - lo as f64) * 100.0 / lo as f64
    } else {
        f64::NAN
    };
    let lost = tally.lost();
    println!(
        "result produced={} accepted={} dead_lettered={} retried={} lost={lost} unexplained={} produce_errors={produce_errors} \
         summary_accepted={} rss_after_warmup_min_mib={:.1} max_mib={:.1} spread_pct={growth:.1} samples_after_warmup={}",
        tally.produced(),
        tally.accepted.load(Ordering::Relaxed),
        tally.dead_lettered.load(Ordering::Relaxed),
        tally.retried.load(Ordering::Relaxed),
        tally.unexplained(),
        summary.accepted,
        mib(lo),
        mib(hi),
        after.len(),
    );
    // A record done twice fails the run; one done but never counted as produced is explained
    // by a produce that failed on the way back after the broker had written it.
    let explained = tally.unexplained() == 0 || produce_errors > 0;
    Ok(lost == 0 && explained && after.len() >= 2 && growth <= tolerance)
}
