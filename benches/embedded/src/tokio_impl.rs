//! The baseline: a bare tokio loop. Jobs sit in a `VecDeque`; a dispatcher takes a semaphore
//! permit per job and spawns a task for it; each task acknowledges on an mpsc channel that the
//! main task counts.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc};

use crate::E2e;

pub(crate) async fn e2e(jobs: u64, concurrency: usize) -> Result<E2e, String> {
    let t0 = Instant::now();
    let queue: VecDeque<u64> = (0..jobs).collect();
    let enqueue = t0.elapsed();
    let rss_after_enqueue = crate::memory_kib().1;

    let t1 = Instant::now();
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<u64>();
    let permits = Arc::new(Semaphore::new(concurrency));
    let dispatcher = tokio::spawn(async move {
        for n in queue {
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let ack = ack_tx.clone();
            tokio::spawn(async move {
                std::hint::black_box(n);
                drop(permit);
                let _ = ack.send(n);
            });
        }
    });
    let mut acked = 0u64;
    while acked < jobs {
        if ack_rx.recv().await.is_none() {
            break;
        }
        acked += 1;
    }
    let dispatch = t1.elapsed();
    dispatcher.await.map_err(|e| e.to_string())?;
    if acked != jobs {
        return Err(format!("expected {jobs} acknowledgements, counted {acked}"));
    }
    Ok(E2e {
        rss_after_enqueue,
        enqueue,
        dispatch,
        note: "semaphore + spawn per job + mpsc ack".into(),
    })
}
