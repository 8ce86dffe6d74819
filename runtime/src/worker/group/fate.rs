//! The I/O of a record's fate: the dispatcher gathers the facts, [`decide`] chooses, and this
//! carries the choice out (acknowledgements, the dead-letter write, log lines, events, metrics).

use std::cmp::Reverse;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tracing::{debug, error, warn};

use super::super::decide::{self, Decision, Ending, Facts, ReleaseWhy, Route, decide};
use super::super::events::{JobEvent, Outcome};
use super::settle::push_ack;
use super::{Completion, Dispatcher, Entry, Observed, State};
use crate::Error;
use crate::broker::{AckKind, RecordId};
use crate::config::DeadLetter;
use crate::dead_letter;
use crate::job::{JobError, Verdict};
use crate::metrics::HandlerMetrics;

impl Dispatcher {
    /// The facts [`decide`] needs about record `e`.
    fn facts(&self, e: &Entry, ending: Ending) -> Facts {
        let hr = &self.r.handlers[e.handler];
        Facts {
            ending,
            attempt: e.attempt(),
            max_attempts: hr.config.max_attempts,
            delivery_limit: self.r.limit.get(),
            backoff: hr.config.backoff,
            jitter_draw: fastrand::f64(),
            held: self.held_count[e.handler],
            max_held: hr.config.max_held,
            shutting_down: self.shutting_down.is_some(),
            lock_lost: e.lost,
            route: match (&hr.broker_dead_letter, &hr.config.dead_letter) {
                (Some(_), _) => Route::Broker,
                (None, DeadLetter::Topic(_)) => Route::Topic,
                (None, DeadLetter::Off) => Route::Off,
            },
        }
    }

    /// Decides the fate of record `seq` after `ending` and carries it out; `error` is its last
    /// error (for a retry, a dead letter or a rejection).
    pub(super) fn decide_and_act(
        &mut self,
        seq: u64,
        ending: Ending,
        error: String,
        took: Option<Duration>,
    ) {
        let Some(e) = self.entries.get(&seq) else {
            return;
        };
        let decision = decide(&self.facts(e, ending));
        self.act(seq, decision, error, took);
    }

    fn act(&mut self, seq: u64, decision: Decision, error: String, took: Option<Duration>) {
        let Some(e) = self.entries.get(&seq) else {
            return;
        };
        let (h, attempt) = (e.handler, e.attempt());
        if let Decision::Accept { settle } = decision {
            if settle {
                self.event(h, e.id(), attempt, Outcome::Accepted, took);
            } else {
                warn!(handler = %self.r.handlers[h].name, record = %e.id(), attempt,
                    "job succeeded after its lock was lost: not acknowledged; the broker delivers the record again (or archives it at its delivery count limit)");
                self.event(h, e.id(), attempt, Outcome::SucceededAfterLockLost, took);
            }
            self.settle(seq, AckKind::Accept, settle);
            return;
        }
        let id = e.id().clone();
        match decision {
            Decision::Accept { .. } => {}
            Decision::Hold { delay } => {
                self.retrying(h, &id, attempt, delay, &error, took);
                if let Some(e) = self.entries.get_mut(&seq) {
                    e.state = State::Held;
                    e.error = Some(error);
                }
                self.held_count[h] += 1;
                self.held.push(Reverse((Instant::now() + delay, seq)));
            }
            Decision::Release {
                why,
                settle,
                archived,
            } => {
                // A record that cannot be held (shutdown, too many held) goes back at once.
                if why == ReleaseWhy::RetryNow {
                    self.retrying(h, &id, attempt, Duration::ZERO, &error, took);
                }
                if archived {
                    self.archived(
                        h,
                        &id,
                        attempt,
                        format!("released at its last delivery: {}", why.as_str()),
                    );
                }
                self.settle(seq, AckKind::Release, settle);
            }
            Decision::BrokerDeadLetter { .. }
            | Decision::DeadLetter { .. }
            | Decision::Reject { .. } => {
                self.give_up(seq, error, decision, took);
            }
        }
    }

    /// Removes record `seq` and queues its acknowledgement, unless `settle` is false (its lock
    /// was lost: the broker has given it to another delivery, which this must not settle).
    fn settle(&mut self, seq: u64, kind: AckKind, settle: bool) {
        if let Some(e) = self.entries.remove(&seq)
            && settle
        {
            let attempt = e.attempt();
            self.acks.push((e.into_id(), kind, attempt));
        }
    }

    /// A failed record goes back after `delay`: a log line and an event.
    fn retrying(
        &self,
        h: usize,
        id: &RecordId,
        attempt: u16,
        delay: Duration,
        error: &str,
        took: Option<Duration>,
    ) {
        let hr = &self.r.handlers[h];
        warn!(handler = %hr.name, record = %id, attempt, max_attempts = self.max_attempts(h),
            delay = %crate::duration::Short(delay), error = %error, "job failed; retrying after backoff");
        self.event(
            h,
            id,
            attempt,
            Outcome::Retrying {
                delay,
                error: error.to_owned(),
            },
            took,
        );
    }

