//! Prometheus metrics of a worker, the refresh task behind share lag and the replica hint, and
//! the HTTP endpoint that serves them.

pub(crate) mod refresh;

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use crate::Error;
use crate::broker::Broker;

/// Handler durations: 1 ms to about 20 min.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 1200.0,
];
/// Fetches: a long poll waits up to 5 s when there is nothing to fetch.
const FETCH_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Delivery counts: Kafka allows a limit of 2 to 10.
const ATTEMPT_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0];

/// Every metric a worker exports, in its own registry.
pub(crate) struct Metrics {
    pub(crate) registry: Registry,
    jobs: IntCounterVec,
    duration: HistogramVec,
    attempts: HistogramVec,
    in_flight: IntGaugeVec,
    prefetched: IntGaugeVec,
    prefetch_target: IntGaugeVec,
    held: IntGaugeVec,
    concurrency: IntGaugeVec,
    redeliveries: IntCounterVec,
    lease_expired: IntCounterVec,
    dead_letter_failures: IntCounterVec,
    dead_letters_abandoned: IntCounterVec,
    archived: IntCounterVec,
    delivery_limit: IntGaugeVec,
    missing_acl: IntGaugeVec,
    topic_missing: IntGaugeVec,
    renewals: IntCounterVec,
    renewal_failures: IntCounterVec,
    locks_lost: IntCounterVec,
    fetch_duration: HistogramVec,
    fetched: IntCounterVec,
    pub(crate) lag: IntGaugeVec,
    pub(crate) arrival: GaugeVec,
    pub(crate) desired: IntGaugeVec,
    pub(crate) ready: IntGauge,
    pub(crate) broker_up: IntGauge,
    pub(crate) worker_concurrency: IntGauge,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

fn hist(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(buckets.to_vec())
}

fn prom(e: prometheus::Error) -> Error {
    Error::config(format!("metrics: {e}"))
}

impl Metrics {
    /// Creates every metric in a new registry; `broker`'s error counts are read at each scrape.
    pub(crate) fn new(broker: Arc<dyn Broker>) -> Result<Self, Error> {
        let registry = Registry::new();
        let hg = &["handler", "group"];
        let g = &["group"];
        let m = Self {
            jobs: IntCounterVec::new(
                opts(
                    "shareworker_jobs_total",
                    "Deliveries finished, by outcome: accepted (the handler succeeded), released (it failed and the record went back for another attempt, after its backoff; also a lease that ran out before the last attempt, or a dead-letter write cut off by the end of the shutdown grace period), dead_lettered (written to the dead-letter topic, then rejected), rejected (the last attempt failed with dead-lettering off).",
                ),
                &["handler", "group", "outcome"],
            )
            .map_err(prom)?,
            duration: HistogramVec::new(
                hist(
                    "shareworker_handler_duration_seconds",
                    "How long handlers ran, per attempt, whatever the outcome.",
                    DURATION_BUCKETS,
                ),
                hg,
            )
            .map_err(prom)?,
            attempts: HistogramVec::new(
                hist(
                    "shareworker_job_attempts",
                    "The delivery count at which a record was settled for good (accepted, dead-lettered or rejected).",
                    ATTEMPT_BUCKETS,
                ),
                hg,
            )
            .map_err(prom)?,
            in_flight: IntGaugeVec::new(
                opts(
                    "shareworker_jobs_in_flight",
                    "Handlers running now.",
                ),
                hg,
            )
            .map_err(prom)?,
            prefetched: IntGaugeVec::new(
                opts(
                    "shareworker_jobs_prefetched",
                    "Records acquired ahead of a free concurrency slot (locked, not yet running).",
                ),
                hg,
            )
            .map_err(prom)?,
            prefetch_target: IntGaugeVec::new(
                opts(
                    "shareworker_prefetch_target",
                    "Records the handler wants acquired ahead of its free slots: its fixed prefetch, or what the automatic one measures (completion rate x fetch round trip x 2, bounded by lock time, lock limit and memory).",
                ),
                hg,
            )
            .map_err(prom)?,
            held: IntGaugeVec::new(
                opts(
                    "shareworker_jobs_held_for_backoff",
                    "Failed records whose lock is kept while they wait out their backoff delay.",
                ),
                hg,
            )
            .map_err(prom)?,
            concurrency: IntGaugeVec::new(
                opts(
                    "shareworker_concurrency_limit",
                    "The most handlers of this kind that run at once in this replica.",
                ),
                hg,
            )
            .map_err(prom)?,
            redeliveries: IntCounterVec::new(
                opts(
                    "shareworker_redeliveries_total",
                    "Records acquired with a delivery count above 1: released after a failure, or their lock expired (a worker died or stalled) somewhere in the group.",
                ),
                hg,
            )
            .map_err(prom)?,
            lease_expired: IntCounterVec::new(
                opts(
                    "shareworker_lease_expirations_total",
                    "Handlers cancelled because they ran past the maximum lease (max_lease); their records were released.",
                ),
                hg,
            )
            .map_err(prom)?,
            dead_letter_failures: IntCounterVec::new(
                opts(
                    "shareworker_dead_letter_failures_total",
                    "Dead-letter writes that failed, counted per try: the record stays acquired (its lock renewed) and the write is tried again with backoff, up to 30 s apart, until it succeeds or the shutdown grace period ends.",
                ),
                hg,
            )
            .map_err(prom)?,
            dead_letters_abandoned: IntCounterVec::new(
                opts(
                    "shareworker_dead_letters_abandoned_total",
                    "Dead-letter writes still unfinished when the shutdown grace period ended: the record was released. Below the delivery count limit it is delivered again (and may be dead-lettered twice if the cut-off write had landed); at the limit the broker archives it (also counted in shareworker_records_archived_total).",
                ),
                hg,
            )
            .map_err(prom)?,
            archived: IntCounterVec::new(
                opts(
                    "shareworker_records_archived_total",
                    "Records this replica saw the broker archive at the delivery count limit without a dead letter: released at their last delivery (shutdown, unknown topic) or their lock lost at their last delivery. Records whose lock expired on a replica that died are not seen by anyone.",
                ),
                hg,
            )
            .map_err(prom)?,
            delivery_limit: IntGaugeVec::new(
                opts(
                    "shareworker_delivery_count_limit",
                    "The group's delivery count limit (share.delivery.count.limit) as last read from the broker, at start and at every refresh.",
                ),
                g,
            )
            .map_err(prom)?,
            missing_acl: IntGaugeVec::new(
                opts(
                    "shareworker_missing_acl",
                    "1 while a feature is off or failing because the worker's principal lacks this Kafka ACL (operation on resource, as Kafka's ACL tool names them); 0 once it works. The README lists the ACLs per feature.",
                ),
                &["feature", "operation", "resource"],
            )
            .map_err(prom)?,
            topic_missing: IntGaugeVec::new(
                opts(
                    "shareworker_topic_missing",
                    "1 while a topic a handler reads does not exist on the broker (its group gets no records from it; Kafka does not create a topic for a share group's subscription); 0 once it does.",
                ),
                &["topic"],
            )
            .map_err(prom)?,
            renewals: IntCounterVec::new(
                opts(
                    "shareworker_lock_renewals_total",
                    "Acquisition locks renewed (RENEW) for long handlers and records waiting out a backoff.",
                ),
                g,
            )
            .map_err(prom)?,
            renewal_failures: IntCounterVec::new(
                opts(
                    "shareworker_lock_renewal_failures_total",
                    "Renewals the broker refused: the lock had expired and the record will be delivered again.",
                ),
                g,
            )
            .map_err(prom)?,
            locks_lost: IntCounterVec::new(
                opts(
                    "shareworker_locks_lost_total",
                    "Acknowledgements (accept, release, reject) the broker refused because this replica's lock on the record had expired; the record is delivered again.",
                ),
                g,
            )
            .map_err(prom)?,
            fetch_duration: HistogramVec::new(
                hist(
                    "shareworker_fetch_duration_seconds",
                    "Time from asking the broker for records to getting them (a fetch waits up to 5 s when nothing is there).",
                    FETCH_BUCKETS,
                ),
                g,
            )
            .map_err(prom)?,
            fetched: IntCounterVec::new(
                opts(
                    "shareworker_fetched_records_total",
                    "Records acquired from the broker.",
                ),
                g,
            )
            .map_err(prom)?,
            lag: IntGaugeVec::new(
                opts(
                    "shareworker_share_lag_records",
                    "The share group's lag on a topic, from the broker: records not yet delivery-complete, in flight included. The same value on every replica.",
                ),
                &["group", "topic"],
            )
            .map_err(prom)?,
            arrival: GaugeVec::new(
                opts(
                    "shareworker_arrival_rate_records_per_second",
                    "Records written to the topic per second, over the last refresh interval, from the broker's end offsets.",
                ),
                &["topic"],
            )
            .map_err(prom)?,
            desired: IntGaugeVec::new(
                opts(
                    "shareworker_desired_replicas",
                    "Replicas that would keep up with the group's load (Little's law plus the time to drain the backlog), clamped to autoscale.min_replicas..max_replicas; 0 when idle for autoscale.cooldown. Scale on max() over replicas.",
                ),
                g,
            )
            .map_err(prom)?,
            ready: IntGauge::with_opts(opts(
                "shareworker_ready",
                "1 when the worker has joined its groups, the broker answers, and it is not shutting down (what /readyz reports).",
            ))
            .map_err(prom)?,
            broker_up: IntGauge::with_opts(opts(
                "shareworker_broker_up",
                "1 when the broker answered the last request, 0 when it failed.",
            ))
            .map_err(prom)?,
            worker_concurrency: IntGauge::with_opts(opts(
                "shareworker_worker_concurrency_limit",
                "The most handlers running at once in this replica, over all handlers (concurrency).",
            ))
            .map_err(prom)?,
            registry,
        };
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(m.jobs.clone()),
            Box::new(m.duration.clone()),
            Box::new(m.attempts.clone()),
            Box::new(m.in_flight.clone()),
            Box::new(m.prefetched.clone()),
            Box::new(m.prefetch_target.clone()),
            Box::new(m.held.clone()),
            Box::new(m.concurrency.clone()),
            Box::new(m.redeliveries.clone()),
            Box::new(m.lease_expired.clone()),
            Box::new(m.dead_letter_failures.clone()),
            Box::new(m.dead_letters_abandoned.clone()),
            Box::new(m.archived.clone()),
            Box::new(m.delivery_limit.clone()),
            Box::new(m.missing_acl.clone()),
            Box::new(m.topic_missing.clone()),
            Box::new(m.renewals.clone()),
            Box::new(m.renewal_failures.clone()),
            Box::new(m.locks_lost.clone()),
            Box::new(m.fetch_duration.clone()),
            Box::new(m.fetched.clone()),
            Box::new(m.lag.clone()),
            Box::new(m.arrival.clone()),
            Box::new(m.desired.clone()),
            Box::new(m.ready.clone()),
            Box::new(m.broker_up.clone()),
            Box::new(m.worker_concurrency.clone()),
            Box::new(BrokerErrors::new(broker)?),
            Box::new(LogWriteErrors::new()?),
        ];
        for c in collectors {
            m.registry.register(c).map_err(prom)?;
        }
        Ok(m)
    }

