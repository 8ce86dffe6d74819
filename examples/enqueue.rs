//! Enqueueing from another program: the producer needs only a `Queue` on the broker.
//!
//! ```text
//! cargo run --example enqueue                 a worker, and a producer that enqueues 5 orders
//! cargo run --example enqueue -- work         only the worker, until Ctrl-C
//! cargo run --example enqueue -- produce      only the producer: 5 orders, then exit
//! ```
//!
//! On Kafka (`SHAREWORKER_BROKER=kafka://127.0.0.1:9092`) the producer is another process: the
//! demo starts this binary again as `enqueue produce`, which connects to Kafka on its own and
//! knows nothing of the worker; `work` and `produce` can also run in two terminals. On the
//! embedded broker, which lives inside one process, the producer is a task of the worker's
//! process holding only a `Queue`, as a web request handler would.
//!
//! A job is just a record on the handler's topic (JSON here), so any Kafka producer can enqueue
//! too. The demo exits with status 1 unless the worker handled every order the producer sent.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shareworker::{
    Job, JobError, KafkaBroker, Queue, Worker,
    broker::{GroupConfig, StartFrom},
    queue::Message,
};
use shareworker_examples::Checks;
use tokio::sync::Notify;

/// Orders the producer enqueues.
const ORDERS: u32 = 5;

#[derive(Serialize, Deserialize, Debug)]
struct Order {
    /// Which producer run it comes from (the demo waits for its own).
    batch: String,
    id: u32,
    item: String,
}

/// The batch the demo waits for, orders of it handled, and a signal when all are.
static BATCH: OnceLock<String> = OnceLock::new();
static HANDLED: AtomicU32 = AtomicU32::new(0);
static BATCH_DONE: Notify = Notify::const_new();

/// The worker's handler.
#[shareworker::job(topic = "orders", concurrency = 4)]
async fn ship(job: Job<Order>) -> Result<(), JobError> {
    let order = job.payload();
    println!(
        "worker   (pid {}) ships order {} ({}), key {}, header source={}",
        std::process::id(),
        order.id,
        order.item,
        job.key_str().unwrap_or("-"),
        job.headers().get_str("source").unwrap_or("-"),
    );
    let from_producer = job.key_str().is_some() && job.headers().get_str("source").is_some();
    if BATCH.get() == Some(&order.batch)
        && from_producer
        && HANDLED.fetch_add(1, Ordering::SeqCst) + 1 == ORDERS
    {
        BATCH_DONE.notify_one();
    }
    Ok(())
}

/// The producer: everything it needs is a `Queue` on the broker.
async fn produce(queue: &Queue, batch: &str) -> Result<(), shareworker::Error> {
    let item = |id| ["book", "lamp", "kettle"][id as usize % 3].to_owned();
    // One at a time, with a key (orders of one customer go to one partition) and a header.
    for id in 1..=2 {
        let order = Order {
            batch: batch.to_owned(),
            id,
            item: item(id),
        };
        let message = Message::json(&order)?
            .key(format!("customer-{id}"))
            .header("source", "producer");
        queue.send("orders", message).await?;
    }
    // Or several in one write.
    let mut messages = Vec::new();
    for id in 3..=ORDERS {
        let order = Order {
            batch: batch.to_owned(),
            id,
            item: item(id),
        };
        messages.push(
            Message::json(&order)?
                .key(format!("customer-{id}"))
                .header("source", "producer"),
        );
    }
    queue.send_batch("orders", messages).await?;
    println!(
        "producer (pid {}) enqueued {ORDERS} orders on the {} broker",
        std::process::id(),
        queue.broker().kind()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("RUST_LOG").is_some() {
        shareworker::init_tracing();
    }
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None => demo().await,
        Some("work") => {
            let worker = worker().await?;
            println!(
                "worker running on the {} broker; Ctrl-C stops it",
                worker.broker().kind()
            );
            worker.run().await?;
            Ok(())
        }
        Some("produce") => {
            // A separate program: it reads the broker's address itself and connects on its own.
            let url = std::env::var("SHAREWORKER_BROKER").unwrap_or_default();
            if !url.starts_with("kafka://") {
                return Err("the producer needs a broker it can share with the worker: set SHAREWORKER_BROKER=kafka://host:port (an embedded broker lives inside one process)".into());
            }
            let batch = args.next().unwrap_or_else(|| "by-hand".to_owned());
            let queue = Queue::new(KafkaBroker::connect(&url).await?);
            produce(&queue, &batch).await?;
            Ok(())
        }
        Some(other) => {
            Err(format!("unknown command `{other}`: use no argument, `work` or `produce`").into())
        }
    }
}

/// The worker, on the broker the configuration names, with its topic and group set up.
async fn worker() -> Result<Worker, shareworker::Error> {
    let worker = Worker::builder().registered_jobs().build().await?;
    let broker = worker.broker();
    broker.create_topic("orders", 1).await?;
    // A new group on Kafka starts at the end of the topic; this one reads from the start.
    broker
        .configure_group(
            "ship",
            &GroupConfig::default().start_from(StartFrom::Earliest),
        )
        .await?;
    Ok(worker)
}

/// A worker and a producer: another process on Kafka, a task here on the embedded broker.
async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let worker = worker().await?;
    let broker = worker.broker();
    let batch = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    BATCH.get_or_init(|| batch.clone());
    let shutdown = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());

    let producer = if broker.kind() == "kafka" {
        println!("starting the producer as a separate process: enqueue produce {batch}");
        let exe = std::env::current_exe()?;
        let mut child = std::process::Command::new(exe)
            .args(["produce", &batch])
            .spawn()?;
        tokio::task::spawn_blocking(move || match child.wait() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("the producer process failed ({s})")),
            Err(e) => Err(format!("the producer process: {e}")),
        })
    } else {
        println!("embedded broker: the producer is a task of this process holding only a Queue");
        let queue = Queue::from_arc(broker.clone());
        tokio::spawn(async move { produce(&queue, &batch).await.map_err(|e| e.to_string()) })
    };
    let produced = producer.await?;
    if let Err(e) = &produced {
        println!("{e}");
    } else if tokio::time::timeout(Duration::from_secs(60), BATCH_DONE.notified())
        .await
        .is_err()
    {
        println!("the worker did not get every order within 60 s");
    }
    shutdown.shutdown();
    running.await??;

    let mut checks = Checks::new();
    checks.check(produced.is_ok(), "the producer enqueued its orders");
    let handled = HANDLED.load(Ordering::SeqCst);
    checks.check(
        handled == ORDERS,
        format!("the worker handled all {ORDERS} of them, with their keys and headers ({handled})"),
    );
    checks.finish()?;
    Ok(())
}