    /// Releases a record. At (or past) the delivery count limit the broker archives it instead
    /// of delivering it again: that is counted and logged, never silent.
    pub(super) fn release(&mut self, e: Entry, why: &str) {
        if decide::archived_on_release(e.attempt(), self.r.limit.get(), e.lost) {
            self.archived(
                e.handler,
                e.id(),
                e.attempt(),
                format!("released at its last delivery: {why}"),
            );
        }
        push_ack(&mut self.acks, e, AckKind::Release);
    }

    /// The broker archives (or archived) a record at its delivery count limit, with no dead
    /// letter: a metric, an error log line and an event.
    pub(super) fn archived(&self, h: usize, id: &RecordId, attempt: u16, reason: String) {
        let hr = &self.r.handlers[h];
        error!(handler = %hr.name, group = %self.r.group, record = %id, attempt,
            delivery_count_limit = self.r.limit.get(), reason = %reason,
            "the broker archives this record at its delivery count limit, without a dead letter; its original stays in the topic until retention deletes it");
        self.event(h, id, attempt, Outcome::Archived { reason }, None);
    }

    pub(super) fn on_finished(&mut self, seq: u64, result: Result<(), JobError>, took: Duration) {
        let Some(entry) = self.entries.get(&seq) else {
            return; // abandoned at the end of the grace period or the lease
        };
        let h = entry.handler;
        self.running[h] -= 1;
        let outcome = match &result {
            Ok(()) => "succeeded",
            Err(e) if e.is_permanent() => "failed permanently",
            Err(_) => "failed",
        };
        debug!(handler = %self.r.handlers[h].name, record = %entry.id(), attempt = entry.attempt(),
            outcome, took = %crate::duration::Short(took), "job finished");
        // The limit as the broker has it now (re-read at every refresh): a record failing at
        // or past it is dead-lettered, since released it would be archived.
        let (ending, error) = match result {
            Ok(()) => (Ending::Succeeded, String::new()),
            Err(err) => match err.verdict() {
                Verdict::Retry(after) => (Ending::Failed { after }, err.to_string()),
                Verdict::Permanent => (Ending::FailedPermanently, err.to_string()),
            },
        };
        self.decide_and_act(seq, ending, error, Some(took));
    }

    /// The record's last attempt failed (or its failure is permanent): its dead letter, written
    /// by the broker or by us, or its rejection when dead-lettering is off.
    fn give_up(&mut self, seq: u64, err: String, decision: Decision, took: Option<Duration>) {
        let Some(entry) = self.entries.get(&seq) else {
            return;
        };
        let (h, attempt, id) = (entry.handler, entry.attempt(), entry.id().clone());
        let hr = &self.r.handlers[h];
        let (why, settle) = match decision {
            Decision::BrokerDeadLetter { why, settle } | Decision::Reject { why, settle } => {
                (why, settle)
            }
            Decision::DeadLetter { why } => (why, !entry.lost),
            Decision::Accept { .. } | Decision::Hold { .. } | Decision::Release { .. } => return,
        };
        let why = why.as_str();
        if let (Decision::BrokerDeadLetter { .. }, Some(topic)) =
            (decision, hr.broker_dead_letter.clone())
        {
            error!(handler = %hr.name, record = %id, attempt, broker_dead_letter = %topic,
                error = %err, "job failed ({why}); rejecting it: the broker writes it to its dead-letter topic");
            self.event(
                h,
                &id,
                attempt,
                Outcome::DeadLetteredByBroker {
                    topic: topic.to_string(),
                    error: err,
                },
                took,
            );
            self.settle(seq, AckKind::Reject, settle);
            return;
        }
        match (decision, hr.config.dead_letter.clone()) {
            (Decision::DeadLetter { .. }, DeadLetter::Topic(topic)) => {
                error!(handler = %hr.name, record = %id, attempt, dead_letter = %topic,
                    error = %err, "job failed ({why}); sending it to the dead-letter topic");
                let original = entry.meta.delivery.clone();
                let job = dead_letter::DeadLetterJob {
                    topic,
                    group: self.r.group.clone(),
                    handler: hr.name.clone(),
                    id: id.clone(),
                    attempt,
                    error: err.clone(),
                    at: SystemTime::now(),
                    original,
                    metrics: hr.metrics.clone(),
                };
                let broker = self.r.broker.clone();
                let done = self.done_tx.clone();
                let task = tokio::spawn(async move {
                    let tell = done.clone();
                    job.write(&*broker, move |error, tries, pause| {
                        let _ = tell.send(Completion::DeadLetterTryFailed {
                            seq,
                            error,
                            tries,
                            pause,
                        });
                    })
                    .await;
                    let _ = done.send(Completion::DeadLettered { seq });
                });
                if let Some(e) = self.entries.get_mut(&seq) {
                    e.state = State::DeadLettering(task.abort_handle());
                }
                self.event(h, &id, attempt, Outcome::DeadLettering { error: err }, took);
            }
            _ => {
                error!(handler = %hr.name, record = %id, attempt, error = %err,
                    "job failed ({why}); rejecting it (no dead-letter topic)");
                self.event(h, &id, attempt, Outcome::Rejected { error: err }, took);
                self.settle(seq, AckKind::Reject, settle);
            }
        }
    }

