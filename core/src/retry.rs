//! One retry schedule for the runtime's own retry loops (the Kafka producer, admin and reader
//! paths, the share-group heartbeat, dead-letter writes) and the arithmetic of the handlers'
//! configured backoff (`shareworker::BackoffConfig`).
//!
//! The pause before retry `n` (from 1) is `min(max, initial * multiplier^(n-1))`, less up to
//! `jitter` of it at random, so that many clients failing at once do not retry in step.
//!
//! Our own small type rather than a crate: the loops it serves are not "call this future until
//! it succeeds" (the shape of `backon`'s `Retryable`): the heartbeat loop resets its schedule on
//! success and mixes retry pauses with its regular interval, the Kafka loops refresh metadata
//! and re-split batches between tries and index pauses by attempt, and the dead-letter write
//! reports every failed try with its pause. A schedule those loops ask for a pause fits them all.

use std::time::Duration;

/// An exponential backoff schedule with jitter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The pause before the first retry (before jitter).
    pub initial: Duration,
    /// The longest pause (before jitter).
    pub max: Duration,
    /// The factor between consecutive pauses (at least 1.0 for a growing schedule).
    pub multiplier: f64,
    /// The fraction of each pause taken off at random, from 0.0 to 1.0.
    pub jitter: f64,
}

/// The jitter of the runtime's own retry loops.
const JITTER: f64 = 0.2;

impl Backoff {
    /// Doubling from `initial` up to `max`, with up to 20 % taken off at random.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            multiplier: 2.0,
            jitter: JITTER,
        }
    }

    /// The pause before retry `retry` (from 1; 0 counts as 1), without jitter.
    pub fn base(&self, retry: u32) -> Duration {
        let exp = i32::try_from(retry.max(1) - 1).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exp);
        let max = self.max.as_secs_f64();
        Duration::from_secs_f64(if secs.is_finite() {
            secs.clamp(0.0, max)
        } else {
            max
        })
    }

    /// `base` less up to the jitter fraction of it, with `draw` (from `[0, 1)`) as the random
    /// number.
    pub fn jitter_with(&self, base: Duration, draw: f64) -> Duration {
        let cut = (self.jitter * draw).clamp(0.0, 1.0);
        base.mul_f64(1.0 - cut)
    }

    /// The pause before retry `retry` with jitter, drawing `draw` as the random number.
    pub fn delay_with(&self, retry: u32, draw: f64) -> Duration {
        self.jitter_with(self.base(retry), draw)
    }

    /// `base` less up to the jitter fraction of it, at random.
    pub fn jitter(&self, base: Duration) -> Duration {
        self.jitter_with(base, fastrand::f64())
    }

    /// The pause before retry `retry`, with jitter drawn at random.
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_with(retry, fastrand::f64())
    }

    /// A counter of retries on this schedule, for loops that keep it across iterations.
    pub const fn retries(self) -> Retries {
        Retries {
            backoff: self,
            done: 0,
        }
    }
}

/// Retries so far on a [`Backoff`] schedule.
#[derive(Clone, Copy, Debug)]
pub struct Retries {
    backoff: Backoff,
    done: u32,
}

impl Retries {
    /// Counts one more retry and returns the pause before it.
    pub fn next_pause(&mut self) -> Duration {
        self.done = self.done.saturating_add(1);
        self.backoff.delay(self.done)
    }

    /// How many pauses were handed out since the start or the last [`Retries::reset`].
    pub fn count(&self) -> u32 {
        self.done
    }

    /// Starts the schedule over (after a success).
    pub fn reset(&mut self) {
        self.done = 0;
    }
}

/// A part of a handler's backoff setting that breaks the rules, and why.
///
/// The rules are checked here, once, for both places a backoff is written: the `#[job]`
/// attribute (at compile time) and the configuration (when a worker starts).
#[derive(Clone, Debug, PartialEq)]
pub struct BackoffProblem {
    /// The part: `initial`, `multiplier` or `jitter`.
    pub part: &'static str,
    /// What is wrong, as the end of a sentence about the part ("must be ...").
    pub message: String,
}

