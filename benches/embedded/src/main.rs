//! Benchmarks of shareworker on its embedded broker.
//!
//! * `e2e`: enqueue N jobs, then run a worker with a no-op handler until every job is settled;
//!   the same work on apalis 1.0's in-memory storage and on a bare tokio loop, for comparison.
//! * `hol`: a head-of-line workload in real time (lognormal handler times with a slow tail) on
//!   a multi-partition topic, compared with Little's bound.
//! * `kafka-consume`, `kafka-hol`: the same on a real Kafka broker (`kafka.rs`, `../run-kafka.sh`).
//!
//! Each run prints a human summary on stderr and one markdown table row on stdout. Run one
//! implementation per process so that peak RSS (VmHWM) belongs to it alone; `../run.sh` does.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

mod apalis_impl;
mod counting;
mod hol;
mod kafka;
mod shareworker_impl;
mod tokio_impl;

/// What one e2e run measured.
pub(crate) struct E2e {
    pub(crate) enqueue: Duration,
    pub(crate) dispatch: Duration,
    /// VmRSS right after enqueueing, KiB.
    pub(crate) rss_after_enqueue: u64,
    /// Free-form detail for the human summary (prefetch, payload, ...).
    pub(crate) note: String,
}

/// Counts completions and wakes the waiter when the last one arrives.
pub(crate) struct Completion {
    done: AtomicU64,
    target: u64,
    notify: Notify,
}

impl Completion {
    pub(crate) fn new(target: u64) -> Arc<Self> {
        Arc::new(Self {
            done: AtomicU64::new(0),
            target,
            notify: Notify::new(),
        })
    }

    #[inline]
    pub(crate) fn one(&self) {
        if self.done.fetch_add(1, Ordering::Relaxed) + 1 == self.target {
            // notify_one stores a permit when nobody waits yet, so this cannot be lost.
            self.notify.notify_one();
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub(crate) async fn wait(&self) {
        if self.target == 0 {
            return;
        }
        self.notify.notified().await;
    }
}

/// A worker's default configuration, with its metrics endpoint on loopback at a free port: it
/// is still served, as by default, but a benchmark opens no port to the network and two runs
/// never clash over 9464.
pub(crate) fn default_config() -> shareworker::Config {
    let mut config = shareworker::Config::default();
    config.http.address = "127.0.0.1:0".into();
    config
}

/// `(VmHWM, VmRSS)` of this process in KiB, from /proc/self/status.
pub(crate) fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

pub(crate) struct Args {
    rest: Vec<String>,
}

impl Args {
    pub(crate) fn value(&self, name: &str) -> Option<&str> {
        self.rest
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.rest.get(i + 1))
            .map(String::as_str)
    }

    pub(crate) fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.value(name) {
            None => Ok(default),
            Some(v) => v
                .replace('_', "")
                .parse()
                .map_err(|_| format!("{name}: `{v}` is not a number")),
        }
    }

    /// `--prefetch N` or `--prefetch auto` (also when absent): `None` is the automatic one.
    pub(crate) fn prefetch(&self) -> Result<Option<u32>, String> {
        match self.value("--prefetch") {
            None | Some("auto") => Ok(None),
            Some(_) => self.num("--prefetch", 0).map(Some),
        }
    }

    pub(crate) fn check(&self, known: &[&str]) -> Result<(), String> {
        let mut i = 0;
        while i < self.rest.len() {
            let a = &self.rest[i];
            if !known.contains(&a.as_str()) {
                return Err(format!("unknown argument `{a}`"));
            }
            i += 2;
        }
        Ok(())
    }
}

