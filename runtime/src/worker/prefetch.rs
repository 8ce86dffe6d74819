//! The automatic prefetch (`prefetch = "auto"`, the default): how many records a handler
//! acquires ahead of its free slots, sized from what the dispatcher measures.
//!
//! Little's law: while one fetch is on its way, a handler finishing `rate` jobs a second needs
//! `rate x round trip` records queued to keep its slots busy. The target is that times
//! [`HEADROOM`], and at least `rate x` [`AHEAD_TIME`] (fewer, larger fetches: the broker's cost
//! is per request more than per record), bounded so that
//! - the last queued record starts within [`LOCK_SHARE`] of its lock ([`target`] has the
//!   arithmetic): a slow handler keeps a small prefetch, and holds no records other members
//!   could run (no head-of-line blocking);
//! - the records held stay under half the group's lock limit (`share.partition.max.record.locks`
//!   times the partitions seen), minus the handler's slots (acknowledgements waiting to go
//!   hold locks too, see [`ack_batching`]);
//! - the records queued stay under `prefetch_max_records` and, at the measured mean record
//!   size, `prefetch_max_bytes`.
//!
//! The round trip is the shortest of the last [`ROUND_TRIPS`] fetches that brought records: an
//! acquire that brought records may also have waited (for a fetch already in flight, for
//! records to arrive), and waiting is not distance. Taking the minimum, as TCP's BBR does with
//! its `min_rtt`, keeps one slow answer from blowing up a slow handler's target for several
//! windows. The first answer is no round trip at all: it includes joining the group and the
//! group's assignment (`share.assignment.interval.ms`, a second by default), so until a second
//! fetch brings records the target stays where it is.
//!
//! Before the first measurement the target is [`INITIAL`]. A handler starved by its fetches
//! finishes about as many jobs per round trip as a fetch brings, so with a headroom of 2 the
//! target doubles each window until a bound or the handler's own speed holds it.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::broker::Delivery;

/// From this total prefetch target on, acknowledgements wait longer to go together.
pub(crate) const QUICK_FROM: usize = 256;
/// How long acknowledgements of quick handlers wait for more.
pub(crate) const QUICK_ACK_LINGER: Duration = Duration::from_millis(20);

/// Records wanted ahead = rate x round trip x this...
pub(crate) const HEADROOM: f64 = 2.0;
/// ...and at least rate x this: a fetch costs the broker about the same whatever it brings, so
/// a quick handler fetches about every 50 ms (half of this, as the queue refills at half its
/// target) instead of every round trip. A slow handler's rate makes this a record or two.
pub(crate) const AHEAD_TIME: Duration = Duration::from_millis(100);
/// The last prefetched record must start within this share of its lock.
pub(crate) const LOCK_SHARE: f64 = 0.25;
/// The target before anything was measured: a slow handler must not start with a large one,
/// and a quick one doubles from here each window.
pub(crate) const INITIAL: usize = 1;
/// The target never falls below this.
pub(crate) const MIN: usize = 1;
/// Completion rates are sampled over windows of at least this long...
pub(crate) const WINDOW: Duration = Duration::from_millis(100);
/// ...once the first windows, from this long and doubling, are over: a quick handler starting
/// at [`INITIAL`] reaches its target in a few milliseconds instead of spending its first 100 ms
/// fetching a record or two at a time (a fifth of a million-job run on the embedded broker).
pub(crate) const FIRST_WINDOW: Duration = Duration::from_millis(10);
/// The round trip is the shortest of this many fetches that brought records.
pub(crate) const ROUND_TRIPS: usize = 8;
/// Weight of a new sample in the moving averages.
const ALPHA: f64 = 0.5;

