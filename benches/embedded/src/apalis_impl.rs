//! e2e on apalis 1.0: push every job into its in-memory storage (`MemoryStorage`, a channel),
//! then run one worker with a concurrency limit and a no-op handler until all jobs are done.
//!
//! apalis's in-memory backend is ephemeral: a task is done when its handler future completes,
//! there is no acknowledgement to wait for. The handler counts itself done.

use std::sync::Arc;
use std::time::Instant;

use apalis::prelude::*;

use crate::{Completion, E2e};

pub(crate) async fn e2e(jobs: u64, concurrency: usize, batch: usize) -> Result<E2e, String> {
    let mut storage = MemoryStorage::<u64>::new();

    let t0 = Instant::now();
    let mut next = 0u64;
    while next < jobs {
        let end = (next + batch as u64).min(jobs);
        storage
            .push_bulk((next..end).collect())
            .await
            .map_err(|e| e.to_string())?;
        next = end;
    }
    let enqueue = t0.elapsed();
    let rss_after_enqueue = crate::memory_kib().1;

    let t1 = Instant::now();
    let done = Completion::new(jobs);
    let counter = done.clone();
    let handler = move |n: u64| {
        let counter = Arc::clone(&counter);
        async move {
            std::hint::black_box(n);
            counter.one();
        }
    };
    let worker = WorkerBuilder::new("bench-noop")
        .backend(storage)
        .concurrency(concurrency)
        .build(handler);
    let waiter = done.clone();
    worker
        .run_with_ctx(move |ctx| {
            let waiter = waiter.clone();
            async move {
                waiter.wait().await;
                ctx.stop()
            }
        })
        .await
        .map_err(|e| e.to_string())?;
    let dispatch = t1.elapsed();
    if done.count() != jobs {
        return Err(format!(
            "expected {jobs} jobs done, counted {}",
            done.count()
        ));
    }
    Ok(E2e {
        rss_after_enqueue,
        enqueue,
        dispatch,
        note: format!("MemoryStorage, .concurrency({concurrency}), batch={batch}"),
    })
}
