//! A worker process on the embedded broker for `tests/log_pipe.rs`: `init_tracing` at `info`,
//! the default SIGINT/SIGTERM handling, its HTTP endpoint on a free loopback port and a
//! shutdown grace of `GRACE_MS`. It enqueues a job every 10 ms on `jobs`; every even job fails
//! its first attempt (a warning in the log) and succeeds on the next. It prints
//! `http <address>` on stdout once it serves, and `stopped <accepted>` when it ends.

use std::time::Duration;

use shareworker::{
    Config, EmbeddedBroker, Job, JobDefinition, JobError, Worker,
    broker::{Broker, OutgoingRecord, StartFrom},
};

async fn flaky(job: Job<u64>) -> Result<(), JobError> {
    if job.payload().is_multiple_of(2) && job.attempt() == 1 {
        return Err(JobError::retry("an even job fails its first attempt"));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    shareworker::init_tracing();
    let grace: u64 = std::env::var("GRACE_MS")?.parse()?;
    let broker = EmbeddedBroker::builder()
        .start_from(StartFrom::Earliest)
        .build()?;
    broker.create_topic("jobs", 1).await?;
    let mut config = Config::default();
    config.http.address = "127.0.0.1:0".into();
    config.shutdown_grace = Duration::from_millis(grace);
    let ms = Duration::from_millis(10);
    let worker = Worker::builder()
        .broker(broker.clone())
        .config(config)
        .code_config_only()
        .job(JobDefinition::new("flaky", "jobs", flaky).backoff(ms, ms, 1.0, 0.0))
        .build()
        .await?;
    let address = worker.http_address().ok_or("no HTTP endpoint")?;
    println!("http {address}");
    tokio::spawn(async move {
        for n in 0u64.. {
            let record = OutgoingRecord::new(n.to_string());
            if broker.produce("jobs", vec![record]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let summary = worker.run().await?;
    println!("stopped {}", summary.accepted);
    Ok(())
}
