//! Payloads in Protocol Buffers instead of JSON, through `prost`.
//!
//! Run it with `cargo run --example protobuf`. A handler's payload type decides how its records
//! are decoded (`shareworker::codec::Decode`), and `Queue::enqueue` encodes with the same type
//! (`shareworker::codec::Encode`), so producer and handler cannot disagree. Here a small wrapper,
//! `Proto<T>`, implements both for every prost message; the message itself is written by hand
//! with `#[derive(prost::Message)]` (no `protoc` needed; `prost-build` makes the same from a
//! `.proto` file). Three orders are enqueued as protobuf and handled; one record that is not
//! protobuf fails to decode, which is permanent: it goes to `orders.dlq` at once, with the
//! decoder's message, without running the handler.
//!
//! It exits with status 1 if the orders or the dead letter are not as described.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shareworker::{
    EmbeddedBroker, Job, JobError, Queue, Worker,
    broker::Bytes,
    codec::{Decode, DecodeError, Encode, EncodeError},
    queue::Message,
    worker::Outcome,
};
use shareworker_examples::Checks;
use tokio::sync::Notify;

/// An order, as `message Order { string id = 1; uint32 quantity = 2; repeated string items = 3; }`.
#[derive(Clone, PartialEq, prost::Message)]
struct Order {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(uint32, tag = "2")]
    quantity: u32,
    #[prost(string, repeated, tag = "3")]
    items: Vec<String>,
}

/// A payload in Protocol Buffers: `Job<Proto<Order>>` decodes it, `queue.enqueue(topic,
/// &Proto(order))` encodes it.
#[derive(Clone, Debug, PartialEq)]
struct Proto<T>(T);

impl<T: prost::Message + Default> Decode for Proto<T> {
    fn decode(raw: &Bytes) -> Result<Self, DecodeError> {
        T::decode(raw.as_ref())
            .map(Proto)
            .map_err(|e| DecodeError::new(format!("not a protobuf message: {e}")))
    }
}

impl<T: prost::Message> Encode for Proto<T> {
    fn encode(&self) -> Result<Bytes, EncodeError> {
        Ok(Bytes::from(self.0.encode_to_vec()))
    }
}

/// The orders the handler saw.
static SHIPPED: Mutex<Vec<Order>> = Mutex::new(Vec::new());

/// Ships an order.
#[shareworker::job(topic = "orders")]
async fn ship(job: Job<Proto<Order>>) -> Result<(), JobError> {
    let Proto(order) = job.payload();
    println!(
        "ship        order {} at {}: {} x {:?}",
        order.id,
        job.id(),
        order.quantity,
        order.items
    );
    SHIPPED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(order.clone());
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("RUST_LOG").is_some() {
        shareworker::init_tracing();
    }
    let broker = EmbeddedBroker::builder()
        .start_from(shareworker::broker::StartFrom::Earliest)
        .build()?;
    let settled = Arc::new(AtomicUsize::new(0));
    let all_settled = Arc::new(Notify::new());
    let (count, notify) = (settled.clone(), all_settled.clone());
    let worker = Worker::builder()
        .broker(broker.clone())
        .registered_jobs()
        .on_event(move |e| {
            match &e.outcome {
                Outcome::DeadLettering { error } => {
                    println!("dead letter {}: {error}", e.id)
                }
                Outcome::Accepted | Outcome::DeadLettered => {}
                _ => return,
            }
            if matches!(e.outcome, Outcome::Accepted | Outcome::DeadLettered)
                && count.fetch_add(1, Ordering::SeqCst) + 1 == 4
            // 3 orders, 1 dead letter
            {
                notify.notify_one();
            }
        })
        .build()
        .await?;

    let queue = Queue::new(broker.clone());
    let orders = [
        ("A-1", 2, vec!["tea", "cups"]),
        ("A-2", 1, vec!["kettle"]),
        ("A-3", 5, vec![]),
    ]
    .map(|(id, quantity, items)| Order {
        id: id.into(),
        quantity,
        items: items.into_iter().map(String::from).collect(),
    });
    for order in &orders {
        // Encoded by `Proto`'s `Encode`: the bytes the handler's `Decode` reads.
        queue.enqueue("orders", &Proto(order.clone())).await?;
    }
    // Not protobuf: a field key whose varint never ends.
    let garbage = queue
        .send("orders", Message::bytes(vec![0xff, 0xff, 0xff]))
        .await?;
    println!(
        "enqueued {} protobuf orders and one record that is not protobuf\n",
        orders.len()
    );

    let shutdown = worker.shutdown_handle();
    let running = tokio::spawn(worker.run());
    // 3 orders accepted and 1 dead letter.
    let expected = 4;
    let mut waited = 0;
    while settled.load(Ordering::SeqCst) < expected && waited < 300 {
        let _ = tokio::time::timeout(Duration::from_millis(100), all_settled.notified()).await;
        waited += 1;
    }
    shutdown.shutdown();
    let summary = running.await??;

    let letters = broker.read_topic("orders.dlq").unwrap_or_default();
    println!("\norders.dlq holds {} record(s)", letters.len());
    let letter = letters.first();
    let error = letter
        .and_then(|r| r.headers.get_str(shareworker::dead_letter::headers::ERROR))
        .unwrap_or("")
        .to_owned();
    let attempts = letter
        .and_then(|r| {
            r.headers
                .get_str(shareworker::dead_letter::headers::ATTEMPTS)
        })
        .unwrap_or("")
        .to_owned();
    println!("  error:    {error}\n  attempts: {attempts}");

    let shipped = SHIPPED.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut checks = Checks::new();
    checks.check(
        summary.accepted == 3 && shipped.len() == 3,
        format!(
            "the 3 protobuf orders were decoded and handled (got {})",
            shipped.len()
        ),
    );
    checks.check(
        orders.iter().all(|o| shipped.contains(o)),
        "each order arrived as it was enqueued, field by field",
    );
    checks.check(
        summary.dead_lettered == 1 && letters.len() == 1,
        format!(
            "the record that is not protobuf is in orders.dlq (got {})",
            letters.len()
        ),
    );
    checks.check(
        error.contains("not a protobuf message") && attempts == "1",
        "its dead letter carries the decoder's message after 1 attempt: decoding failures are permanent",
    );
    checks.check(
        letter.and_then(|r| r.value.as_deref()) == Some(&[0xff, 0xff, 0xff][..])
            && letter.and_then(|r| r.headers.get_str(shareworker::dead_letter::headers::OFFSET))
                == Some(garbage.offset.to_string().as_str()),
        "the dead letter keeps the original bytes and offset",
    );
    checks.finish()?;
    Ok(())
}