/// What bounds the target besides the measured rate and round trip.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Bounds {
    /// The records' lock duration.
    pub(crate) lock: Duration,
    /// `share.partition.max.record.locks`.
    pub(crate) record_locks: u32,
    /// Partitions the handler's records came from (at least 1).
    pub(crate) partitions: usize,
    /// The handler's concurrency (its running records hold locks too).
    pub(crate) concurrency: u32,
    /// `prefetch_max_records`.
    pub(crate) max_records: u32,
    /// `prefetch_max_bytes`.
    pub(crate) max_bytes: u64,
    /// The mean size of the handler's records (key, value and headers), when measured.
    pub(crate) record_bytes: Option<f64>,
}

/// Records to hold ahead of free slots for a handler finishing `rate` jobs a second, with a
/// fetch round trip of `round_trip`.
pub(crate) fn target(rate: f64, round_trip: Duration, b: &Bounds) -> usize {
    let rate = if rate.is_finite() { rate.max(0.0) } else { 0.0 };
    let ahead = rate * (round_trip.as_secs_f64() * HEADROOM).max(AHEAD_TIME.as_secs_f64());
    // The record at the back of the queue starts after `queued / rate` seconds.
    let lock = rate * b.lock.as_secs_f64() * LOCK_SHARE;
    // Half the group's locks: records acknowledged but not yet sent hold locks too.
    let locks = (u64::from(b.record_locks) * b.partitions.max(1) as u64 / 2)
        .saturating_sub(u64::from(b.concurrency)) as f64;
    let bytes = match b.record_bytes {
        Some(size) if size >= 1.0 => b.max_bytes as f64 / size,
        _ => b.max_bytes as f64,
    };
    let t = ahead
        .min(lock)
        .min(locks)
        .min(bytes)
        .min(f64::from(b.max_records));
    // A float past usize::MAX saturates; NaN is ruled out above.
    (t.floor() as usize).max(MIN)
}

/// When the dispatcher sends its waiting acknowledgements: once `batch` are waiting or the
/// oldest waited `linger`. Quick handlers (a large prefetch target in all) send them in batches
/// of up to half the target, at most [`QUICK_ACK_LINGER`] late: each acknowledgement request
/// costs the broker a share-state write per partition, so many small ones cost it more than
/// the records. Slow handlers keep `batch` and `linger` as given.
pub(crate) fn ack_batching(target: usize, batch: usize, linger: Duration) -> (usize, Duration) {
    if target >= QUICK_FROM {
        (batch.max(target / 2), linger.max(QUICK_ACK_LINGER))
    } else {
        (batch, linger)
    }
}

/// One handler's measurements.
struct HandlerState {
    /// Completions counted at the start of the window.
    done_at_start: u64,
    rate: Option<f64>,
    record_bytes: Option<f64>,
    partitions: HashSet<(Arc<str>, i32)>,
    target: usize,
}

/// The measurements of one group's handlers, owned by its dispatcher.
pub(crate) struct Sizer {
    handlers: Vec<HandlerState>,
    window_start: Instant,
    /// The current window's length: [`FIRST_WINDOW`], doubling up to [`WINDOW`].
    window: Duration,
    /// The last [`ROUND_TRIPS`] fetches that brought records (the first one aside): how long
    /// each took.
    round_trips: VecDeque<Duration>,
    /// Whether a fetch brought records yet.
    answered: bool,
    lock: Duration,
}

impl Sizer {
    /// For `n` handlers, starting now.
    pub(crate) fn new(n: usize) -> Self {
        Self {
            handlers: (0..n)
                .map(|_| HandlerState {
                    done_at_start: 0,
                    rate: None,
                    record_bytes: None,
                    partitions: HashSet::new(),
                    target: INITIAL,
                })
                .collect(),
            window_start: Instant::now(),
            window: FIRST_WINDOW,
            round_trips: VecDeque::with_capacity(ROUND_TRIPS),
            answered: false,
            lock: crate::broker::GroupLimits::default().lock_duration,
        }
    }

