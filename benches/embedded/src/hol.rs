//! Head-of-line workload in real time, on the embedded broker (`hol`) or on Kafka (`kafka-hol`).
//!
//! Handler times are drawn up front with a fixed seed: a lognormal with mean `mean_ms`
//! (`mu = ln(mean) - sigma^2 / 2`), except `slow_frac` of the jobs, chosen at random, which take
//! `slow_ms`. Each job's payload is its time in microseconds; the handler sleeps that long.
//! With `concurrency` slots, no scheduler can finish more than `concurrency / mean time` jobs
//! per second (Little's law); the ratio of the measured rate to that bound shows how much
//! capacity slow jobs at the head of a partition waste.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shareworker::{
    Job, JobDefinition, JobError, Queue, Worker,
    broker::{Broker, GroupConfig},
    queue::Message,
    worker::Outcome,
};

use crate::{Args, Completion, memory_kib, shareworker_impl, thousands};

const TOPIC: &str = "hol";
const HANDLER: &str = "hol";

/// splitmix64: small, seedable, good enough to draw benchmark inputs.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn f64(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.f64(), self.f64());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

async fn sleepy(job: Job<u64>) -> Result<(), JobError> {
    tokio::time::sleep(Duration::from_micros(*job.payload())).await;
    Ok(())
}

/// The options of the workload, shared by `hol` and `kafka-hol`.
pub(crate) const OPTIONS: &[&str] = &[
    "--jobs",
    "--partitions",
    "--concurrency",
    "--mean-ms",
    "--sigma",
    "--slow-frac",
    "--slow-ms",
    "--seed",
    "--prefetch",
    "--assignment-interval-ms",
];

/// The workload's parameters and its handler times, drawn up front.
pub(crate) struct Workload {
    pub(crate) jobs: usize,
    pub(crate) partitions: i32,
    pub(crate) concurrency: u32,
    /// `None`: the automatic prefetch.
    pub(crate) prefetch: Option<u32>,
    /// The group's `share.assignment.interval.ms`, set by the worker at start (its
    /// `groups.<group>.assignment_interval`); `None` leaves the broker's.
    assignment_interval: Option<Duration>,
    mean_ms: f64,
    sigma: f64,
    mu: f64,
    slow_ms: f64,
    slow: usize,
    seed: u64,
    times_us: Vec<u64>,
    /// The mean drawn handler time, seconds.
    mean_s: f64,
    /// Little's bound, jobs/s.
    little: f64,
}

impl Workload {
    pub(crate) fn from_args(args: &Args) -> Result<Self, String> {
        let jobs: usize = args.num("--jobs", 20_000)?;
        let partitions: i32 = args.num("--partitions", 4)?;
        let concurrency: u32 = args.num("--concurrency", 200)?;
        let mean_ms: f64 = args.num("--mean-ms", 50.0)?;
        let sigma: f64 = args.num("--sigma", 0.5)?;
        let slow_frac: f64 = args.num("--slow-frac", 0.05)?;
        let slow_ms: f64 = args.num("--slow-ms", 2000.0)?;
        let seed: u64 = args.num("--seed", 42)?;
        let prefetch = args.prefetch()?;
        let assignment_interval = match args.value("--assignment-interval-ms") {
            Some(v) => Some(Duration::from_millis(v.parse().map_err(|_| {
                format!("--assignment-interval-ms: `{v}` is not a number of milliseconds")
            })?)),
            None => None,
        };
        if jobs == 0 || concurrency == 0 || partitions < 1 || !(0.0..=1.0).contains(&slow_frac) {
            return Err(
                "--jobs, --concurrency and --partitions must be at least 1, --slow-frac in 0..=1"
                    .into(),
            );
        }

        // Draw every handler time up front.
        let mut rng = Rng(seed);
        let mu = mean_ms.ln() - sigma * sigma / 2.0;
        let mut times_us: Vec<u64> = (0..jobs)
            .map(|_| ((mu + sigma * rng.normal()).exp() * 1000.0).round() as u64)
            .collect();
        // Exactly round(jobs * slow_frac) slow jobs, at random positions (partial Fisher-Yates).
        let slow = ((jobs as f64) * slow_frac).round() as usize;
        let mut idx: Vec<usize> = (0..jobs).collect();
        for i in 0..slow {
            let j = i + rng.below(jobs - i);
            idx.swap(i, j);
            times_us[idx[i]] = (slow_ms * 1000.0).round() as u64;
        }
        let mean_s = times_us.iter().sum::<u64>() as f64 / jobs as f64 / 1e6;
        let little = f64::from(concurrency) / mean_s;
        Ok(Self {
            jobs,
            partitions,
            concurrency,
            prefetch,
            assignment_interval,
            mean_ms,
            sigma,
            mu,
            slow_ms,
            slow,
            seed,
            times_us,
            mean_s,
            little,
        })
    }
}

