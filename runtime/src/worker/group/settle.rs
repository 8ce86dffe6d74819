//! Acknowledgements: batched by the dispatcher, sent by one settle task, and what a refused
//! one means (a lost lock, perhaps at the record's last delivery).

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, warn};

use super::super::decide;
use super::super::events::{JobEvent, Outcome};
use super::{ACK_BATCH, ACK_LINGER, Completion, Dispatcher, Entry, State};
use crate::Error;
use crate::broker::{AckKind, Member, RecordId};

/// An acknowledgement waiting to be sent, with the delivery count of the record's delivery
/// (to tell, should the broker refuse it, whether the record was at its last delivery).
pub(super) type Ack = (RecordId, AckKind, u16);

/// Queues the final acknowledgement of a record, unless its lock was lost (then the broker has
/// given it to another delivery, which this acknowledgement must not settle).
pub(super) fn push_ack(acks: &mut Vec<Ack>, e: Entry, kind: AckKind) {
    if !e.lost {
        let attempt = e.attempt();
        acks.push((e.into_id(), kind, attempt));
    }
}

impl Dispatcher {
    pub(super) fn on_settle_failed(
        &mut self,
        id: RecordId,
        kind: AckKind,
        mut attempt: u16,
        error: &Error,
    ) {
        if kind == AckKind::Renew {
            self.r.metrics.renewal_failures.inc();
        } else if error.is_lock_lost() {
            self.r.metrics.locks_lost.inc();
        }
        // The record is gone from this member: the limit may have changed under us.
        if kind == AckKind::Renew || error.is_lock_lost() {
            self.r.limit.reread_soon(self.r.broker.clone());
        }
        let limit = self.r.limit.get();
        if kind == AckKind::Renew {
            // The lock is gone: stop renewing, and never settle this delivery.
            let mut archived = None;
            if let Some(e) = self.entries.values_mut().find(|e| *e.id() == id && !e.lost) {
                e.lost = true;
                attempt = e.attempt();
                // A dead letter being written still lands; anything else at its last
                // delivery is archived by the broker when its lock expires.
                if decide::archived_on_lost_lock(
                    e.attempt(),
                    limit,
                    matches!(e.state, State::DeadLettering(_)),
                ) {
                    archived = Some(e.handler);
                }
            }
            warn!(group = %self.r.group, record = %id, error = %error,
                "renewing the lock failed: the record will be delivered again; its running handler goes on, but its result will not be acknowledged");
            if let Some(h) = archived {
                self.archived(
                    h,
                    &id,
                    attempt,
                    format!("its lock was lost at its last delivery: {error}"),
                );
            }
        } else {
            warn!(group = %self.r.group, record = %id, ack = %kind, error = %error,
                "settling failed; the record will be delivered again when its lock expires");
        }
        self.r
            .events
            .emit(Outcome::SettleFailed { kind }, |outcome| JobEvent {
                handler: self.handler_for(&id),
                group: self.r.group.clone(),
                id,
                attempt,
                outcome,
                took: None,
            });
    }

    /// Sends the waiting acknowledgements when enough wait, the oldest waited long enough, or
    /// the dispatcher is shutting down.
    pub(super) fn maybe_flush_acks(&mut self) {
        if self.acks.is_empty() {
            self.acks_due = None;
            return;
        }
        let now = Instant::now();
        let (batch, linger) = super::prefetch::ack_batching(
            (0..self.r.handlers.len())
                .map(|h| self.prefetch_target(h))
                .sum(),
            ACK_BATCH,
            ACK_LINGER,
        );
        // A batch never waits for more acknowledgements than the record locks let this member
        // hold at once (a fixed prefetch may be far larger): half of them, so the other half
        // is processed while these are answered.
        let batch = batch.min((self.lock_limit() / 2).max(1));
        let due = *self.acks_due.get_or_insert(now + linger);
        if self.acks.len() >= batch || due <= now || self.shutting_down.is_some() {
            self.flush_acks();
        }
    }

    pub(super) fn flush_acks(&mut self) {
        self.acks_due = None;
        if self.acks.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.acks);
        self.settling += batch.len() - self.acks_renew;
        self.acks_renew = 0;
        if self.settle_tx.send(batch).is_err() {
            error!(group = %self.r.group, "the settle task is gone; records come back when their locks expire");
        }
    }
}

/// The acknowledgements in `batch` that end a record's delivery (RENEW keeps it).
fn finals(batch: &[Ack]) -> usize {
    batch.iter().filter(|a| a.1 != AckKind::Renew).count()
}

pub(super) async fn settle_loop(
    member: Arc<dyn Member>,
    mut rx: mpsc::UnboundedReceiver<Vec<Ack>>,
    done: mpsc::UnboundedSender<Completion>,
    group: Arc<str>,
) {
    // The acknowledgements as the broker takes them, and each one's delivery count beside
    // (moved out of the batches, not cloned).
    let mut wire: Vec<(RecordId, AckKind)> = Vec::new();
    let mut attempts: Vec<u16> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut records = 0;
        let mut take = |batch: Vec<Ack>| {
            records += finals(&batch);
            for (id, kind, attempt) in batch {
                wire.push((id, kind));
                attempts.push(attempt);
            }
        };
        take(first);
        while let Ok(more) = rx.try_recv() {
            take(more);
        }
        match member.settle(&wire).await {
            Ok(results) => {
                for (((id, kind), attempt), r) in
                    wire.drain(..).zip(attempts.drain(..)).zip(results)
                {
                    if let Err(error) = r {
                        let _ = done.send(Completion::SettleFailed {
                            id,
                            kind,
                            attempt,
                            error,
                        });
                    }
                }
            }
            Err(e) => {
                error!(group = %group, error = %e, records = wire.len(),
                    "settle request failed; these records come back when their locks expire");
                for ((id, kind), attempt) in wire.drain(..).zip(attempts.drain(..)) {
                    let _ = done.send(Completion::SettleFailed {
                        id,
                        kind,
                        attempt,
                        error: Error::broker(e.to_string()),
                    });
                }
            }
        }
        wire.clear();
        attempts.clear();
        // After the SettleFailed answers: the dispatcher learns of a failure before it counts
        // the lock as free.
        let _ = done.send(Completion::Settled { records });
    }
}
