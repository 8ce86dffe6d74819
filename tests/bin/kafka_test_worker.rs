//! A worker process for the multi-process Kafka tests.
//!
//! Environment: `KAFKA_URL` (kafka://..., or `config` to take the broker and everything else from
//! `shareworker.toml` and `SHAREWORKER_*`), `TOPIC`, `GROUP`, `HANDLE_MS` (how long each job takes),
//! `CONCURRENCY`. For every job it starts it prints `start <partition> <offset> <attempt>`, and
//! for every job it finishes `done <partition> <offset> <attempt>` on stdout (flushed at once)
//! before returning, so the parent knows what this process holds and handled. It stops
//! gracefully on SIGTERM.

use std::io::Write;
use std::time::Duration;

use shareworker::{Job, JobDefinition, JobError, KafkaBroker, Worker, broker::Bytes};

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("set {name}"))
}

/// Prints `<what> <partition> <offset> <attempt>` and flushes.
fn say(what: &str, job: &Job<Bytes>) -> std::io::Result<()> {
    let line = format!(
        "{what} {} {} {}\n",
        job.partition(),
        job.offset(),
        job.attempt()
    );
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.flush()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    shareworker::init_tracing();
    // Listen for SIGTERM before anything else, so a stop that comes early is still graceful.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let url = var("KAFKA_URL")?;
    let topic = var("TOPIC")?;
    let group = var("GROUP")?;
    let handle = Duration::from_millis(var("HANDLE_MS")?.parse()?);
    let concurrency: u32 = var("CONCURRENCY")?.parse()?;
    let def = JobDefinition::new("test_worker", &topic, move |job: Job<Bytes>| async move {
        say("start", &job)?;
        tokio::time::sleep(handle).await;
        say("done", &job)?;
        Ok::<(), JobError>(())
    })
    .group(&group)
    .concurrency(concurrency)
    .prefetch(concurrency)
    .no_dead_letter();
    // Two of these run side by side: no HTTP endpoint.
    let mut config = shareworker::Config::default();
    config.http.enabled = false;
    let builder = if url == "config" {
        // The broker and its security from the configuration (SHAREWORKER_*).
        Worker::builder().config(config)
    } else {
        Worker::builder()
            .broker(KafkaBroker::connect(&url).await?)
            .config(config)
            .code_config_only()
    };
    let worker = builder
        .shutdown_signal(async move {
            term.recv().await;
        })
        .job(def)
        .build()
        .await?;
    println!("ready");
    worker.run().await?;
    Ok(())
}
