//! An application as a service writes it: handlers with shared state (a database and a payment
//! gateway behind `Arc`s), a `Queue` from setup that handlers use to enqueue follow-up jobs, a
//! tower layer on every handler, and handlers selected per process with `--handlers`.
//!
//! Run it with `cargo run --example application` (both handlers) or
//! `cargo run --example application -- --handlers charge` (only `charge`: receipts stay queued).
//! It enqueues five orders, charges them (order 3 is declined: a permanent failure, dead-lettered
//! to `orders.dlq`), sends a receipt for each paid order, and exits with status 1 if the database
//! does not say so.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shareworker::{App, Job, JobError, Queue, State};
use shareworker_examples::Checks;
use tokio::sync::Notify;

/// An order as the shop enqueues it.
#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: u64,
    cents: u64,
}

/// The application's database: an in-memory store behind an `Arc`, cloned into every job.
#[derive(Clone, Default)]
struct Db {
    rows: Arc<Mutex<BTreeMap<u64, &'static str>>>,
    changed: Arc<Notify>,
}

impl Db {
    fn set(&self, id: u64, status: &'static str) -> Result<(), JobError> {
        self.rows
            .lock()
            .map_err(|_| JobError::retry("the database lock is poisoned"))?
            .insert(id, status);
        self.changed.notify_waiters();
        Ok(())
    }

    fn statuses(&self) -> BTreeMap<u64, &'static str> {
        self.rows.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// A payment gateway client; this one declines order 3.
#[derive(Clone)]
struct Payments {
    declines: u64,
}

#[shareworker::job(topic = "orders", concurrency = 4, max_attempts = 3)]
async fn charge(
    job: Job<Order>,
    State(db): State<Db>,
    State(payments): State<Payments>,
    State(queue): State<Queue>,
) -> Result<(), JobError> {
    let order = job.payload();
    if order.id == payments.declines {
        db.set(order.id, "declined")?;
        return Err(JobError::permanent(format!(
            "card declined for order {}",
            order.id
        )));
    }
    db.set(order.id, "paid")?;
    // A follow-up job, through the queue registered as state in setup.
    queue.enqueue("receipts", &order.id).await?;
    println!("charged order {} ({} cents)", order.id, order.cents);
    Ok(())
}

#[shareworker::job(topic = "receipts")]
async fn receipt(job: Job<u64>, State(db): State<Db>) -> Result<(), JobError> {
    db.set(*job.payload(), "receipt sent")?;
    println!("receipt sent for order {}", job.payload());
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    shareworker::init_tracing();
    // What `#[shareworker::main] async fn main(app: &mut App)` does, by hand, so the example can
    // stop itself when its work is done.
    let mut app = App::from_env().await?;
    let db = Db::default();
    let queue = app.queue();
    app.state(db.clone())
        .state(Payments { declines: 3 })
        .state(queue.clone())
        .layer_all(tower::timeout::TimeoutLayer::new(Duration::from_secs(10)));
    let receipts = app.handlers().contains(&"receipt");
    println!("running handlers: {}", app.handlers().join(", "));
    for id in 1..=5 {
        queue
            .enqueue(
                "orders",
                &Order {
                    id,
                    cents: id * 100,
                },
            )
            .await?;
    }
    let want = if receipts { "receipt sent" } else { "paid" };
    let done = {
        let db = db.clone();
        async move {
            loop {
                let changed = db.changed.notified();
                let s = db.statuses();
                if s.len() == 5 && s.iter().all(|(id, st)| *id == 3 || *st == want) {
                    break;
                }
                let _ = tokio::time::timeout(Duration::from_millis(200), changed).await;
            }
        }
    };
    let summary = app
        .into_builder()
        .shutdown_signal(async move {
            let _ = tokio::time::timeout(Duration::from_secs(60), done).await;
        })
        .build()
        .await?
        .run()
        .await?;

    let statuses = db.statuses();
    println!("database: {statuses:?}");
    let mut checks = Checks::new();
    checks.check(
        statuses.get(&3) == Some(&"declined"),
        "order 3 was declined",
    );
    checks.check(
        [1, 2, 4, 5]
            .iter()
            .all(|id| statuses.get(id) == Some(&want)),
        format!("orders 1, 2, 4 and 5 are `{want}`"),
    );
    checks.check(summary.dead_lettered == 1, "one dead letter (order 3)");
    checks.finish()?;
    Ok(())
}
