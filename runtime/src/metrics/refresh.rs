//! The refresh task: every `autoscale.refresh`, reads share lag and the group's delivery count
//! limit (one request each per group) and end offsets (one per refresh) from the broker, and
//! recomputes the replica hint of each group.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{HandlerMetrics, Metrics, rate, set_rate};
use crate::autoscale::{AutoscaleConfig, Estimator, TopicLoad};
use crate::broker::Broker;
use crate::status::WorkerStatus;

/// One handler of a group, as the refresh task sees it.
pub(crate) struct HandlerView {
    pub(crate) topic: String,
    /// Where its handler time and in-flight counts come from: the running handler's metrics,
    /// or (for an exporter without handlers) a fixed handler time.
    pub(crate) source: Source,
    pub(crate) concurrency: u32,
}

/// What the refresh task knows of a handler.
pub(crate) enum Source {
    /// A handler running in this process.
    Running(HandlerMetrics),
    /// No handler here: the mean handler time an operator gave.
    Assumed(Duration),
}

/// One group, as the refresh task sees it.
pub(crate) struct GroupView {
    pub(crate) group: String,
    /// The group's delivery count limit, re-read at every refresh (a running worker's groups).
    pub(crate) limit: Option<crate::limits::DeliveryLimit>,
    pub(crate) handlers: Vec<HandlerView>,
}

/// A handler's mean time over the last interval, from its duration histogram.
#[derive(Default)]
struct MeanTime {
    sum: f64,
    count: u64,
    last: Option<Duration>,
}

impl MeanTime {
    fn update(&mut self, m: &HandlerMetrics) -> Option<Duration> {
        let (sum, count) = (m.duration.get_sample_sum(), m.duration.get_sample_count());
        if count > self.count {
            let mean = (sum - self.sum) / (count - self.count) as f64;
            if mean.is_finite() && mean >= 0.0 {
                self.last = Some(Duration::from_secs_f64(mean));
            }
        }
        self.sum = sum;
        self.count = count;
        self.last
    }
}