const USAGE: &str = "\
usage:
  bench e2e --jobs 1000000 --concurrency N --impl shareworker|apalis|tokio
            [--batch 10000] [--prefetch P] [--payload json|bytes] [--threads T] [--header]
  bench hol --jobs 20000 --partitions 4 --concurrency 200
            [--mean-ms 50] [--sigma 0.5] [--slow-frac 0.05] [--slow-ms 2000] [--seed 42]
            [--prefetch P] [--assignment-interval-ms MS] [--threads T] [--header]
  bench kafka-consume --topic T --group G [--records 2000000] [--concurrency 256] [--prefetch P]
            [--url kafka://127.0.0.1:29092] [--threads T] [--header]
  bench kafka-hol --topic T [--group G] [hol options] [--url kafka://127.0.0.1:29092]
--threads sets the tokio runtime's worker threads (default: one per core).";

fn main() -> ExitCode {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() || argv[0] == "-h" || argv[0] == "--help" {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let cmd = argv.remove(0);
    let header = if let Some(i) = argv.iter().position(|a| a == "--header") {
        argv.remove(i);
        true
    } else {
        false
    };
    let threads = match argv.iter().position(|a| a == "--threads") {
        Some(i) if i + 1 < argv.len() => {
            let v = argv.remove(i + 1);
            argv.remove(i);
            match v.parse::<usize>() {
                Ok(n) if n >= 1 => Some(n),
                _ => {
                    eprintln!("--threads: `{v}` is not a positive number");
                    return ExitCode::from(2);
                }
            }
        }
        _ => None,
    };
    let args = Args { rest: argv };
    // The default multi-threaded runtime (one worker per core), as `#[tokio::main]` gives.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        builder.worker_threads(n);
    }
    let rt = builder.enable_all().build().expect("a tokio runtime");
    if std::env::var_os("BENCH_TRACE_RSS").is_some() {
        // Debugging aid: VmRSS every 50 ms on stderr, to see when the peak happens.
        std::thread::spawn(|| {
            let start = Instant::now();
            loop {
                let (_, rss) = memory_kib();
                eprintln!(
                    "rss t={:.2}s {:.1} MiB",
                    start.elapsed().as_secs_f64(),
                    rss as f64 / 1024.0
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        });
    }
    let res = match cmd.as_str() {
        "e2e" => rt.block_on(e2e(&args, header)),
        "hol" => rt.block_on(hol::run(&args, header)),
        "kafka-consume" => rt.block_on(kafka::consume(&args, header)),
        "kafka-hol" => rt.block_on(kafka::hol(&args, header)),
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn e2e(args: &Args, header: bool) -> Result<(), String> {
    args.check(&[
        "--jobs",
        "--concurrency",
        "--impl",
        "--batch",
        "--prefetch",
        "--payload",
    ])?;
    let jobs: u64 = args.num("--jobs", 1_000_000)?;
    let concurrency: u32 = args.num("--concurrency", 1)?;
    let batch: usize = args.num("--batch", 10_000)?;
    let imp = args.value("--impl").unwrap_or("shareworker");
    if concurrency == 0 || batch == 0 {
        return Err("--concurrency and --batch must be at least 1".into());
    }
    let wall = Instant::now();
    let r = match imp {
        "shareworker" => {
            // The library's default (`auto`) unless --prefetch N says otherwise.
            let prefetch = args.prefetch()?;
            let payload = match args.value("--payload").unwrap_or("json") {
                "json" => shareworker_impl::Payload::Json,
                "bytes" => shareworker_impl::Payload::Bytes,
                p => return Err(format!("--payload: `{p}` is neither json nor bytes")),
            };
            shareworker_impl::e2e(jobs, concurrency, prefetch, batch, payload).await?
        }
        "apalis" => apalis_impl::e2e(jobs, concurrency as usize, batch).await?,
        "tokio" => tokio_impl::e2e(jobs, concurrency as usize).await?,
        other => return Err(format!("--impl: unknown implementation `{other}`")),
    };
    let (hwm, rss) = memory_kib();
    let total = r.enqueue + r.dispatch;
    let e2e_rate = jobs as f64 / total.as_secs_f64();
    let dispatch_rate = jobs as f64 / r.dispatch.as_secs_f64();
    eprintln!(
        "e2e impl={imp} jobs={jobs} concurrency={concurrency} {note}\n  enqueue {enq:.3} s, dispatch {dis:.3} s, \
         end-to-end {e2e_rate:.0} jobs/s, dispatch-only {dispatch_rate:.0} jobs/s, peak RSS {hwm_mb:.1} MiB \
         (RSS after enqueue {enq_mb:.1} MiB, at end {rss_mb:.1} MiB), wall {wall:.1} s",
        note = r.note,
        enq = r.enqueue.as_secs_f64(),
        dis = r.dispatch.as_secs_f64(),
        hwm_mb = hwm as f64 / 1024.0,
        rss_mb = rss as f64 / 1024.0,
        enq_mb = r.rss_after_enqueue as f64 / 1024.0,
        wall = wall.elapsed().as_secs_f64(),
    );
    if header {
        println!(
            "| impl | concurrency | jobs | enqueue (s) | dispatch (s) | end-to-end (jobs/s) | dispatch-only (jobs/s) | peak RSS (MiB) |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    }
    println!(
        "| {imp} | {concurrency} | {jobs} | {:.3} | {:.3} | {} | {} | {:.1} |",
        r.enqueue.as_secs_f64(),
        r.dispatch.as_secs_f64(),
        thousands(e2e_rate),
        thousands(dispatch_rate),
        hwm as f64 / 1024.0
    );
    Ok(())
}

/// `1234567.8` as `1,234,568`.
pub(crate) fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
