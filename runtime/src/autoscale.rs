//! The replica-count hint behind `shareworker_desired_replicas{group}`.
//!
//! Every refresh interval (`autoscale.refresh`, 5 s by default) a worker measures, per share
//! group and per topic of the group: the arrival rate `λ` (records per second written to the
//! topic), the share lag `L` (from the broker), and the mean handler time `W` (from its own
//! handlers). It turns them into the number of replicas that keep up, with Little's law: the
//! records being handled at once equal the rate they come in times how long each takes.
//!
//! ```text
//! in_service = min(L, λ·W)                  records being handled now (Little's law): not backlog
//! backlog    = L - in_service               records waiting
//! work       = Σ_topics (λ + backlog / T) · W   handler-seconds needed per second
//! raw        = ceil(work / (C · u))         C = concurrency per replica, u = target utilisation
//! ```
//!
//! `T` is `autoscale.target_drain` (how soon a backlog should be gone, 60 s by default) and `u`
//! is `autoscale.target_utilization` (0.8: headroom for bursts). `raw` is at least 1 while
//! anything waits, arrives or runs, and is clamped to `min_replicas..=max_replicas`.
//!
//! Two rules keep the hint from flapping:
//! - **Scale up at once, down slowly**: going down, the hint follows the highest `raw` seen over
//!   the last `autoscale.scale_down_window` (2 min) plus a quarter of a replica, so a short dip
//!   does not remove replicas that the next burst needs again (like the Kubernetes HPA's
//!   stabilisation window), and noise around a whole number does not move it back and forth.
//! - **Scale to zero only when idle**: no lag, nothing in flight and nothing arriving for
//!   `autoscale.cooldown` (5 min); until then the hint stays at least 1.
//!
//! The estimator is a plain state machine over samples, so it can be driven by a simulation:
//!
//! ```
//! use std::time::Duration;
//! use shareworker::autoscale::{AutoscaleConfig, Estimator, TopicLoad};
//!
//! let mut e = Estimator::new(AutoscaleConfig::default());
//! // 400 records/s, 0.5 s each, 32 handlers per replica at 80 %: 200 / 25.6 -> 8 replicas.
//! let load = TopicLoad { arrival_rate: 400.0, lag: 200, mean_handler_time: Some(Duration::from_millis(500)) };
//! assert_eq!(e.update(Duration::from_secs(5), &[load], 0, 32), 8);
//! ```

use std::collections::VecDeque;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::serde_duration;

/// Settings of the replica-count hint (key `autoscale`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AutoscaleConfig {
    /// How often share lag and arrival rates are read from the broker and the hint recomputed
    /// (default 5 s). One lag request per group and one offsets request per refresh, whatever
    /// the number of jobs.
    #[serde(with = "serde_duration")]
    pub refresh: Duration,
    /// The fewest replicas the hint asks for (default 0: scale to zero when idle).
    pub min_replicas: u32,
    /// The most replicas the hint asks for (default 20).
    pub max_replicas: u32,
    /// How soon a backlog should be worked off (default 60 s).
    #[serde(with = "serde_duration")]
    pub target_drain: Duration,
    /// The share of each replica's concurrency the hint plans to use, above 0 and at most 1
    /// (default 0.8).
    pub target_utilization: f64,
    /// How long a group must be idle (no lag, nothing in flight, nothing arriving) before the
    /// hint drops to `min_replicas` (default 5 min).
    #[serde(with = "serde_duration")]
    pub cooldown: Duration,
    /// The hint is the highest raw estimate over this window, so it goes down only after the
    /// load has stayed lower this long (default 2 min).
    #[serde(with = "serde_duration")]
    pub scale_down_window: Duration,
}

impl Default for AutoscaleConfig {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(5),
            min_replicas: 0,
            max_replicas: 20,
            target_drain: Duration::from_secs(60),
            target_utilization: 0.8,
            cooldown: Duration::from_secs(300),
            scale_down_window: Duration::from_secs(120),
        }
    }
}

