//! What becomes of a record when its handler ends, or when anything else brings its fate up (its
//! backoff delay ran out, shutdown began while it waited, it ran past the maximum lease, its
//! lock was lost): one pure function, [`decide`], from the facts to a [`Decision`].
//!
//! The dispatcher (`group.rs`) gathers the facts, calls it, and does the I/O the decision names:
//! acknowledgements, the dead-letter write, log lines, events and metrics. Nothing here reads a
//! clock, draws a random number or touches the broker, so every combination of inputs is tested
//! in one table below.

use std::time::Duration;

use crate::config::BackoffConfig;

/// How an attempt ended, or what else brings a record's fate up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Ending {
    /// The handler succeeded.
    Succeeded,
    /// The handler failed and may be retried; `after` is the delay it asked for (the handler's
    /// backoff formula otherwise).
    Failed { after: Option<Duration> },
    /// The handler failed for good ([`crate::JobError::permanent`]).
    FailedPermanently,
    /// The handler ran past the maximum lease and was cancelled.
    LeaseExpired,
    /// A held record waited out its backoff delay.
    BackoffOver,
    /// Shutdown began while the record waited out its backoff delay.
    ShutdownWhileHeld,
}

/// Where a record goes when the worker gives up on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// The group has the broker's dead-letter queue (KIP-1191): reject, the broker writes it.
    Broker,
    /// The handler's dead-letter topic: the worker writes it, then rejects the original.
    Topic,
    /// Dead-lettering is off: reject only.
    Off,
}

/// Everything [`decide`] looks at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Facts {
    /// What happened.
    pub(crate) ending: Ending,
    /// The delivery count of this delivery.
    pub(crate) attempt: u16,
    /// The handler's own `max_attempts`, if set.
    pub(crate) max_attempts: Option<u16>,
    /// The group's delivery count limit as the broker has it now.
    pub(crate) delivery_limit: u16,
    /// The handler's backoff formula.
    pub(crate) backoff: BackoffConfig,
    /// A number drawn from `[0, 1)` for the backoff's jitter.
    pub(crate) jitter_draw: f64,
    /// How many of the handler's records wait out a backoff now.
    pub(crate) held: u32,
    /// The most the handler may hold.
    pub(crate) max_held: u32,
    /// Shutdown has begun.
    pub(crate) shutting_down: bool,
    /// A renewal failed: the broker gave the record to another delivery, which this member
    /// must never settle.
    pub(crate) lock_lost: bool,
    /// Where a record goes when given up on.
    pub(crate) route: Route,
}

/// Why a record goes back to the broker to be delivered again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReleaseWhy {
    /// It failed and cannot be held (shutdown, too many held, or no delay): released at once.
    RetryNow,
    /// Its backoff delay ran out.
    BackoffOver,
    /// Shutdown began while it waited out its backoff.
    Shutdown,
    /// It ran past the maximum lease.
    LeaseExpired,
}

impl ReleaseWhy {
    /// For the log line.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ReleaseWhy::RetryNow => "failed, to be retried",
            ReleaseWhy::BackoffOver => "after its backoff",
            ReleaseWhy::Shutdown => "shutdown while it waited out its backoff",
            ReleaseWhy::LeaseExpired => "ran past the maximum lease",
        }
    }
}

/// Why the worker gives up on a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GiveUp {
    /// Its failure is permanent.
    Permanent,
    /// Its last attempt failed.
    LastAttempt,
    /// Its last attempt was cancelled at the maximum lease.
    LastAttemptCancelled,
    /// It waited out its backoff while the delivery count limit was lowered to its attempt.
    LimitLowered,
}

impl GiveUp {
    /// For the log line.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            GiveUp::Permanent => "permanent failure",
            GiveUp::LastAttempt => "last attempt failed",
            GiveUp::LastAttemptCancelled => "last attempt cancelled",
            GiveUp::LimitLowered => {
                "last attempt failed: the group's delivery count limit was lowered"
            }
        }
    }
}

/// What the dispatcher does with the record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Decision {
    /// Accept it (`settle` is false when its lock was lost: nothing is acknowledged).
    Accept { settle: bool },
    /// Hold it (its lock renewed) for `delay`, then decide again ([`Ending::BackoffOver`]).
    Hold { delay: Duration },
    /// Release it for another delivery. `archived`: it is at the delivery count limit, so the
    /// broker archives it instead (counted and logged). `settle` as for `Accept`.
    Release {
        why: ReleaseWhy,
        settle: bool,
        archived: bool,
    },
    /// Reject it: the broker writes it to the group's dead-letter topic.
    BrokerDeadLetter { why: GiveUp, settle: bool },
    /// Write it to the handler's dead-letter topic, then reject it.
    DeadLetter { why: GiveUp },
    /// Reject it (dead-lettering is off).
    Reject { why: GiveUp, settle: bool },
}

pub(crate) use crate::limits::max_attempts;

