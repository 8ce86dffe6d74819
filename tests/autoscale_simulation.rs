//! A deterministic simulation of the replica hint: a queue fed by step, ramp, burst and idle
//! loads, worked off by as many replicas as the hint asked for one refresh earlier (the
//! autoscaler's reaction). Checks that the hint settles on a replica count that keeps up
//! within two refresh intervals, and does not oscillate.

use std::time::Duration;

use shareworker::autoscale::{AutoscaleConfig, Estimator, TopicLoad};

const REFRESH: f64 = 5.0;
const CONCURRENCY: u32 = 10;
const HANDLER_TIME: f64 = 0.5;

/// One replica works off `CONCURRENCY / HANDLER_TIME` = 20 records/s.
fn capacity(replicas: u32) -> f64 {
    f64::from(replicas * CONCURRENCY) / HANDLER_TIME
}

struct Sim {
    est: Estimator,
    replicas: u32,
    lag: f64,
    t: f64,
    hints: Vec<(f64, u32)>,
}

impl Sim {
    fn new(config: AutoscaleConfig) -> Self {
        Self {
            est: Estimator::new(config),
            replicas: 0,
            lag: 0.0,
            t: 0.0,
            hints: Vec::new(),
        }
    }

    /// Runs one refresh interval at `rate` records/s (mean over the interval), then samples.
    fn step(&mut self, rate: f64) -> u32 {
        // The queue: arrivals in, the replicas' capacity out, for one interval.
        let arrived = rate * REFRESH;
        let served = (capacity(self.replicas) * REFRESH).min(self.lag + arrived);
        self.lag = self.lag + arrived - served;
        self.t += REFRESH;
        // Lag counts in-flight records: those in service now (Little: rate x time, up to slots).
        let in_service = (rate * HANDLER_TIME).min(f64::from(self.replicas * CONCURRENCY));
        let lag = self.lag + if self.replicas > 0 { in_service } else { 0.0 };
        let load = TopicLoad {
            arrival_rate: rate,
            lag: lag.round() as u64,
            mean_handler_time: Some(Duration::from_secs_f64(HANDLER_TIME)),
        };
        let in_flight = if self.replicas > 0 && lag > 0.0 { 1 } else { 0 };
        let hint = self.est.update(
            Duration::from_secs_f64(self.t),
            &[load],
            in_flight,
            CONCURRENCY,
        );
        self.hints.push((self.t, hint));
        // The autoscaler applies the hint; the new replicas work from the next interval.
        self.replicas = hint;
        hint
    }

    fn run(&mut self, rate: f64, intervals: usize) -> Vec<u32> {
        (0..intervals).map(|_| self.step(rate)).collect()
    }
}

/// Replicas that keep up with `rate` at the configured utilisation.
fn keeps_up(rate: f64, u: f64) -> u32 {
    (rate * HANDLER_TIME / (f64::from(CONCURRENCY) * u)).ceil() as u32
}

/// The hints never go up again after going down within one phase of constant load.
fn assert_no_oscillation(hints: &[u32], what: &str) {
    let mut went_down = false;
    for w in hints.windows(2) {
        if w[1] < w[0] {
            went_down = true;
        }
        assert!(
            !(went_down && w[1] > w[0]),
            "{what}: the hint went down and up again: {hints:?}"
        );
    }
}

fn config() -> AutoscaleConfig {
    let mut c = AutoscaleConfig::default();
    c.refresh = Duration::from_secs_f64(REFRESH);
    c.scale_down_window = Duration::from_secs(60);
    c.cooldown = Duration::from_secs(120);
    c
}

#[test]
fn step_load_settles_within_two_intervals_and_stays() {
    let mut sim = Sim::new(config());
    sim.run(0.0, 3);
    let hints = sim.run(100.0, 40);
    let want = keeps_up(100.0, 0.8); // 100 x 0.5 / 8 = 6.25 -> 7
    assert_eq!(want, 7);
    // Within two intervals the replicas keep up (the backlog term may ask for more first).
    assert!(hints[1] >= want, "after two intervals: {hints:?}");
    assert!(capacity(hints[1]) >= 100.0, "{hints:?}");
    // It ends on the count that keeps up, and the backlog is gone.
    assert_eq!(*hints.last().expect("hints"), want, "{hints:?}");
    assert!(sim.lag < 1.0, "backlog left: {}", sim.lag);
    assert_no_oscillation(&hints, "step");
    // Once settled, it does not move.
    let settled = hints.iter().position(|&h| h == want).expect("settles");
    assert!(hints[settled..].iter().all(|&h| h == want), "{hints:?}");
}