/// When a run counts as finished.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// When the group's lag is 0 (every accept reached the broker); polled every millisecond.
    Lag0,
    /// At the last `Accepted` event; the lag is then polled (every 10 ms) only for the summary.
    LastAccept,
}

pub(crate) async fn run(args: &Args, header: bool) -> Result<(), String> {
    args.check(OPTIONS)?;
    let w = Workload::from_args(args)?;
    let broker = shareworker_impl::broker()?;
    execute(Arc::new(broker), TOPIC, HANDLER, &w, Finish::Lag0, header).await
}

/// Creates `topic`, enqueues the workload and runs a worker (handler and group `handler`) on it.
pub(crate) async fn execute(
    broker: Arc<dyn Broker>,
    topic: &str,
    handler: &str,
    w: &Workload,
    finish: Finish,
    header: bool,
) -> Result<(), String> {
    let Workload {
        jobs,
        partitions,
        concurrency,
        prefetch,
        mean_ms,
        sigma,
        mu,
        slow_ms,
        slow,
        seed,
        mean_s,
        little,
        ..
    } = *w;
    broker
        .create_topic(topic, partitions)
        .await
        .map_err(|e| e.to_string())?;
    let queue = Queue::from_arc(broker.clone());
    let t0 = Instant::now();
    for chunk in w.times_us.chunks(10_000) {
        // No key: keyless records are spread round-robin over the partitions (both brokers).
        let messages: Vec<Message> = chunk
            .iter()
            .map(|t| Message::json(t).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        queue
            .send_batch(topic, messages)
            .await
            .map_err(|e| e.to_string())?;
    }
    let enqueue = t0.elapsed();

    let done = Completion::new(jobs as u64);
    let first_ns = Arc::new(AtomicU64::new(0));
    let first = first_ns.clone();
    let took_ns = Arc::new(AtomicU64::new(0));
    let renewed = Arc::new(AtomicU64::new(0));
    let (counter, took, renews) = (done.clone(), took_ns.clone(), renewed.clone());
    // Accepted on a delivery after the first: a lock ran out (or a member left) on the way.
    let redelivered = Arc::new(AtomicU64::new(0));
    let again = redelivered.clone();
    let mut config = crate::default_config();
    config.concurrency = config.concurrency.max(concurrency);
    if let Some(interval) = w.assignment_interval {
        config.groups.insert(
            handler.to_owned(),
            GroupConfig::default().assignment_interval(interval).into(),
        );
    }
    let t1 = Instant::now();
    let worker = Worker::builder()
        .broker_arc(broker.clone())
        .code_config_only()
        .without_signal_handling()
        .config(config)
        .on_event(move |e| match e.outcome {
            Outcome::Accepted => {
                if first.load(Ordering::Relaxed) == 0 {
                    let _ = first.compare_exchange(
                        0,
                        t1.elapsed().as_nanos() as u64,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                if let Some(t) = e.took {
                    took.fetch_add(t.as_nanos() as u64, Ordering::Relaxed);
                }
                if e.attempt > 1 {
                    again.fetch_add(1, Ordering::Relaxed);
                }
                counter.one();
            }
            Outcome::LockRenewed => {
                renews.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        })
        .job({
            let def = JobDefinition::new(handler, topic, sleepy).concurrency(concurrency);
            match prefetch {
                Some(p) => def.prefetch(p),
                None => def,
            }
        })
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let stop = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());
    done.wait().await;
    let last_accept = t1.elapsed();
    let poll = match finish {
        Finish::Lag0 => Duration::from_millis(1),
        Finish::LastAccept => Duration::from_millis(10),
    };
    let lag_deadline = Instant::now() + Duration::from_secs(30);
    let lag_left = loop {
        let lag = broker
            .lag(handler)
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(|t| t.lag)
            .sum::<u64>();
        if lag == 0 || Instant::now() >= lag_deadline {
            break lag;
        }
        tokio::time::sleep(poll).await;
    };
    let lag0 = t1.elapsed();
    let elapsed = match finish {
        Finish::Lag0 => lag0,
        Finish::LastAccept => last_accept,
    };
    if finish == Finish::Lag0 && lag_left != 0 {
        return Err(format!("the lag is still {lag_left} after 30 s"));
    }
    stop.shutdown();
    let summary = running
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if summary.accepted != jobs as u64 {
        return Err(format!(
            "expected {jobs} accepted jobs, the worker reports {summary:?}"
        ));
    }

    let rate = jobs as f64 / elapsed.as_secs_f64();
    let observed_mean_s = took_ns.load(Ordering::Relaxed) as f64 / jobs as f64 / 1e9;
    let (hwm, _) = memory_kib();
    // Whatever the scheduler, the run cannot be shorter than the total work spread over all
    // slots, nor than its longest job.
    let floor_s = (mean_s * jobs as f64 / f64::from(concurrency)).max(slow_ms / 1000.0);
    eprintln!(
        "hol broker={kind} jobs={jobs} partitions={partitions} concurrency={concurrency} prefetch={} \
         lognormal(mean {mean_ms} ms, sigma {sigma}, mu {mu:.4}) + {slow} slow jobs of {slow_ms} ms, seed {seed}\n  \
         enqueue {:.3} s; ran {:.3} s (first accept at {:.3} s, last at {:.3} s, lag {lag_left} at {:.3} s); {rate:.0} jobs/s; \
         mean drawn handler time {:.2} ms (observed {:.2} ms); Little's bound {little:.0} jobs/s; ratio {:.3}; \
         work/slots floor {floor_s:.3} s; lock renewals {}; accepted on a redelivery {}; peak RSS {:.1} MiB",
        prefetch.map_or("auto".to_owned(), |p| p.to_string()),
        enqueue.as_secs_f64(),
        elapsed.as_secs_f64(),
        first_ns.load(Ordering::Relaxed) as f64 / 1e9,
        last_accept.as_secs_f64(),
        lag0.as_secs_f64(),
        mean_s * 1e3,
        observed_mean_s * 1e3,
        rate / little,
        renewed.load(Ordering::Relaxed),
        redelivered.load(Ordering::Relaxed),
        hwm as f64 / 1024.0,
        kind = broker.kind(),
    );
    if header {
        println!(
            "| jobs | partitions | concurrency | slow jobs | mean handler time (ms) | run time (s) | jobs/s | Little's bound (jobs/s) | ratio |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    }
    println!(
        "| {jobs} | {partitions} | {concurrency} | {slow} x {slow_ms} ms | {:.2} | {:.3} | {} | {} | {:.3} |",
        mean_s * 1e3,
        elapsed.as_secs_f64(),
        thousands(rate),
        thousands(little),
        rate / little
    );
    Ok(())
}