/// Whether a record released now is archived by the broker: at (or past) the delivery count
/// limit, unless its lock was lost (then it is not this member's to release).
pub(crate) fn archived_on_release(attempt: u16, limit: u16, lock_lost: bool) -> bool {
    !lock_lost && attempt >= limit
}

/// Whether a record whose lock was just lost is archived by the broker when that lock expires:
/// at its last delivery, unless its dead letter is being written (that still lands).
pub(crate) fn archived_on_lost_lock(attempt: u16, limit: u16, dead_lettering: bool) -> bool {
    attempt >= limit && !dead_lettering
}

/// The record's fate.
pub(crate) fn decide(f: &Facts) -> Decision {
    let settle = !f.lock_lost;
    let last = f.attempt >= max_attempts(f.max_attempts, f.delivery_limit);
    let release = |why| Decision::Release {
        why,
        settle,
        archived: archived_on_release(f.attempt, f.delivery_limit, f.lock_lost),
    };
    let give_up = |why| match f.route {
        Route::Broker => Decision::BrokerDeadLetter { why, settle },
        Route::Topic => Decision::DeadLetter { why },
        Route::Off => Decision::Reject { why, settle },
    };
    match f.ending {
        Ending::Succeeded => Decision::Accept { settle },
        Ending::FailedPermanently => give_up(GiveUp::Permanent),
        Ending::Failed { .. } if last => give_up(GiveUp::LastAttempt),
        Ending::Failed { after } => {
            let delay = after.unwrap_or_else(|| f.backoff.delay_with(f.attempt, f.jitter_draw));
            if !f.shutting_down && f.held < f.max_held && !delay.is_zero() {
                Decision::Hold { delay }
            } else {
                release(ReleaseWhy::RetryNow)
            }
        }
        Ending::LeaseExpired if last => give_up(GiveUp::LastAttemptCancelled),
        Ending::LeaseExpired => release(ReleaseWhy::LeaseExpired),
        // Released at (or past) its last attempt, the broker would archive it.
        Ending::BackoffOver if last => give_up(GiveUp::LimitLowered),
        Ending::BackoffOver => release(ReleaseWhy::BackoffOver),
        Ending::ShutdownWhileHeld if last => give_up(GiveUp::LastAttempt),
        Ending::ShutdownWhileHeld => release(ReleaseWhy::Shutdown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// Classes of each input; the table covers their product.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Attempt {
        /// Below the handler's max attempts (and the limit).
        Early,
        /// At the handler's max attempts, below the delivery limit.
        LastByConfig,
        /// At the delivery limit.
        AtLimit,
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Room {
        /// Room to hold.
        Free,
        /// `max_held` reached.
        Full,
    }

    fn facts(
        ending: Ending,
        attempt: Attempt,
        room: Room,
        down: bool,
        lost: bool,
        route: Route,
    ) -> Facts {
        Facts {
            ending,
            attempt: match attempt {
                Attempt::Early => 1,
                Attempt::LastByConfig => 3,
                Attempt::AtLimit => 5,
            },
            max_attempts: Some(match attempt {
                Attempt::AtLimit => 9,
                _ => 3,
            }),
            delivery_limit: 5,
            backoff: BackoffConfig::default(),
            jitter_draw: 0.5,
            held: 10,
            max_held: match room {
                Room::Free => 11,
                Room::Full => 10,
            },
            shutting_down: down,
            lock_lost: lost,
            route,
        }
    }

    /// The expected decision of one row, written out case by case.
    fn expected(
        ending: Ending,
        attempt: Attempt,
        room: Room,
        down: bool,
        lost: bool,
        route: Route,
    ) -> Decision {
        use Decision as D;
        let settle = !lost;
        let last = attempt != Attempt::Early;
        let archived = attempt == Attempt::AtLimit && !lost;
        let give_up = |why| match route {
            Route::Broker => D::BrokerDeadLetter { why, settle },
            Route::Topic => D::DeadLetter { why },
            Route::Off => D::Reject { why, settle },
        };
        match (ending, last) {
            (Ending::Succeeded, _) => D::Accept { settle },
            (Ending::FailedPermanently, _) => give_up(GiveUp::Permanent),
            (Ending::Failed { .. }, true) => give_up(GiveUp::LastAttempt),
            // Attempt 1 of the default backoff: 1 s, less half the 10 % jitter.
            (Ending::Failed { after: None }, false) if !down && room == Room::Free => D::Hold {
                delay: Duration::from_millis(950),
            },
            (Ending::Failed { after: Some(d) }, false)
                if !down && room == Room::Free && !d.is_zero() =>
            {
                D::Hold { delay: d }
            }
            (Ending::Failed { .. }, false) => D::Release {
                why: ReleaseWhy::RetryNow,
                settle,
                archived,
            },
            (Ending::LeaseExpired, true) => give_up(GiveUp::LastAttemptCancelled),
            (Ending::LeaseExpired, false) => D::Release {
                why: ReleaseWhy::LeaseExpired,
                settle,
                archived,
            },
            (Ending::BackoffOver, true) => give_up(GiveUp::LimitLowered),
            (Ending::BackoffOver, false) => D::Release {
                why: ReleaseWhy::BackoffOver,
                settle,
                archived,
            },
            (Ending::ShutdownWhileHeld, true) => give_up(GiveUp::LastAttempt),
            (Ending::ShutdownWhileHeld, false) => D::Release {
                why: ReleaseWhy::Shutdown,
                settle,
                archived,
            },
        }
    }

    #[test]
    fn every_combination_has_its_decision() {
        let endings = [
            Ending::Succeeded,
            Ending::Failed { after: None },
            Ending::Failed { after: Some(7 * S) },
            Ending::Failed {
                after: Some(Duration::ZERO),
            },
            Ending::FailedPermanently,
            Ending::LeaseExpired,
            Ending::BackoffOver,
            Ending::ShutdownWhileHeld,
        ];
        let mut rows = 0;
        for ending in endings {
            for attempt in [Attempt::Early, Attempt::LastByConfig, Attempt::AtLimit] {
                for room in [Room::Free, Room::Full] {
                    for down in [false, true] {
                        for lost in [false, true] {
                            for route in [Route::Broker, Route::Topic, Route::Off] {
                                let f = facts(ending, attempt, room, down, lost, route);
                                let want = expected(ending, attempt, room, down, lost, route);
                                assert_eq!(
                                    decide(&f),
                                    want,
                                    "{ending:?} {attempt:?} {room:?} shutting_down={down} lock_lost={lost} {route:?}"
                                );
                                rows += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(rows, 8 * 3 * 2 * 2 * 2 * 3);
    }

    /// A few rows spelled out in full, as a reader would look them up.
    #[test]
    fn named_rows() {
        use Decision as D;
        let f = |ending, attempt, room, down, lost, route| {
            decide(&facts(ending, attempt, room, down, lost, route))
        };
        let (e, l, z) = (Attempt::Early, Attempt::LastByConfig, Attempt::AtLimit);
        let failed = Ending::Failed { after: None };
        assert_eq!(
            f(Ending::Succeeded, e, Room::Free, false, false, Route::Topic),
            D::Accept { settle: true }
        );
        assert_eq!(
            f(Ending::Succeeded, e, Room::Free, false, true, Route::Topic),
            D::Accept { settle: false }
        );
        assert_eq!(
            f(failed, e, Room::Free, false, false, Route::Topic),
            D::Hold {
                delay: Duration::from_millis(950)
            }
        );
        assert_eq!(
            f(failed, e, Room::Full, false, false, Route::Topic),
            D::Release {
                why: ReleaseWhy::RetryNow,
                settle: true,
                archived: false
            }
        );
        assert_eq!(
            f(failed, e, Room::Free, true, false, Route::Topic),
            D::Release {
                why: ReleaseWhy::RetryNow,
                settle: true,
                archived: false
            }
        );
        assert_eq!(
            f(failed, l, Room::Free, false, false, Route::Topic),
            D::DeadLetter {
                why: GiveUp::LastAttempt
            }
        );
        assert_eq!(
            f(failed, z, Room::Free, false, false, Route::Broker),
            D::BrokerDeadLetter {
                why: GiveUp::LastAttempt,
                settle: true
            }
        );
        assert_eq!(
            f(
                Ending::FailedPermanently,
                e,
                Room::Free,
                false,
                false,
                Route::Off
            ),
            D::Reject {
                why: GiveUp::Permanent,
                settle: true
            }
        );
        assert_eq!(
            f(
                Ending::BackoffOver,
                l,
                Room::Free,
                false,
                false,
                Route::Topic
            ),
            D::DeadLetter {
                why: GiveUp::LimitLowered
            }
        );
        assert_eq!(
            f(
                Ending::LeaseExpired,
                e,
                Room::Free,
                false,
                false,
                Route::Topic
            ),
            D::Release {
                why: ReleaseWhy::LeaseExpired,
                settle: true,
                archived: false
            }
        );
        assert_eq!(
            f(Ending::LeaseExpired, z, Room::Free, true, true, Route::Off),
            D::Reject {
                why: GiveUp::LastAttemptCancelled,
                settle: false
            }
        );
    }

    #[test]
    fn archiving_at_the_limit() {
        // release: attempt vs limit, lock lost
        for (attempt, limit, lost, want) in [
            (4, 5, false, false),
            (5, 5, false, true),
            (6, 5, false, true),
            (5, 5, true, false),
            (1, 0, false, true),
        ] {
            assert_eq!(
                archived_on_release(attempt, limit, lost),
                want,
                "{attempt} {limit} {lost}"
            );
        }
        // lost lock: attempt vs limit, dead letter under way
        for (attempt, limit, dl, want) in [
            (4, 5, false, false),
            (5, 5, false, true),
            (5, 5, true, false),
            (6, 5, true, false),
        ] {
            assert_eq!(
                archived_on_lost_lock(attempt, limit, dl),
                want,
                "{attempt} {limit} {dl}"
            );
        }
    }
}