/// Checks the parts of a backoff that are given: `multiplier` a number of at least 1.0,
/// `jitter` from 0.0 to 1.0, `initial` not above `max` (when both are given). Returns every
/// problem found, in that order.
///
/// ```
/// use std::time::Duration;
/// use shareworker_core::retry::check_backoff;
///
/// let problems = check_backoff(Some(Duration::from_secs(60)), Some(Duration::from_secs(1)), Some(0.5), None);
/// assert_eq!(problems.len(), 2);
/// assert_eq!(problems[0].part, "multiplier");
/// assert_eq!(problems[1].message, "must not exceed `max` (1m > 1s)");
/// ```
pub fn check_backoff(
    initial: Option<Duration>,
    max: Option<Duration>,
    multiplier: Option<f64>,
    jitter: Option<f64>,
) -> Vec<BackoffProblem> {
    let mut problems = Vec::new();
    if let Some(m) = multiplier
        && !(m >= 1.0 && m.is_finite())
    {
        problems.push(BackoffProblem {
            part: "multiplier",
            message: format!("must be a number of at least 1.0, got {m}"),
        });
    }
    if let Some(j) = jitter
        && !(0.0..=1.0).contains(&j)
    {
        problems.push(BackoffProblem {
            part: "jitter",
            message: format!("must be between 0.0 and 1.0, got {j}"),
        });
    }
    if let (Some(initial), Some(max)) = (initial, max)
        && initial > max
    {
        problems.push(BackoffProblem {
            part: "initial",
            message: format!(
                "must not exceed `max` ({} > {})",
                humantime::format_duration(initial),
                humantime::format_duration(max)
            ),
        });
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_rules() {
        let s = Duration::from_secs;
        assert!(check_backoff(Some(s(1)), Some(s(1)), Some(1.0), Some(0.0)).is_empty());
        assert!(check_backoff(None, None, Some(f64::MAX), Some(1.0)).is_empty());
        let parts = |p: Vec<BackoffProblem>| p.iter().map(|p| p.part).collect::<Vec<_>>();
        assert_eq!(
            parts(check_backoff(None, None, Some(0.99), None)),
            ["multiplier"]
        );
        assert_eq!(
            parts(check_backoff(None, None, Some(f64::NAN), None)),
            ["multiplier"]
        );
        assert_eq!(
            parts(check_backoff(None, None, Some(f64::INFINITY), None)),
            ["multiplier"]
        );
        assert_eq!(
            parts(check_backoff(None, None, None, Some(-0.1))),
            ["jitter"]
        );
        assert_eq!(
            parts(check_backoff(None, None, None, Some(1.01))),
            ["jitter"]
        );
        assert_eq!(
            parts(check_backoff(None, None, None, Some(f64::NAN))),
            ["jitter"]
        );
        assert_eq!(
            parts(check_backoff(Some(s(2)), Some(s(1)), None, None)),
            ["initial"]
        );
        // Only one of initial and max: nothing to compare.
        assert!(check_backoff(Some(s(2)), None, None, None).is_empty());
        assert_eq!(
            check_backoff(None, None, Some(0.5), None)[0].message,
            "must be a number of at least 1.0, got 0.5"
        );
    }

    const MS: Duration = Duration::from_millis(1);

    fn ms(d: Duration) -> u128 {
        d.as_millis()
    }

    #[test]
    fn grows_by_its_multiplier_up_to_the_cap() {
        let b = Backoff::new(100 * MS, 1000 * MS);
        let pauses: Vec<u128> = (1..=7).map(|n| ms(b.base(n))).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000, 1000]);
        // 0 counts as the first retry; huge counts stay at the cap.
        assert_eq!(b.base(0), 100 * MS);
        assert_eq!(b.base(u32::MAX), 1000 * MS);
        let triple = Backoff {
            multiplier: 3.0,
            ..Backoff::new(MS, Duration::from_secs(60))
        };
        assert_eq!(ms(triple.base(4)), 27);
    }

    #[test]
    fn an_overflowing_schedule_stays_at_the_cap() {
        let b = Backoff {
            multiplier: 1e300,
            ..Backoff::new(Duration::from_secs(1), Duration::from_secs(300))
        };
        assert_eq!(b.base(3), Duration::from_secs(300));
        assert_eq!(b.base(40), Duration::from_secs(300));
    }

    #[test]
    fn jitter_takes_off_at_most_its_fraction() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        assert_eq!(b.delay_with(1, 0.0), Duration::from_secs(1));
        assert_eq!(b.delay_with(1, 0.5), 900 * MS);
        // The draw is below 1: the pause stays above 80 % of the base.
        assert!(b.delay_with(2, 0.999_999) > 1600 * MS);
        for n in 1..=10 {
            let base = b.base(n);
            for _ in 0..200 {
                let d = b.delay(n);
                assert!(d <= base, "retry {n}: {d:?} above {base:?}");
                assert!(
                    d >= base.mul_f64(0.8),
                    "retry {n}: {d:?} below 80 % of {base:?}"
                );
            }
        }
        let none = Backoff { jitter: 0.0, ..b };
        assert_eq!(none.delay(3), Duration::from_secs(4));
        // A jitter past 1 never makes a negative pause.
        let wild = Backoff { jitter: 5.0, ..b };
        assert_eq!(wild.delay_with(1, 0.9), Duration::ZERO);
    }

    #[test]
    fn retries_count_and_start_over() {
        let mut r = Backoff {
            jitter: 0.0,
            ..Backoff::new(100 * MS, 300 * MS)
        }
        .retries();
        let first: Vec<u128> = (0..4).map(|_| ms(r.next_pause())).collect();
        assert_eq!(first, [100, 200, 300, 300]);
        assert_eq!(r.count(), 4);
        r.reset();
        assert_eq!(r.count(), 0);
        assert_eq!(r.next_pause(), 100 * MS);
    }
}