#[test]
fn ramp_is_followed_upwards_without_falling_behind() {
    let mut sim = Sim::new(config());
    let mut hints = Vec::new();
    // 0 to 200 records/s over 40 intervals.
    for i in 0..=40 {
        let rate = f64::from(i) * 5.0;
        let h = sim.step(rate);
        hints.push(h);
        // Never below what the current rate needs, past the first interval of each step.
        if i > 0 {
            assert!(h >= keeps_up(rate - 5.0, 0.8), "at {rate}/s: {hints:?}");
        }
    }
    // Monotonic while the load only grows.
    assert!(hints.windows(2).all(|w| w[1] >= w[0]), "{hints:?}");
    assert!(
        sim.lag < 200.0 * REFRESH,
        "the backlog stayed below one interval of arrivals: {}",
        sim.lag
    );
    let top = sim.run(200.0, 30);
    assert_eq!(*top.last().expect("hints"), keeps_up(200.0, 0.8));
    assert_no_oscillation(&top, "ramp plateau");
}

#[test]
fn burst_is_drained_then_released_after_the_window() {
    let mut sim = Sim::new(config());
    sim.run(20.0, 10);
    let base = keeps_up(20.0, 0.8); // 20 x 0.5 / 8 = 1.25 -> 2
    assert_eq!(sim.est.current(), base);
    // One interval of 1000 records/s: 5000 records at once.
    let burst = sim.step(1000.0);
    assert!(burst > base, "the burst asks for more: {burst}");
    let after = sim.run(20.0, 40);
    // The backlog is drained within the target drain time (60 s = 12 intervals) plus two.
    let drained_by = after
        .iter()
        .enumerate()
        .position(|(i, _)| i > 0 && sim.hints[sim.hints.len() - after.len() + i].1 <= burst)
        .unwrap_or(0);
    assert!(drained_by <= 14, "{after:?}");
    assert!(sim.lag < 1.0, "backlog left after the burst: {}", sim.lag);
    // Back down to the base count (after the 60 s window), with no up-down-up on the way.
    assert_eq!(*after.last().expect("hints"), base, "{after:?}");
    assert_no_oscillation(&after, "after the burst");
}

#[test]
fn idle_goes_to_zero_after_the_cooldown_and_wakes_up_on_work() {
    let mut sim = Sim::new(config());
    sim.run(50.0, 10);
    assert_eq!(sim.est.current(), keeps_up(50.0, 0.8));
    let idle = sim.run(0.0, 40);
    // The 60 s window keeps the count, then 1 until the 120 s cooldown, then 0.
    let zero_at = idle.iter().position(|&h| h == 0).expect("scales to zero");
    assert!(
        (f64::from(zero_at as u32 + 1) * REFRESH) >= 120.0,
        "zero before the cooldown: {idle:?}"
    );
    assert!(idle[zero_at..].iter().all(|&h| h == 0), "{idle:?}");
    assert_no_oscillation(&idle, "idle");
    // Work arrives at zero replicas: the lag alone wakes it up in one interval.
    let woke = sim.step(10.0);
    assert!(woke >= 1, "no replica for new work");
}

#[test]
fn noisy_load_does_not_flap() {
    let mut sim = Sim::new(config());
    // 100 records/s +-15 % from a fixed pseudo-random sequence.
    let mut x: u64 = 42;
    let mut hints = Vec::new();
    for _ in 0..200 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let noise = ((x >> 33) as f64 / f64::from(u32::MAX >> 1)) * 0.3 - 0.15;
        hints.push(sim.step(100.0 * (1.0 + noise)));
    }
    // After settling, changes are rare: the window holds the highest recent estimate.
    let changes = hints[20..].windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        changes <= 4,
        "{changes} changes in 180 intervals: {hints:?}"
    );
    let max = *hints[20..].iter().max().expect("hints");
    assert!(capacity(max) >= 115.0, "keeps up with the peaks: {hints:?}");
}

#[test]
fn clamped_to_min_and_max() {
    let mut c = config();
    c.min_replicas = 2;
    c.max_replicas = 5;
    let mut sim = Sim::new(c);
    assert_eq!(sim.run(0.0, 40).last(), Some(&2), "never below min");
    assert_eq!(sim.run(10_000.0, 3).last(), Some(&5), "never above max");
}

#[test]
fn a_backlog_without_a_burst_in_arrivals_is_drained_within_the_target_time() {
    // The workers were down: 3000 records wait, and 10 more arrive each second.
    let mut sim = Sim::new(config());
    sim.lag = 3000.0;
    sim.replicas = 1;
    let hints = sim.run(10.0, 30);
    // Target drain 60 s = 12 intervals; allow the two it takes to react.
    let mut lag = 3000.0;
    let mut replicas = 1;
    let mut done_at = None;
    for (i, &h) in hints.iter().enumerate() {
        lag = (lag + 10.0 * REFRESH - capacity(replicas) * REFRESH).max(0.0);
        replicas = h;
        if lag == 0.0 && done_at.is_none() {
            done_at = Some(i + 1);
        }
    }
    let done_at = done_at.expect("drained");
    assert!(
        done_at <= 14,
        "drained after {done_at} intervals: {hints:?}"
    );
    assert!(
        hints[0] > keeps_up(10.0, 0.8),
        "the backlog asks for more replicas: {hints:?}"
    );
    assert_eq!(
        *hints.last().expect("hints"),
        keeps_up(10.0, 0.8),
        "{hints:?}"
    );
    assert_no_oscillation(&hints, "backlog");
}
