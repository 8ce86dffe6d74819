//! [`Exporter`]: share lag and the replica hint of groups, without running their handlers.
//!
//! A process of its own (the CLI's `shareworker exporter`) for autoscalers that should not
//! depend on the workers being up: it reads the groups' share lag and their topics' arrival
//! rates from the broker, turns them into `shareworker_desired_replicas` with the
//! [`autoscale`](crate::autoscale) estimator, and serves them on `/metrics` with the same HTTP
//! server as a worker. It sits above the estimator, the metrics and the HTTP server, and
//! nothing in the runtime depends on it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::Error;
use crate::autoscale::AutoscaleConfig;
use crate::broker::BrokerAdmin;
use crate::config::{Config, HttpConfig};
use crate::http::{AdminAccess, AdminContext, Endpoint, HttpState};
use crate::metrics::Metrics;
use crate::metrics::refresh::{self, GroupView, HandlerView, Source};
use crate::status::WorkerStatus;

/// A group the [`Exporter`] watches, with what a replica of its worker can do.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ExportedGroup {
    /// The share group.
    pub group: String,
    /// Its topics.
    pub topics: Vec<String>,
    /// The mean handler time to plan with (the workers measure theirs; here it is given).
    pub handler_time: Duration,
    /// Handlers one replica runs at once for this group.
    pub concurrency: u32,
}

impl ExportedGroup {
    /// A group reading `topics`, whose jobs take `handler_time` on average, with `concurrency`
    /// handlers per replica.
    pub fn new(
        group: impl Into<String>,
        topics: Vec<String>,
        handler_time: Duration,
        concurrency: u32,
    ) -> Self {
        Self {
            group: group.into(),
            topics,
            handler_time,
            concurrency,
        }
    }
}

/// Serves `shareworker_share_lag_records`, `shareworker_arrival_rate_records_per_second` and
/// `shareworker_desired_replicas` for groups whose workers may all be stopped.
///
/// The hint goes to 0 when a group is idle, and a worker scaled to zero exports nothing: an
/// autoscaler reading only the workers would never wake them. An exporter is the always-on
/// source for that case (one small process per cluster); scale on the maximum over the workers
/// and the exporter, as the KEDA query `max(shareworker_desired_replicas{group="..."})` does.
/// `shareworker exporter` runs one from the command line.
///
/// ```no_run
/// use std::time::Duration;
/// use shareworker::autoscale::AutoscaleConfig;
/// use shareworker::exporter::{ExportedGroup, Exporter};
///
/// # #[tokio::main] async fn main() -> Result<(), shareworker::Error> {
/// let kafka = shareworker::KafkaBroker::connect("kafka://127.0.0.1:9092").await?;
/// Exporter::new(std::sync::Arc::new(kafka), AutoscaleConfig::default())
///     .group(ExportedGroup::new("send_email", vec!["emails".into()], Duration::from_millis(200), 32))
///     .serve("0.0.0.0:9464", async { let _ = tokio::signal::ctrl_c().await; })
///     .await?;
/// # Ok(()) }
/// ```
pub struct Exporter {
    broker: Arc<dyn BrokerAdmin>,
    autoscale: AutoscaleConfig,
    groups: Vec<ExportedGroup>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("broker", &self.broker.kind())
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

impl Exporter {
    /// An exporter on `broker` computing the hint with `autoscale`.
    pub fn new(broker: Arc<dyn BrokerAdmin>, autoscale: AutoscaleConfig) -> Self {
        Self {
            broker,
            autoscale,
            groups: Vec::new(),
        }
    }

    /// Adds a group to watch.
    #[must_use]
    pub fn group(mut self, group: ExportedGroup) -> Self {
        self.groups.push(group);
        self
    }

    /// Listens on `address` and serves `/metrics`, `/healthz` and `/readyz` until `shutdown`
    /// completes.
    ///
    /// # Errors
    /// With a clear message when there is no group, a group has no topic or a zero
    /// concurrency, the settings are out of range, or the address cannot be bound.
    pub async fn serve(
        self,
        address: &str,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        if self.groups.is_empty() {
            return Err(Error::config("the exporter has no group to watch"));
        }
        for g in &self.groups {
            if g.group.is_empty() || g.topics.is_empty() || g.topics.iter().any(String::is_empty) {
                return Err(Error::config(format!(
                    "group `{}`: a group needs a name and at least one topic",
                    g.group
                )));
            }
            if g.concurrency == 0 {
                return Err(Error::config(format!(
                    "group `{}`: the concurrency per replica must be at least 1",
                    g.group
                )));
            }
        }
        self.autoscale.validate().map_err(Error::config)?;
        let metrics = Arc::new(Metrics::new(self.broker.clone())?);
        let status = WorkerStatus::default();
        let http = HttpConfig {
            address: address.to_owned(),
            ..HttpConfig::default()
        };
        let server = Endpoint::start(
            &http,
            HttpState {
                metrics: metrics.clone(),
                status: status.clone(),
                admin: Arc::new(AdminContext::new(
                    self.broker.clone(),
                    Some(self.broker.clone()),
                    &Config::default(),
                    AdminAccess::read_only(),
                )),
            },
        )
        .await?;
        info!(address = %server.address(), groups = self.groups.len(), "exporting share lag and replica hints");
        let views = self
            .groups
            .iter()
            .map(|g| GroupView {
                group: g.group.clone(),
                limit: None,
                handlers: g
                    .topics
                    .iter()
                    .map(|t| HandlerView {
                        topic: t.clone(),
                        source: Source::Assumed(g.handler_time),
                        // The replica's concurrency is for the whole group: split over topics.
                        concurrency: (g.concurrency / u32::try_from(g.topics.len()).unwrap_or(1))
                            .max(1),
                    })
                    .collect(),
            })
            .collect();
        let stop = CancellationToken::new();
        status.set_joined();
        let refresh = tokio::spawn(refresh::run(
            self.broker.clone(),
            metrics,
            views,
            self.autoscale.clone(),
            u32::MAX,
            status.clone(),
            stop.clone(),
        ));
        shutdown.await;
        status.set_stopping();
        stop.cancel();
        // It only reads; a read waiting on a broker that does not answer must not hold up the
        // shutdown for the request timeout.
        refresh.abort();
        let _ = refresh.await;
        server.stop().await;
        Ok(())
    }
}