impl AutoscaleConfig {
    /// Checks the ranges; the message names the key and what is allowed.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.refresh < Duration::from_millis(100) {
            return Err("`autoscale.refresh`: must be at least 100ms".into());
        }
        if self.max_replicas == 0 {
            return Err("`autoscale.max_replicas`: must be at least 1".into());
        }
        if self.min_replicas > self.max_replicas {
            return Err(format!(
                "`autoscale.min_replicas`: must be at most `autoscale.max_replicas` ({}), got {}",
                self.max_replicas, self.min_replicas
            ));
        }
        if self.target_drain.is_zero() {
            return Err("`autoscale.target_drain`: must be more than 0s".into());
        }
        if !(self.target_utilization > 0.0 && self.target_utilization <= 1.0) {
            return Err(format!(
                "`autoscale.target_utilization`: must be above 0 and at most 1, got {}",
                self.target_utilization
            ));
        }
        Ok(())
    }
}

/// What one topic of a group looks like at a refresh.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TopicLoad {
    /// Records per second written to the topic since the last refresh.
    pub arrival_rate: f64,
    /// The group's share lag on the topic (records not yet delivery-complete, in flight included).
    pub lag: u64,
    /// The mean time of the topic's handler over recent jobs; `None` before the first job ends.
    pub mean_handler_time: Option<Duration>,
}

/// Turns samples into a replica-count hint; see the [module docs](self) for the formula.
#[derive(Clone, Debug)]
pub struct Estimator {
    config: AutoscaleConfig,
    /// Raw estimates within the scale-down window, oldest first.
    recent: VecDeque<(Duration, f64)>,
    /// Since when the group has been idle.
    idle_since: Option<Duration>,
    current: u32,
}

impl Estimator {
    /// A new estimator; its hint starts at `min_replicas`.
    pub fn new(config: AutoscaleConfig) -> Self {
        let current = config.min_replicas;
        Self {
            config,
            recent: VecDeque::new(),
            idle_since: None,
            current,
        }
    }

    /// The last hint.
    pub fn current(&self) -> u32 {
        self.current
    }

    /// The replicas that keep up with `load` right now, before clamping and hysteresis.
    ///
    /// `in_flight` is what this replica holds (running, prefetched or waiting out a backoff);
    /// `concurrency` is how many handlers of the group one replica runs at once.
    pub fn raw(&self, load: &[TopicLoad], in_flight: u64, concurrency: u32) -> f64 {
        let (raw, busy) = self.estimate(load, in_flight, concurrency);
        if busy { raw.max(1.0) } else { raw }
    }

    /// The unrounded estimate, and whether anything waits, arrives or runs.
    fn estimate(&self, load: &[TopicLoad], in_flight: u64, concurrency: u32) -> (f64, bool) {
        let drain = self.config.target_drain.as_secs_f64();
        let mut work = 0.0;
        let mut busy = in_flight > 0;
        for t in load {
            let rate = if t.arrival_rate.is_finite() {
                t.arrival_rate.max(0.0)
            } else {
                0.0
            };
            busy |= rate > 0.0 || t.lag > 0;
            let Some(w) = t.mean_handler_time else {
                continue;
            };
            let w = w.as_secs_f64();
            let lag = t.lag as f64;
            let backlog = lag - lag.min(rate * w);
            work += (rate + backlog / drain) * w;
        }
        let capacity = f64::from(concurrency.max(1)) * self.config.target_utilization;
        (work / capacity, busy)
    }

    /// Takes a sample at `now` (any monotonic clock, such as the time since start) and returns
    /// the new hint.
    pub fn update(
        &mut self,
        now: Duration,
        load: &[TopicLoad],
        in_flight: u64,
        concurrency: u32,
    ) -> u32 {
        let (raw, busy) = self.estimate(load, in_flight, concurrency);
        let idle = !busy;
        if idle {
            self.idle_since.get_or_insert(now);
        } else {
            self.idle_since = None;
        }
        let cooled = self
            .idle_since
            .is_some_and(|s| now.saturating_sub(s) >= self.config.cooldown);
        // Idle but not for the whole cooldown: keep one replica.
        let raw = match (idle, cooled) {
            (true, true) => 0.0,
            (true, false) => 1.0,
            (false, _) => raw,
        };
        // While anything waits, arrives or runs, at least one replica.
        let floor = if cooled { 0 } else { 1 };
        while let Some(&(t, _)) = self.recent.front() {
            if now.saturating_sub(t) < self.config.scale_down_window {
                break;
            }
            self.recent.pop_front();
        }
        self.recent.push_back((now, raw));
        let up = self.clamped(raw, floor);
        self.current = if cooled {
            self.clamped(0.0, 0)
        } else if up > self.current {
            up
        } else {
            // Down only to what the highest estimate of the window, plus a margin, still fits.
            let peak = self.recent.iter().map(|&(_, r)| r).fold(raw, f64::max);
            self.current
                .min(self.clamped(peak + SCALE_DOWN_MARGIN, floor))
        };
        self.current
    }

