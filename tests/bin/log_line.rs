//! Writes log lines through `shareworker::init_tracing`, for the log-format test
//! (`tests/log_format.rs`): with no argument one line inside a job span (with `PANIC=1` a panic
//! inside the span instead, caught as the worker catches a handler's, so the panic hook's line is
//! what is written); with `worker`, the lines of a real worker on the embedded broker that runs
//! one job, failing its first attempt.

use std::sync::Arc;
use std::time::Duration;

use shareworker::{EmbeddedBroker, Job, JobDefinition, JobError, Queue, Worker, worker::Outcome};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shareworker::init_tracing();
    if std::env::args().nth(1).as_deref() != Some("worker") {
        let span = tracing::info_span!("job", handler = "send_email", offset = 42);
        if std::env::var_os("PANIC").is_some() {
            let caught = span.in_scope(|| {
                std::panic::catch_unwind(|| {
                    panic!("the handler fell over\non two lines");
                })
            });
            assert!(caught.is_err());
            return Ok(());
        }
        span.in_scope(|| tracing::warn!(attempt = 2, "job failed; retrying after backoff"));
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(worker())
}

async fn send(job: Job<u32>) -> Result<(), JobError> {
    if job.attempt() == 1 {
        // A delay humantime would write `123ms 456us`.
        return Err(JobError::retry_after(
            Duration::from_micros(123_456),
            "try again",
        ));
    }
    Ok(())
}

async fn worker() -> Result<(), Box<dyn std::error::Error>> {
    let broker = EmbeddedBroker::builder()
        .start_from(shareworker::broker::StartFrom::Earliest)
        .build()?;
    Queue::new(broker.clone()).enqueue("emails", &7u32).await?;
    let done = Arc::new(tokio::sync::Notify::new());
    let notify = done.clone();
    let worker = Worker::builder()
        .broker(broker)
        .job(JobDefinition::new("send_email", "emails", send))
        .on_event(move |e| {
            if e.outcome == Outcome::Accepted {
                notify.notify_one();
            }
        })
        .build()
        .await?;
    let shutdown = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());
    tokio::time::timeout(Duration::from_secs(30), done.notified()).await?;
    shutdown.shutdown();
    running.await??;
    Ok(())
}