    pub(super) fn on_dead_lettered(&mut self, seq: u64) {
        let Some(e) = self.entries.remove(&seq) else {
            return;
        };
        let (h, id, attempt) = (e.handler, e.id().clone(), e.attempt());
        push_ack(&mut self.acks, e, AckKind::Reject);
        self.event(h, &id, attempt, Outcome::DeadLettered, None);
    }

    /// A dead-letter write failed once: the record stays acquired (renewed with the others)
    /// and the write goes on; an operator sees a metric, an error line and an event.
    pub(super) fn on_dead_letter_try_failed(
        &mut self,
        seq: u64,
        error: &Error,
        tries: u32,
        pause: Duration,
    ) {
        let Some(e) = self.entries.get(&seq) else {
            return;
        };
        let (h, id, attempt) = (e.handler, e.id().clone(), e.attempt());
        let hr = &self.r.handlers[h];
        let topic = match &hr.config.dead_letter {
            DeadLetter::Topic(t) => t.as_str(),
            DeadLetter::Off => "",
        };
        if error.is_not_authorized() {
            // Not a blip: it lasts until an operator grants the ACL.
            error!(handler = %hr.name, group = %self.r.group, record = %id, attempt, dead_letter = %topic,
                tries, error = %error, missing_acl = %format!("Write on Topic:{topic}"),
                "cannot write the dead letter: the worker's principal needs the Write ACL on the dead-letter topic; the record stays held (its lock renewed) and the write is tried again in {}",
                crate::duration::Short(pause));
        } else {
            error!(handler = %hr.name, group = %self.r.group, record = %id, attempt, dead_letter = %topic,
                tries, error = %error,
                "writing the dead letter failed; the record stays held (its lock renewed) and the write is tried again in {}",
                crate::duration::Short(pause));
        }
        self.event(
            h,
            &id,
            attempt,
            Outcome::DeadLetterFailed {
                error: error.to_string(),
            },
            None,
        );
    }

    /// A handler ran for `max_lease`: cancelled, and its record released, or dead-lettered on
    /// its last attempt.
    pub(super) fn lease_expired(&mut self, seq: u64, now: Instant) {
        // Gone already: finished, or abandoned at the end of the grace period.
        let Some(e) = self.entries.get(&seq) else {
            return;
        };
        let State::Running(task) = &e.state else {
            return;
        };
        task.abort();
        let h = e.handler;
        self.running[h] -= 1;
        let took = now.duration_since(e.lease_from);
        let decision = decide(&self.facts(e, Ending::LeaseExpired));
        let hr = &self.r.handlers[h];
        let max_lease = crate::duration::Short(self.r.max_lease);
        if let Decision::Release { .. } = decision {
            error!(handler = %hr.name, record = %e.id(), max_lease = %max_lease,
                "handler ran past the maximum lease; cancelled it and released the record");
            count(
                &hr.metrics,
                &self.observed[h],
                e.attempt(),
                &Outcome::LeaseExpired,
                Some(took),
            );
        } else {
            // Its last attempt: released, the broker would archive it.
            hr.metrics.lease_expired.inc();
        }
        self.r
            .events
            .emit(Outcome::LeaseExpired, |outcome| JobEvent {
                handler: hr.name.clone(),
                group: self.r.group.clone(),
                id: e.id().clone(),
                attempt: e.attempt(),
                outcome,
                took: Some(took),
            });
        let error = format!("ran past the maximum lease ({max_lease})");
        self.act(seq, decision, error, Some(took));
    }
}

/// Counts an outcome in the handler's metrics.
pub(super) fn count(
    m: &HandlerMetrics,
    o: &Observed,
    attempt: u16,
    outcome: &Outcome,
    took: Option<Duration>,
) {
    if let Some(t) = took
        && !matches!(outcome, Outcome::DeadLettered | Outcome::LockRenewed)
    {
        o.duration.observe(t.as_secs_f64());
    }
    let settled_for_good = match outcome {
        Outcome::Accepted => {
            m.accepted.inc();
            true
        }
        Outcome::Retrying { .. } => {
            m.released.inc();
            false
        }
        Outcome::LeaseExpired => {
            m.lease_expired.inc();
            m.released.inc();
            false
        }
        Outcome::DeadLettered | Outcome::DeadLetteredByBroker { .. } => {
            m.dead_lettered.inc();
            true
        }
        Outcome::DeadLetterFailed { .. } => {
            m.dead_letter_failures.inc();
            false
        }
        Outcome::DeadLetterAbandoned => {
            m.dead_letters_abandoned.inc();
            m.released.inc();
            false
        }
        Outcome::Archived { .. } => {
            m.archived.inc();
            false
        }
        Outcome::Rejected { .. } => {
            m.rejected.inc();
            true
        }
        _ => false,
    };
    if settled_for_good && attempt > 0 {
        o.attempts.observe(f64::from(attempt));
    }
}