    /// `ceil(raw)`, at least `floor`, within `min_replicas..=max_replicas`; a hair over a whole number counts as
    /// that number (3.0000001 is 3, not 4).
    fn clamped(&self, raw: f64, floor: u32) -> u32 {
        let (min, max) = (self.config.min_replicas, self.config.max_replicas);
        let n = (raw - 1e-6).ceil().max(f64::from(floor));
        let n = if n >= f64::from(max) { max } else { n as u32 };
        n.clamp(min, max)
    }
}

/// Scaling down leaves this much of a replica spare above the window's highest estimate, so
/// noise around a whole number does not move the hint back and forth.
const SCALE_DOWN_MARGIN: f64 = 0.25;

#[cfg(test)]
mod tests {
    use super::*;

    fn load(rate: f64, lag: u64, ms: u64) -> TopicLoad {
        TopicLoad {
            arrival_rate: rate,
            lag,
            mean_handler_time: Some(Duration::from_millis(ms)),
        }
    }

    #[test]
    fn littles_law_with_headroom() {
        let e = Estimator::new(AutoscaleConfig::default());
        // 100/s at 1 s each needs 100 handlers; 32 per replica at 0.8 -> 3.9 replicas.
        let raw = e.raw(&[load(100.0, 100, 1000)], 0, 32);
        assert!((raw - 100.0 / 25.6).abs() < 1e-9, "{raw}");
    }

    #[test]
    fn backlog_beyond_what_is_in_service_adds_drain_work() {
        let e = Estimator::new(AutoscaleConfig::default());
        // 6000 waiting beyond the 100 in service, to drain in 60 s: +100/s.
        let raw = e.raw(&[load(100.0, 6100, 1000)], 0, 32);
        assert!((raw - 200.0 / 25.6).abs() < 1e-9, "{raw}");
    }

    #[test]
    fn unknown_handler_time_still_asks_for_one_replica() {
        let e = Estimator::new(AutoscaleConfig::default());
        let t = TopicLoad {
            arrival_rate: 0.0,
            lag: 5,
            mean_handler_time: None,
        };
        assert_eq!(e.raw(&[t], 0, 32), 1.0);
    }

    #[test]
    fn clamps_to_max() {
        let mut e = Estimator::new(AutoscaleConfig::default());
        assert_eq!(
            e.update(Duration::ZERO, &[load(1e9, 0, 1000)], 0, 1),
            AutoscaleConfig::default().max_replicas
        );
    }

    #[test]
    fn nonsense_rates_count_as_nothing() {
        let e = Estimator::new(AutoscaleConfig::default());
        assert_eq!(e.raw(&[load(f64::NAN, 0, 10)], 0, 4), 0.0);
        assert_eq!(e.raw(&[load(-5.0, 0, 10)], 0, 4), 0.0);
    }

    #[test]
    fn bad_settings_name_their_key() {
        let c = AutoscaleConfig {
            min_replicas: 5,
            max_replicas: 2,
            ..AutoscaleConfig::default()
        };
        let e = c.validate().expect_err("min above max");
        assert!(e.contains("autoscale.min_replicas"), "{e}");
        let c = AutoscaleConfig {
            target_utilization: 1.5,
            ..AutoscaleConfig::default()
        };
        assert!(
            c.validate()
                .expect_err("utilisation")
                .contains("target_utilization")
        );
    }
}