    /// The metrics of one handler, resolved once so the dispatcher never looks up labels.
    pub(crate) fn handler(&self, handler: &str, group: &str, concurrency: u32) -> HandlerMetrics {
        let hg = [handler, group];
        let outcome = |o: &str| self.jobs.with_label_values(&[handler, group, o]);
        self.concurrency
            .with_label_values(&hg)
            .set(i64::from(concurrency));
        HandlerMetrics {
            accepted: outcome("accepted"),
            released: outcome("released"),
            dead_lettered: outcome("dead_lettered"),
            rejected: outcome("rejected"),
            duration: self.duration.with_label_values(&hg),
            attempts: self.attempts.with_label_values(&hg),
            in_flight: self.in_flight.with_label_values(&hg),
            prefetched: self.prefetched.with_label_values(&hg),
            prefetch_target: self.prefetch_target.with_label_values(&hg),
            held: self.held.with_label_values(&hg),
            redeliveries: self.redeliveries.with_label_values(&hg),
            lease_expired: self.lease_expired.with_label_values(&hg),
            dead_letter_failures: self.dead_letter_failures.with_label_values(&hg),
            dead_letters_abandoned: self.dead_letters_abandoned.with_label_values(&hg),
            archived: self.archived.with_label_values(&hg),
            dead_letter_acl: None,
        }
    }