    /// A fetch that took `took` and brought `records` (of handler `handler_of(record)`).
    pub(crate) fn fetched(
        &mut self,
        took: Duration,
        records: &[Delivery],
        handler_of: impl Fn(&Delivery) -> Option<usize>,
    ) {
        let Some(first) = records.first() else {
            // An empty answer measures the long poll, not the round trip.
            return;
        };
        self.lock = first.lock_duration;
        if self.answered {
            if self.round_trips.len() == ROUND_TRIPS {
                self.round_trips.pop_front();
            }
            self.round_trips.push_back(took);
        }
        self.answered = true;
        // Records come in runs from one partition: look each run's partition up once.
        let mut last: Option<(usize, *const str, i32)> = None;
        for d in records {
            let Some(i) = handler_of(d) else {
                continue;
            };
            let Some(h) = self.handlers.get_mut(i) else {
                continue;
            };
            let size = d.key.as_ref().map_or(0, |k| k.len())
                + d.value.as_ref().map_or(0, |v| v.len())
                + d.headers
                    .iter()
                    .map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len()))
                    .sum::<usize>();
            let size = size as f64;
            h.record_bytes = Some(match h.record_bytes {
                Some(b) => b * 0.99 + size * 0.01,
                None => size,
            });
            let here = (i, Arc::as_ptr(&d.id.topic), d.id.partition);
            if last != Some(here) {
                last = Some(here);
                h.partitions.insert((d.id.topic.clone(), d.id.partition));
            }
        }
    }

    /// Samples the completion rates when a window is over (`done[h]`: handler `h`'s
    /// completions so far) and recomputes the targets; `bounds(h)` gives the config's part of
    /// handler `h`'s bounds. Returns whether the targets were recomputed.
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        done: impl Fn(usize) -> u64,
        bounds: impl Fn(usize) -> Bounds,
    ) -> bool {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < self.window {
            return false;
        }
        self.window_start = now;
        self.window = (self.window * 2).min(WINDOW);
        let secs = elapsed.as_secs_f64();
        for (i, h) in self.handlers.iter_mut().enumerate() {
            let d = done(i);
            let sample = d.saturating_sub(h.done_at_start) as f64 / secs;
            h.done_at_start = d;
            h.rate = Some(match h.rate {
                Some(r) => r * (1.0 - ALPHA) + sample * ALPHA,
                None => sample,
            });
            let Some(rt) = self.round_trips.iter().min().copied() else {
                continue;
            };
            let mut b = bounds(i);
            b.lock = self.lock;
            b.partitions = h.partitions.len().max(1);
            b.record_bytes = h.record_bytes;
            h.target = target(h.rate.unwrap_or(0.0), rt, &b);
        }
        true
    }

    /// The partitions records came from, over all handlers (0 before the first records).
    pub(crate) fn partitions(&self) -> usize {
        self.handlers.iter().map(|h| h.partitions.len()).sum()
    }

    /// Handler `h`'s current target.
    pub(crate) fn target(&self, h: usize) -> usize {
        self.handlers.get(h).map_or(INITIAL, |s| s.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::RecordId;
    use bytes::Bytes;

    fn bounds() -> Bounds {
        Bounds {
            lock: Duration::from_secs(30),
            record_locks: 2000,
            partitions: 16,
            concurrency: 32,
            max_records: 10_000,
            max_bytes: 32 << 20,
            record_bytes: Some(100.0),
        }
    }

    #[test]
    fn little_law_with_headroom() {
        // 10,000 jobs/s, 100 ms round trip: 1000 in flight on the wire, 2000 with headroom.
        assert_eq!(
            target(10_000.0, Duration::from_millis(100), &bounds()),
            2000
        );
    }

    #[test]
    fn short_round_trips_still_fetch_100_ms_of_work() {
        // 10,000 jobs/s, 2 ms round trip: 40 would do, but fetches of 40 cost the broker a
        // request per 4 ms; 100 ms of work is 1000.
        assert_eq!(target(10_000.0, Duration::from_millis(2), &bounds()), 1000);
    }

    #[test]
    fn quick_handlers_hit_the_record_cap() {
        assert_eq!(
            target(1_000_000.0, Duration::from_millis(20), &bounds()),
            10_000
        );
    }

    #[test]
    fn slow_handlers_keep_the_minimum() {
        // 32 slots of 1 s each: 32 jobs/s x 100 ms -> 3 records.
        assert_eq!(target(32.0, Duration::from_millis(5), &bounds()), 3);
        // 4 slots of 1 s: 0.4 records -> one.
        assert_eq!(target(4.0, Duration::from_millis(5), &bounds()), MIN);
        assert_eq!(target(0.0, Duration::from_millis(5), &bounds()), MIN);
        assert_eq!(target(f64::NAN, Duration::from_millis(5), &bounds()), MIN);
    }

    #[test]
    fn a_queued_record_starts_within_a_quarter_of_its_lock() {
        // 100 jobs/s with a 10 s round trip (a far broker) wants 2000 ahead, but the last of
        // them would start after 20 s of a 30 s lock: 100/s x 7.5 s = 750.
        assert_eq!(target(100.0, Duration::from_secs(10), &bounds()), 750);
    }

    #[test]
    fn lock_limit_times_partitions_minus_the_slots() {
        let b = Bounds {
            record_locks: 200,
            partitions: 2,
            ..bounds()
        };
        assert_eq!(target(1_000_000.0, Duration::from_millis(20), &b), 200 - 32);
        let b = Bounds {
            record_locks: 10,
            partitions: 1,
            ..bounds()
        };
        assert_eq!(target(1_000_000.0, Duration::from_millis(20), &b), MIN);
    }

    #[test]
    fn quick_handlers_batch_their_acknowledgements() {
        let ms = Duration::from_millis;
        assert_eq!(ack_batching(16, 64, ms(1)), (64, ms(1)));
        assert_eq!(ack_batching(QUICK_FROM, 64, ms(1)), (128, QUICK_ACK_LINGER));
        assert_eq!(ack_batching(10_000, 64, ms(1)), (5000, QUICK_ACK_LINGER));
    }

    #[test]
    fn bytes_bound_large_records() {
        // 1 MiB records, 32 MiB: 32 records.
        let b = Bounds {
            record_bytes: Some(1024.0 * 1024.0),
            ..bounds()
        };
        assert_eq!(target(1_000_000.0, Duration::from_millis(20), &b), 32);
        // Unmeasured size: bytes bound as one byte a record (no bound in practice).
        let b = Bounds {
            record_bytes: None,
            ..bounds()
        };
        assert_eq!(target(1_000_000.0, Duration::from_millis(20), &b), 10_000);
    }

    fn delivery(partition: i32, offset: i64, bytes: usize) -> Delivery {
        Delivery {
            id: RecordId::new("t", partition, offset),
            key: None,
            value: Some(Bytes::from(vec![0u8; bytes])),
            headers: Default::default(),
            timestamp: std::time::SystemTime::UNIX_EPOCH,
            delivery_count: 1,
            lock_duration: Duration::from_secs(30),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn starts_at_initial_then_follows_the_rate() {
        let mut s = Sizer::new(1);
        let b = |_| bounds();
        assert_eq!(s.target(0), INITIAL);
        // Nothing measured before a window is over.
        assert!(!s.tick(Instant::now(), |_| 0, b));
        let recs: Vec<_> = (0..8).map(|p| delivery(p, 0, 100)).collect();
        // The first answer (joining, the assignment) is no round trip; see below.
        s.fetched(Duration::from_secs(2), &recs, |_| Some(0));
        s.fetched(Duration::from_millis(100), &recs, |_| Some(0));
        tokio::time::advance(WINDOW).await;
        // 1000 completions in 100 ms: 10,000/s x 100 ms x 2 = 2000.
        assert!(s.tick(Instant::now(), |_| 1000, b));
        assert_eq!(s.target(0), 2000);
        // The handler slows to 100/s: the average halves towards it each window.
        tokio::time::advance(WINDOW).await;
        s.tick(Instant::now(), |_| 1010, b);
        assert_eq!(s.target(0), 1010); // (10,000 + 100) / 2 x 100 ms x 2
        for n in 0..20 {
            tokio::time::advance(WINDOW).await;
            s.tick(Instant::now(), |_| 1020 + 10 * n, b);
        }
        assert_eq!(s.target(0), 20, "100 jobs/s x 100 ms x 2");
        // The first answer (joining, the assignment) is no round trip.
        let mut first = Sizer::new(1);
        first.fetched(Duration::from_secs(2), &recs, |_| Some(0));
        tokio::time::advance(WINDOW).await;
        first.tick(Instant::now(), |_| 1000, b);
        assert_eq!(first.target(0), INITIAL, "no round trip measured yet");
    }

    #[tokio::test(start_paused = true)]
    async fn one_slow_answer_does_not_make_a_slow_handler_hold_more() {
        let mut s = Sizer::new(1);
        let b = |_| bounds();
        let recs: Vec<_> = (0..4).map(|p| delivery(p, 0, 100)).collect();
        // The first answer waited a second for the group's assignment; then one waited for a
        // fetch in flight; the next one is quick.
        s.fetched(Duration::from_secs(1), &recs, |_| Some(0));
        s.fetched(Duration::from_millis(900), &recs, |_| Some(0));
        s.fetched(Duration::from_millis(20), &recs, |_| Some(0));
        // 8 jobs/s (a 500 ms handler at concurrency 4): 8 x 100 ms = 0.8, so 1, not 8 x 2 s = 16.
        for window in 1..=10u64 {
            tokio::time::advance(WINDOW).await;
            s.tick(Instant::now(), |_| window * 8 / 10, b);
        }
        assert!(s.target(0) <= 2, "{}", s.target(0));
        // At 1000 jobs/s the 20 ms round trip counts: 100 ms of work ahead.
        let mut t = Instant::now();
        let mut run = |s: &mut Sizer, done: &mut u64| {
            for _ in 0..30 {
                *done += 100;
                t += WINDOW;
                let d = *done;
                s.tick(t, |_| d, b);
            }
        };
        let mut done = 8;
        run(&mut s, &mut done);
        assert!((99..=100).contains(&s.target(0)), "{}", s.target(0));
        // After ROUND_TRIPS slower answers the quick one is forgotten: 1000/s x 400 ms x 2.
        for _ in 0..ROUND_TRIPS {
            s.fetched(Duration::from_millis(400), &recs, |_| Some(0));
        }
        run(&mut s, &mut done);
        assert!((799..=800).contains(&s.target(0)), "{}", s.target(0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_windows_are_short_and_double_up_to_the_window() {
        let mut s = Sizer::new(1);
        let b = |_| bounds();
        let recs: Vec<_> = (0..8).map(|p| delivery(p, 0, 100)).collect();
        s.fetched(Duration::from_secs(1), &recs, |_| Some(0));
        s.fetched(Duration::from_millis(2), &recs, |_| Some(0));
        let mut done = 0;
        let mut ends = Vec::new();
        let start = Instant::now();
        for _ in 0..80 {
            tokio::time::advance(Duration::from_millis(5)).await;
            done += 500; // 100,000 jobs/s
            if s.tick(Instant::now(), |_| done, b) {
                ends.push(start.elapsed().as_millis());
                if ends.len() == 1 {
                    // Ten milliseconds were enough to leave the initial target: 100,000/s x
                    // 100 ms, bounded by half the locks of the 8 partitions seen (2000 x 8 /
                    // 2 - 32).
                    assert_eq!(s.target(0), 7968);
                }
            }
        }
        // Windows of 10, 20, 40, 80, then 100 ms.
        assert_eq!(ends, [10, 30, 70, 150, 250, 350]);
    }

    #[tokio::test(start_paused = true)]
    async fn empty_answers_do_not_count_as_round_trips() {
        let mut s = Sizer::new(1);
        s.fetched(Duration::from_secs(5), &[], |_| Some(0));
        tokio::time::advance(WINDOW).await;
        s.tick(Instant::now(), |_| 1000, |_| bounds());
        assert_eq!(s.target(0), INITIAL, "no round trip measured yet");
    }
}
