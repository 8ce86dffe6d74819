//! Benchmarks of shareworker on a real Kafka broker (see `../run-kafka.sh`).
//!
//! * `kafka-consume`: a worker with a no-op `Job<Bytes>` handler reads a pre-filled topic with a
//!   fresh share group (`share.auto.offset.reset=earliest`) until it has counted `--records`
//!   `Accepted` events. Time runs from `Worker::build` to the last accept.
//! * `kafka-hol`: the head-of-line workload of `hol` on a fresh Kafka topic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use shareworker::{
    Job, JobDefinition, JobError, KafkaBroker, Worker,
    broker::{Broker, Bytes, GroupConfig, StartFrom},
    worker::Outcome,
};

use crate::counting::Counting;
use crate::{Args, Completion, hol, memory_kib, thousands};

const DEFAULT_URL: &str = "kafka://127.0.0.1:29092";

async fn noop(job: Job<Bytes>) -> Result<(), JobError> {
    std::hint::black_box(job.payload());
    Ok(())
}

/// User + system CPU seconds of this process so far (from /proc/self/stat, 100 ticks/s).
pub(crate) fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / 100.0
}

async fn connect(url: &str) -> Result<KafkaBroker, String> {
    KafkaBroker::connect(url)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))
}

async fn earliest(broker: &impl Broker, group: &str) -> Result<(), String> {
    broker
        .configure_group(
            group,
            &GroupConfig::default().start_from(StartFrom::Earliest),
        )
        .await
        .map_err(|e| format!("configuring group `{group}`: {e}"))
}

pub(crate) async fn consume(args: &Args, header: bool) -> Result<(), String> {
    args.check(&[
        "--url",
        "--topic",
        "--group",
        "--records",
        "--concurrency",
        "--prefetch",
    ])?;
    let url = args.value("--url").unwrap_or(DEFAULT_URL);
    let topic = args.value("--topic").ok_or("--topic is required")?;
    let group = args.value("--group").ok_or("--group is required")?;
    let records: u64 = args.num("--records", 2_000_000)?;
    let concurrency: u32 = args.num("--concurrency", 256)?;
    let prefetch = args.prefetch()?;
    let prefetch_shown = prefetch.map_or("auto".to_owned(), |p| p.to_string());
    if concurrency == 0 || records == 0 {
        return Err("--concurrency and --records must be at least 1".into());
    }
    let kafka = connect(url).await?;
    earliest(&kafka, group).await?;
    let broker = Counting::new(kafka.clone());
    let stats = broker.stats.clone();

    let done = Completion::new(records);
    let counter = done.clone();
    let first_ns = Arc::new(AtomicU64::new(0));
    let first = first_ns.clone();
    let mut config = crate::default_config();
    config.concurrency = config.concurrency.max(concurrency);
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let worker = Worker::builder()
        .broker(broker)
        .code_config_only()
        .without_signal_handling()
        .config(config)
        .on_event(move |e| {
            if e.outcome == Outcome::Accepted {
                if first.load(Ordering::Relaxed) == 0 {
                    let _ = first.compare_exchange(
                        0,
                        t0.elapsed().as_nanos() as u64,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                counter.one();
            }
        })
        .job(
            // The handler is named after the group; its group is its name.
            {
                let def = JobDefinition::new(group, topic, noop)
                    .concurrency(concurrency)
                    .no_dead_letter();
                match prefetch {
                    Some(p) => def.prefetch(p),
                    None => def,
                }
            },
        )
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let stop = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());
    done.wait().await;
    let elapsed = t0.elapsed();
    let cpu = cpu_seconds() - cpu0;
    let (hwm, rss) = memory_kib();
    stop.shutdown();
    let summary = running
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if summary.accepted < records {
        return Err(format!(
            "expected {records} accepted jobs, the worker reports {summary:?}"
        ));
    }
    // After leaving, every acknowledgement has been sent: the group's lag should be 0.
    let lag: u64 = kafka
        .lag(group)
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|t| t.lag)
        .sum();
    let rate = records as f64 / elapsed.as_secs_f64();
    let first_s = first_ns.load(Ordering::Relaxed) as f64 / 1e9;
    let (acquires, per_acquire, settles, per_settle) = stats.numbers();
    eprintln!(
        "kafka-consume topic={topic} group={group} records={records} concurrency={concurrency} prefetch={prefetch_shown}\n  \
         {:.3} s to the last accept (first accept at {first_s:.3} s), {rate:.0} records/s \
         ({:.0}/s after the first accept); CPU {cpu:.2} s in that time ({:.2} cores); \
         peak RSS {:.1} MiB (at the end {:.1} MiB); accepted {} in all, lag {lag} after leaving\n  {}",
        elapsed.as_secs_f64(),
        (records - 1) as f64 / (elapsed.as_secs_f64() - first_s),
        cpu / elapsed.as_secs_f64(),
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0,
        summary.accepted,
        stats.summary(),
    );
    if header {
        println!(
            "| concurrency | prefetch | records | time (s) | records/s | CPU (s) | peak RSS (MiB) | acquire calls | records/acquire | settle calls | acks/settle |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    }
    println!(
        "| {concurrency} | {prefetch_shown} | {records} | {:.3} | {} | {cpu:.2} | {:.1} | {acquires} | {per_acquire:.1} | {settles} | {per_settle:.1} |",
        elapsed.as_secs_f64(),
        thousands(rate),
        hwm as f64 / 1024.0,
    );
    Ok(())
}

pub(crate) async fn hol(args: &Args, header: bool) -> Result<(), String> {
    let mut known = hol::OPTIONS.to_vec();
    known.extend(["--url", "--topic", "--group"]);
    args.check(&known)?;
    let url = args.value("--url").unwrap_or(DEFAULT_URL);
    let topic = args.value("--topic").ok_or("--topic is required")?;
    let group = args.value("--group").unwrap_or(topic);
    let w = hol::Workload::from_args(args)?;
    let kafka = connect(url).await?;
    earliest(&kafka, group).await?;
    let broker = Counting::new(kafka);
    let stats = broker.stats.clone();
    let r = hol::execute(
        Arc::new(broker),
        topic,
        group,
        &w,
        hol::Finish::LastAccept,
        header,
    )
    .await;
    let (hwm, _) = memory_kib();
    eprintln!(
        "  CPU {:.2} s, peak RSS {:.1} MiB\n  {}",
        cpu_seconds(),
        hwm as f64 / 1024.0,
        stats.summary()
    );
    r
}