/// Runs until `stop`.
pub(crate) async fn run(
    broker: Arc<dyn Broker>,
    metrics: Arc<Metrics>,
    groups: Vec<GroupView>,
    config: AutoscaleConfig,
    global_concurrency: u32,
    status: WorkerStatus,
    stop: CancellationToken,
) {
    let topics: Vec<String> = groups
        .iter()
        .flat_map(|g| g.handlers.iter().map(|h| h.topic.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let start = Instant::now();
    let mut ends: HashMap<String, (u64, f64)> = HashMap::new();
    let mut rates: HashMap<String, f64> = HashMap::new();
    let mut means: Vec<Vec<MeanTime>> = groups
        .iter()
        .map(|g| g.handlers.iter().map(|_| MeanTime::default()).collect())
        .collect();
    let mut estimators: Vec<Estimator> = groups
        .iter()
        .map(|g| {
            let e = Estimator::new(config.clone());
            metrics
                .desired
                .with_label_values(&[g.group.as_str()])
                .set(i64::from(e.current()));
            e
        })
        .collect();
    let mut tick = tokio::time::interval(config.refresh);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    let mut offsets_denied = false;
    let mut lag_denied = vec![false; groups.len()];
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = start.elapsed();
        let mut ok = true;
        match broker.end_offsets(&topics).await {
            Ok(list) => {
                if offsets_denied {
                    offsets_denied = false;
                    for t in &topics {
                        metrics
                            .missing_acl("arrival_rate", "Describe", &format!("Topic:{t}"))
                            .set(0);
                    }
                }
                let t = now.as_secs_f64();
                for (topic, end) in list {
                    let before = ends.insert(topic.clone(), (end, t));
                    if let Some(r) = rate(before, (end, t)) {
                        set_rate(&metrics.arrival.with_label_values(&[topic.as_str()]), r);
                        rates.insert(topic, r);
                    }
                }
            }
            Err(e) if e.is_not_authorized() => {
                // The broker answers; this principal may not ask. Say it once, not per tick.
                if !offsets_denied {
                    offsets_denied = true;
                    for t in &topics {
                        metrics
                            .missing_acl("arrival_rate", "Describe", &format!("Topic:{t}"))
                            .set(1);
                    }
                    warn!(error = %e, missing_acl = %format!("Describe on Topic:{}", topics.join(", Topic:")),
                        "cannot read the topics' end offsets: the worker's principal lacks the Describe ACL; arrival rates stay 0 and the replica hint counts the backlog only");
                }
            }
            Err(e) => {
                ok = false;
                if !failing {
                    warn!(error = %e, "cannot read the topics' end offsets; arrival rates are stale");
                }
            }
        }
        for (i, g) in groups.iter().enumerate() {
            // An operator may change the limit while the worker runs: the dispatcher decides
            // retry or dead letter with the limit read here.
            if let Some(limit) = &g.limit {
                limit.reread(&*broker).await;
            }
            let lag = match broker.lag(&g.group).await {
                Ok(l) => {
                    if lag_denied[i] {
                        lag_denied[i] = false;
                        metrics
                            .missing_acl("share_lag", "Describe", &format!("Group:{}", g.group))
                            .set(0);
                    }
                    l
                }
                Err(e) if e.is_not_authorized() => {
                    if !lag_denied[i] {
                        lag_denied[i] = true;
                        metrics
                            .missing_acl("share_lag", "Describe", &format!("Group:{}", g.group))
                            .set(1);
                        warn!(group = %g.group, error = %e, missing_acl = %format!("Describe on Group:{}", g.group),
                            "cannot read the share lag: the worker's principal lacks the Describe ACL on the group (and on its topics); shareworker_share_lag_records and the replica hint are not updated");
                    }
                    continue;
                }
                Err(e) => {
                    ok = false;
                    if !failing {
                        warn!(group = %g.group, error = %e, "cannot read the share lag; the replica hint keeps its last value");
                    }
                    continue;
                }
            };
            let mut loads = Vec::with_capacity(g.handlers.len());
            let mut in_flight = 0u64;
            let mut concurrency = 0u32;
            for (h, mean) in g.handlers.iter().zip(means[i].iter_mut()) {
                let topic_lag = lag.iter().find(|t| t.topic == h.topic).map_or(0, |t| t.lag);
                metrics
                    .lag
                    .with_label_values(&[g.group.as_str(), h.topic.as_str()])
                    .set(i64::try_from(topic_lag).unwrap_or(i64::MAX));
                let mean_handler_time = match &h.source {
                    Source::Running(m) => {
                        in_flight += [m.in_flight.get(), m.prefetched.get(), m.held.get()]
                            .into_iter()
                            .map(|v| v.max(0) as u64)
                            .sum::<u64>();
                        mean.update(m)
                    }
                    Source::Assumed(t) => Some(*t),
                };
                loads.push(TopicLoad {
                    arrival_rate: rates.get(&h.topic).copied().unwrap_or(0.0),
                    lag: topic_lag,
                    mean_handler_time,
                });
                concurrency = concurrency.saturating_add(h.concurrency);
            }
            let concurrency = concurrency.min(global_concurrency);
            let desired = estimators[i].update(now, &loads, in_flight, concurrency);
            debug!(group = %g.group, loads = %crate::logs::Json(loads.iter().map(|l| serde_json::json!({
                    "arrival_rate": l.arrival_rate,
                    "lag": l.lag,
                    "mean_handler_time": l.mean_handler_time.map(|d| crate::duration::Short(d).to_string()),
                })).collect::<Vec<_>>()),
                in_flight, concurrency, desired, "replica hint");
            metrics
                .desired
                .with_label_values(&[g.group.as_str()])
                .set(i64::from(desired));
        }
        if ok && failing {
            debug!("the broker answers again");
        }
        failing = !ok;
        status.set_broker_ok(ok);
    }
}
