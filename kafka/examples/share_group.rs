//! The share-group client by itself: join a share group, acquire records, renew a lock,
//! acknowledge, leave. No runtime, no handlers.
//!
//! ```sh
//! KAFKA_BOOTSTRAP=127.0.0.1:9092 cargo run -p shareworker-kafka --example share_group
//! ```
//!
//! Needs a Kafka 4.2+ broker with share groups. Prints `ok: ...` lines, and exits with status 1
//! after a `FAILED: ...` line when the broker did not do what the example shows.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shareworker_kafka::{
    AckKind, Broker, Error, KafkaBroker, OutgoingRecord, StartFrom, shareworker_core::GroupConfig,
};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let url = if bootstrap.starts_with("kafka://") {
        bootstrap
    } else {
        format!("kafka://{bootstrap}")
    };
    let kafka = KafkaBroker::connect(&url).await?;
    println!("ok: connected to {url}");

    // Unique names, so the example can run again on the same broker.
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let topic = format!("share-group-example-{stamp}");
    let group = format!("share-group-example-{stamp}");
    kafka.create_topic(&topic, 1).await?;
    // A new share group starts at the latest offset; this one reads from the start.
    kafka
        .configure_group(
            &group,
            &GroupConfig::default().start_from(StartFrom::Earliest),
        )
        .await?;
    let records = (0..3).map(|i| OutgoingRecord::new(format!("task {i}")));
    kafka.produce(&topic, records.collect()).await?;
    println!("ok: produced 3 records to {topic}");

    let member = kafka.join(&group, std::slice::from_ref(&topic)).await?;
    println!("ok: joined share group {group} as {}", member.member_id());

    let mut done = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while done < 3 {
        if Instant::now() > deadline {
            return Err(format!("acquired {done} of 3 records within 60 s").into());
        }
        for delivery in member.acquire(10, Duration::from_secs(2)).await? {
            let value = delivery.value.as_deref().unwrap_or_default();
            // A long job keeps its lock: renew it (KIP-1222), then accept.
            let renewed = member
                .settle(&[(delivery.id.clone(), AckKind::Renew)])
                .await?;
            first(renewed)?;
            let accepted = member
                .settle(&[(delivery.id.clone(), AckKind::Accept)])
                .await?;
            first(accepted)?;
            println!(
                "ok: acquired, renewed and accepted {:?} ({}, delivery {})",
                String::from_utf8_lossy(value),
                delivery.id,
                delivery.delivery_count
            );
            done += 1;
        }
    }
    member.leave().await?;
    println!("ok: left the group; 3 records done");
    Ok(())
}

/// The one result of a one-acknowledgement settle.
fn first(results: Vec<Result<(), Error>>) -> Result<(), Error> {
    results.into_iter().next().unwrap_or(Ok(()))
}