    /// The `shareworker_missing_acl` gauge of `feature`, which needs `operation` on `resource`
    /// (such as `Write` on `Topic:emails.dlq`).
    pub(crate) fn missing_acl(&self, feature: &str, operation: &str, resource: &str) -> IntGauge {
        self.missing_acl
            .with_label_values(&[feature, operation, resource])
    }

    /// The `shareworker_topic_missing` gauge of `topic`.
    pub(crate) fn topic_missing(&self, topic: &str) -> IntGauge {
        self.topic_missing.with_label_values(&[topic])
    }

    /// The metrics of one group.
    pub(crate) fn group(&self, group: &str) -> GroupMetrics {
        let g = [group];
        // Export the hint from the start, so an autoscaler sees a value before the first refresh.
        self.desired.with_label_values(&g);
        GroupMetrics {
            renewals: self.renewals.with_label_values(&g),
            renewal_failures: self.renewal_failures.with_label_values(&g),
            locks_lost: self.locks_lost.with_label_values(&g),
            fetch_duration: self.fetch_duration.with_label_values(&g),
            fetched: self.fetched.with_label_values(&g),
        }
    }

    /// The gauge of a group's delivery count limit.
    pub(crate) fn delivery_limit(&self, group: &str) -> IntGauge {
        self.delivery_limit.with_label_values(&[group])
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn render(&self) -> Result<String, Error> {
        let families = self.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .map_err(prom)
    }
}

/// One handler's metrics.
#[derive(Clone)]
pub(crate) struct HandlerMetrics {
    pub(crate) accepted: IntCounter,
    pub(crate) released: IntCounter,
    pub(crate) dead_lettered: IntCounter,
    pub(crate) rejected: IntCounter,
    pub(crate) duration: Histogram,
    pub(crate) attempts: Histogram,
    pub(crate) in_flight: IntGauge,
    pub(crate) prefetched: IntGauge,
    /// `shareworker_prefetch_target`.
    pub(crate) prefetch_target: IntGauge,
    pub(crate) held: IntGauge,
    pub(crate) redeliveries: IntCounter,
    pub(crate) lease_expired: IntCounter,
    pub(crate) dead_letter_failures: IntCounter,
    pub(crate) dead_letters_abandoned: IntCounter,
    pub(crate) archived: IntCounter,
    /// `shareworker_missing_acl` of Write on the handler's dead-letter topic, when it has one.
    pub(crate) dead_letter_acl: Option<IntGauge>,
}

/// One group's metrics.
#[derive(Clone)]
pub(crate) struct GroupMetrics {
    pub(crate) renewals: IntCounter,
    pub(crate) renewal_failures: IntCounter,
    pub(crate) locks_lost: IntCounter,
    pub(crate) fetch_duration: Histogram,
    pub(crate) fetched: IntCounter,
}

/// `shareworker_broker_errors_total{api,code}`, read from the broker at each scrape.
struct BrokerErrors {
    broker: Arc<dyn Broker>,
    desc: Desc,
    name: &'static str,
    help: &'static str,
}

impl BrokerErrors {
    const NAME: &'static str = "shareworker_broker_errors_total";
    const HELP: &'static str = "Errors from the broker, by API and Kafka error code (or network, timeout, codec), counted where the broker answered, retried ones included. Counted per broker client.";

