//! Shutdown: what is queued or held goes back at once (or gets its dead letter, at its last
//! attempt); what still runs when the grace period ends is cancelled and released.

use std::cmp::Reverse;

use tokio::time::Instant;
use tracing::{debug, error, warn};

use super::super::decide::Ending;
use super::super::events::Outcome;
use super::{Dispatcher, Entry, State};

impl Dispatcher {
    pub(super) fn begin_shutdown(&mut self) {
        let grace = self.r.grace;
        debug!(group = %self.r.group, in_flight = self.entries.len(), ?grace, "shutting down");
        self.shutting_down = Some(Instant::now() + grace);
        self.fetch = None;
        self.permit_wait = None;
        // Records that have not started, or wait out a backoff, go back now.
        let queued: Vec<u64> = self.queues.iter_mut().flat_map(|q| q.drain(..)).collect();
        for seq in queued {
            if let Some(e) = self.entries.remove(&seq) {
                self.release(e, "shutdown before it started");
            }
        }
        while let Some(Reverse((_, seq))) = self.held.pop() {
            let Some(e) = self.entries.get(&seq) else {
                continue;
            };
            self.held_count[e.handler] -= 1;
            // Released at (or past) its last attempt, the broker would archive it: it gets its
            // dead letter within the grace period instead.
            let err = e.error.clone().unwrap_or_default();
            self.decide_and_act(seq, Ending::ShutdownWhileHeld, err, None);
        }
    }

    /// The grace period is over: stop what still runs and release it.
    pub(super) fn abandon_all(&mut self) {
        let group = self.r.group.clone();
        let entries: Vec<Entry> = self.entries.drain().map(|(_, e)| e).collect();
        for e in entries {
            match &e.state {
                State::Running(h) => {
                    h.abort();
                    warn!(group = %group, record = %e.id(), attempt = e.attempt(),
                        "still running when the shutdown grace period ended; cancelled and released");
                }
                State::DeadLettering(h) => {
                    h.abort();
                    let hr = &self.r.handlers[e.handler];
                    error!(handler = %hr.name, group = %group, record = %e.id(), attempt = e.attempt(),
                        "the dead-letter write was still unfinished when the shutdown grace period ended; cut off and released: the record is delivered again (and may be dead-lettered twice, if the write had landed), or archived by the broker at its delivery count limit");
                    self.event(
                        e.handler,
                        e.id(),
                        e.attempt(),
                        Outcome::DeadLetterAbandoned,
                        None,
                    );
                }
                State::Queued | State::Held => {
                    warn!(group = %group, record = %e.id(), "still held when the shutdown grace period ended; released");
                }
            }
            self.release(e, "the shutdown grace period ended");
        }
    }
}
