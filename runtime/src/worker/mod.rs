//! The worker: runs handlers on a broker until a shutdown signal.

mod app;
mod builder;
mod decide;
mod events;
mod group;
mod prefetch;
mod run;
mod topics;
use crate::logging;

pub use app::App;
pub use builder::WorkerBuilder;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use events::{JobEvent, Outcome};

use crate::Error;
use crate::broker::Broker;
use crate::config::{self, Config};
use crate::http;
pub(crate) use crate::limits::DeliveryLimit;
use crate::metrics::{self, Metrics};
pub use crate::status::WorkerStatus;
use events::EventSink;
use group::{GroupRunner, HandlerRt};

type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs every `#[job]` handler in this binary until SIGINT or SIGTERM, with configuration from
/// `shareworker.toml` and `SHAREWORKER_*` over the attributes in the code.
///
/// Installs a `tracing` subscriber that logs to stderr (filter from `RUST_LOG`, default `info`)
/// unless one is installed already.
///
/// ```no_run
/// #[shareworker::job(topic = "emails")]
/// async fn send_email(job: shareworker::Job<String>) -> Result<(), shareworker::JobError> {
///     println!("sending {}", job.payload());
///     Ok(())
/// }
///
/// #[tokio::main]
/// async fn main() -> Result<(), shareworker::Error> {
///     shareworker::run().await?;
///     Ok(())
/// }
/// ```
///
/// # Errors
/// When the configuration is invalid, no handler is registered, or the broker cannot be reached.
pub async fn run() -> Result<RunSummary, Error> {
    init_tracing();
    Worker::builder()
        .registered_jobs()
        .build()
        .await?
        .run()
        .await
}

/// Installs the default log subscriber unless the application installed one: to stderr,
/// filtered by `RUST_LOG` (default `info`), as text or, with `log.format = "json"` in
/// `shareworker.toml` or `SHAREWORKER_LOG__FORMAT=json`, as one JSON object per line.
///
/// Logging never stops the worker: a line that cannot be written (stderr's reader is gone) is
/// dropped and counted in `shareworker_log_write_errors_total`. With the subscriber, a panic
/// hook is installed that logs panics (a handler's included) as `ERROR` events of target
/// `panic`, with the backtrace as a field only when `RUST_BACKTRACE` asks for it.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(logging::Stderr)
        // The writer never fails; and when a write does fail, the subscriber's own report of
        // it goes to stderr with `eprintln!`, which panics when stderr is what failed.
        .log_internal_errors(false)
        // Colours for people at a terminal, plain text for files and log collectors.
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match config::standard_log_format() {
        crate::config::LogFormat::Json => builder
            .json()
            .event_format(crate::logs::JsonEvents::new())
            .try_init(),
        crate::config::LogFormat::Text => builder.try_init(),
    };
    if installed.is_ok() {
        logging::install_panic_hook();
    }
}

/// Counts of what a worker did, returned by [`Worker::run`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RunSummary {
    /// Jobs that succeeded.
    pub accepted: u64,
    /// Failed attempts that will be retried.
    pub retried: u64,
    /// Records written to a dead-letter topic.
    pub dead_lettered: u64,
    /// Records rejected without a dead letter (dead-lettering off).
    pub rejected: u64,
    /// Handlers ended by the maximum lease.
    pub lease_expired: u64,
    /// Acknowledgements the broker refused (lock lost).
    pub settle_failures: u64,
}