    fn new(broker: Arc<dyn Broker>) -> Result<Self, Error> {
        let desc = Desc::new(
            Self::NAME.into(),
            Self::HELP.into(),
            vec!["api".into(), "code".into()],
            Default::default(),
        )
        .map_err(prom)?;
        Ok(Self {
            broker,
            desc,
            name: Self::NAME,
            help: Self::HELP,
        })
    }
}

impl Collector for BrokerErrors {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Ok(counter) = IntCounterVec::new(Opts::new(self.name, self.help), &["api", "code"])
        else {
            return Vec::new();
        };
        for e in self.broker.error_counts() {
            counter
                .with_label_values(&[e.api.as_str(), e.code.as_str()])
                .inc_by(e.count);
        }
        counter.collect()
    }
}

/// `shareworker_log_write_errors_total`, read at each scrape from the process-wide count of
/// log lines that could not be written to stderr (stderr is one per process, so is its count).
struct LogWriteErrors {
    desc: Desc,
}

impl LogWriteErrors {
    const NAME: &'static str = "shareworker_log_write_errors_total";
    const HELP: &'static str = "Log lines that could not be written to stderr (its reader gone) and were dropped; the worker goes on. Counted per process.";

    fn new() -> Result<Self, Error> {
        let desc = Desc::new(
            Self::NAME.into(),
            Self::HELP.into(),
            Vec::new(),
            Default::default(),
        )
        .map_err(prom)?;
        Ok(Self { desc })
    }
}

impl Collector for LogWriteErrors {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Ok(counter) = IntCounter::with_opts(Opts::new(Self::NAME, Self::HELP)) else {
            return Vec::new();
        };
        counter.inc_by(crate::logging::write_errors());
        counter.collect()
    }
}

/// Records per second between two readings of a topic's end offsets; `None` without an earlier
/// reading or when the offsets went back (the topic was recreated).
pub(crate) fn rate(before: Option<(u64, f64)>, now: (u64, f64)) -> Option<f64> {
    let (old, t0) = before?;
    let dt = now.1 - t0;
    if dt <= 0.0 || now.0 < old {
        return None;
    }
    Some((now.0 - old) as f64 / dt)
}

/// A gauge that keeps the last rate; exported for the autoscaler's arrival rate.
pub(crate) fn set_rate(g: &Gauge, r: f64) {
    g.set(if r.is_finite() { r } else { 0.0 });
}