/// Stops a running [`Worker`] gracefully from elsewhere; cheap to clone.
#[derive(Clone, Debug)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    /// Starts a graceful shutdown: no more fetching, in-flight jobs get the grace period, the
    /// rest is released.
    pub fn shutdown(&self) {
        self.0.cancel();
    }

    /// Whether a shutdown has started.
    pub fn is_shutting_down(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// Runs handlers on a broker: one share-group member per group, dispatching to handlers within
/// their concurrency limits, until shutdown.
pub struct Worker {
    broker: Arc<dyn Broker>,
    groups: BTreeMap<String, Vec<HandlerRt>>,
    /// Each group's delivery count limit, shared by its dispatcher and the refresh task.
    delivery_limits: BTreeMap<String, DeliveryLimit>,
    global: Arc<Semaphore>,
    shutdown: CancellationToken,
    /// Ends the grace period at once (the test worker's time limit).
    stop_now: CancellationToken,
    signal: Option<Signal>,
    handle_signals: bool,
    events: EventSink,
    config: Config,
    status: WorkerStatus,
    metrics: Arc<Metrics>,
    http: Option<http::Endpoint>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("broker", &self.broker.kind())
            .field("groups", &self.groups.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Starts assembling a worker.
    pub fn builder() -> WorkerBuilder {
        WorkerBuilder::new()
    }

    /// A handle that stops this worker gracefully.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// Cancelled, it ends the shutdown grace period at once: what still runs is cancelled and
    /// released.
    pub(crate) fn stop_now_token(&self) -> CancellationToken {
        self.stop_now.clone()
    }

    /// A handle that tells whether the worker is ready.
    pub fn status(&self) -> WorkerStatus {
        self.status.clone()
    }

    /// The configuration in force, after every layer.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The broker the worker runs on.
    pub fn broker(&self) -> Arc<dyn Broker> {
        self.broker.clone()
    }

    /// The Prometheus registry behind `/metrics`. Register the application's own collectors
    /// here to export them with the worker's.
    ///
    /// ```no_run
    /// # async fn f(worker: shareworker::Worker) -> Result<(), Box<dyn std::error::Error>> {
    /// let emails = prometheus::IntCounter::new("myapp_emails_sent_total", "Emails sent.")?;
    /// worker.registry().register(Box::new(emails.clone()))?;
    /// # Ok(()) }
    /// ```
    pub fn registry(&self) -> prometheus::Registry {
        self.metrics.registry.clone()
    }

    /// Everything `/metrics` would answer now, in the Prometheus text format.
    ///
    /// # Errors
    /// When a collector fails to encode.
    pub fn metrics_text(&self) -> Result<String, Error> {
        self.metrics.render()
    }

    /// Where the HTTP endpoint listens (`None` when `http.enabled` is false); with port 0 in
    /// `http.address`, this is the port the system picked.
    pub fn http_address(&self) -> Option<std::net::SocketAddr> {
        self.http.as_ref().map(http::Endpoint::address)
    }

    /// Where the admin routes (`/status`, `/admin/...`) listen: `http.admin_address` if set,
    /// else the same as [`http_address`](Self::http_address).
    pub fn admin_address(&self) -> Option<std::net::SocketAddr> {
        self.http.as_ref().map(http::Endpoint::admin_address)
    }

    /// Joins every group and runs until shutdown; then lets in-flight jobs finish within the
    /// grace period, releases what is left and leaves the groups.
    ///
    /// # Errors
    /// When joining a group fails; [`Error::is_not_authorized`] when the worker's principal may
    /// not read its group or topic (a missing Read ACL), at the join or at the first fetch
    /// (after a graceful stop).
    pub async fn run(self) -> Result<RunSummary, Error> {
        let token = self.shutdown.clone();
        let signal: Option<Signal> = match (self.signal, self.handle_signals) {
            (Some(s), _) => Some(s),
            (None, true) => Some(Box::pin(os_signal())),
            (None, false) => None,
        };
        let watcher = signal.map(|s| {
            let token = token.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = s => {
                        // Stop first: nothing the log line does may keep the worker running.
                        token.cancel();
                        info!("shutdown signal received; finishing in-flight jobs");
                    }
                    _ = token.cancelled() => {}
                }
            })
        });
        let http_stop = CancellationToken::new();
        let http = self.http;
        let views = self
            .groups
            .iter()
            .map(|(group, handlers)| metrics::refresh::GroupView {
                group: group.clone(),
                limit: self.delivery_limits.get(group).cloned(),
                handlers: handlers
                    .iter()
                    .map(|h| metrics::refresh::HandlerView {
                        topic: h.topic.to_string(),
                        source: metrics::refresh::Source::Running(h.metrics.clone()),
                        concurrency: h.config.concurrency,
                    })
                    .collect(),
            })
            .collect();
        let refresh = tokio::spawn(metrics::refresh::run(
            self.broker.clone(),
            self.metrics.clone(),
            views,
            self.config.autoscale.clone(),
            self.config.concurrency,
            self.status.clone(),
            http_stop.clone(),
        ));
        let stop_side_tasks = || async {
            http_stop.cancel();
            // It only reads; a read waiting on a broker that does not answer must not hold up
            // the shutdown for the request timeout.
            refresh.abort();
            let _ = refresh.await;
            if let Some(h) = http {
                h.stop().await;
            }
        };
        let mut runners = Vec::new();
        for (group, handlers) in self.groups {
            let topics: Vec<String> = handlers.iter().map(|h| h.topic.to_string()).collect();
            let member = match self.broker.join(&group, &topics).await {
                Ok(m) => m,
                Err(e) => {
                    let e = if e.is_not_authorized() {
                        let reads: Vec<String> = topics
                            .iter()
                            .map(|t| format!("Read on Topic:{t}"))
                            .collect();
                        let message = format!(
                            "cannot join share group `{group}`: the worker's principal needs Read on Group:{group} and {}; grant them with Kafka's ACL tool (kafka-acls.sh) ({e})",
                            reads.join(", ")
                        );
                        e.with_message(message)
                    } else {
                        e
                    };
                    token.cancel();
                    for r in runners {
                        let _ = tokio::spawn(GroupRunner::run(r)).await;
                    }
                    stop_side_tasks().await;
                    return Err(e);
                }
            };
            info!(group = %group, topics = %crate::logs::Json(&topics), member = member.member_id(), broker = self.broker.kind(), "joined share group");
            let limit = self
                .delivery_limits
                .get(&group)
                .cloned()
                .unwrap_or_else(|| {
                    DeliveryLimit::new(
                        &group,
                        crate::broker::GroupLimits::default().delivery_count_limit,
                        self.metrics.delivery_limit(&group),
                    )
                });
            runners.push(GroupRunner {
                limit,
                metrics: self.metrics.group(&group),
                status: self.status.clone(),
                group: Arc::from(group.as_str()),
                handlers,
                member: Arc::from(member),
                broker: self.broker.clone(),
                global: self.global.clone(),
                shutdown: token.clone(),
                grace: self.config.shutdown_grace,
                stop_now: self.stop_now.clone(),
                max_lease: self.config.max_lease,
                events: self.events.clone(),
            });
        }
        self.status.set_joined();
        let mut read_by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in &runners {
            for h in &r.handlers {
                read_by
                    .entry(h.topic.to_string())
                    .or_default()
                    .push(h.name.to_string());
            }
        }
        let topic_watch = tokio::spawn(topics::watch(
            self.broker.clone(),
            self.metrics.clone(),
            read_by,
            self.config.autoscale.refresh,
            token.clone(),
        ));
        let status = self.status.clone();
        let watch = token.clone();
        tokio::spawn(async move {
            watch.cancelled().await;
            status.set_stopping();
        });
        let tasks: Vec<_> = runners.into_iter().map(|r| tokio::spawn(r.run())).collect();
        for t in tasks {
            if let Err(e) = t.await {
                tracing::error!(error = %e, "a group dispatcher failed");
            }
        }
        token.cancel();
        self.status.set_stopping();
        if let Some(w) = watcher {
            let _ = w.await;
        }
        topic_watch.abort();
        stop_side_tasks().await;
        let summary = self.events.summary();
        if let Some(e) = self.status.take_fatal() {
            tracing::error!(summary = %crate::logs::Json(summary), error = %e, "worker stopped");
            return Err(e);
        }
        info!(summary = %crate::logs::Json(summary), "worker stopped");
        Ok(summary)
    }
}

async fn os_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the worker");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
