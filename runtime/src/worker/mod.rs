//! The worker: runs handlers on a broker until a shutdown signal.

mod app;
mod decide;
mod events;
mod group;
mod prefetch;
mod run;
use crate::{limits, logging};

pub use app::App;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use figment::Figment;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use events::{JobEvent, Outcome};

use crate::Error;
use crate::broker::{Broker, BrokerAdmin};
use crate::config::{self, Config, DeadLetter, Declared, Sources};
use crate::definition::JobDefinition;
use crate::embedded::EmbeddedBroker;
use crate::http::{self, AdminAccess, AdminContext};
pub(crate) use crate::limits::DeliveryLimit;
use crate::metrics::{self, Metrics};
use crate::state::States;
pub(crate) use crate::status::WorkerStatus;
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
        crate::LogFormat::Json => builder
            .json()
            .event_format(crate::logs::JsonEvents::new())
            .try_init(),
        crate::LogFormat::Text => builder.try_init(),
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

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    rejected: AtomicU64,
    lease_expired: AtomicU64,
    settle_failures: AtomicU64,
}

impl Counters {
    fn count(&self, e: &JobEvent) {
        let c = match e.outcome {
            Outcome::Accepted => &self.accepted,
            Outcome::Retrying { .. } => &self.retried,
            Outcome::DeadLettered | Outcome::DeadLetteredByBroker { .. } => &self.dead_lettered,
            Outcome::Rejected { .. } => &self.rejected,
            Outcome::LeaseExpired => &self.lease_expired,
            Outcome::SettleFailed { .. } => &self.settle_failures,
            _ => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn summary(&self) -> RunSummary {
        RunSummary {
            accepted: self.accepted.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            lease_expired: self.lease_expired.load(Ordering::Relaxed),
            settle_failures: self.settle_failures.load(Ordering::Relaxed),
        }
    }
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

/// Assembles a [`Worker`]: a broker, handlers and configuration.
///
/// ```no_run
/// use shareworker::{EmbeddedBroker, Job, JobDefinition, JobError, Worker};
///
/// async fn hello(job: Job<String>) -> Result<(), JobError> {
///     println!("hello, {}", job.payload());
///     Ok(())
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), shareworker::Error> {
/// let worker = Worker::builder()
///     .broker(EmbeddedBroker::new())
///     .job(JobDefinition::new("hello", "greetings", hello).concurrency(4))
///     .build()
///     .await?;
/// worker.run().await?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct WorkerBuilder {
    broker: Option<Arc<dyn Broker>>,
    /// The same broker's operator views, for the HTTP admin routes.
    pub(crate) admin: Option<Arc<dyn BrokerAdmin>>,
    definitions: Vec<JobDefinition>,
    base: Config,
    sources: Sources,
    signal: Option<Signal>,
    handle_signals: bool,
    events: EventSink,
    pub(crate) states: States,
    /// `only_handlers`, over `handlers_enabled`.
    only: Option<Vec<String>>,
}

impl WorkerBuilder {
    /// Registers `value` as state: handlers that take [`State<T>`](crate::State) of its type
    /// get a clone for each job. A later value of one type replaces the earlier one.
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.states.insert(value);
        self
    }

    /// Uses this broker instead of the one the configuration names, with its operator views
    /// for the HTTP admin routes.
    pub fn broker(self, broker: impl BrokerAdmin) -> Self {
        self.broker_admin_arc(Arc::new(broker))
    }

    /// Uses this shared broker. It has no operator views: the HTTP admin routes that need them
    /// (status, group configs, dead letters) answer an error; see
    /// [`broker_admin_arc`](Self::broker_admin_arc).
    pub fn broker_arc(mut self, broker: Arc<dyn Broker>) -> Self {
        self.broker = Some(broker);
        self.admin = None;
        self
    }

    /// Uses this shared broker, with its operator views for the HTTP admin routes.
    pub fn broker_admin_arc(mut self, broker: Arc<dyn BrokerAdmin>) -> Self {
        self.broker = Some(broker.clone());
        self.admin = Some(broker);
        self
    }

    /// Adds a handler.
    pub fn job(mut self, definition: JobDefinition) -> Self {
        self.definitions.push(definition);
        self
    }

    /// Runs only the handlers with these names, over the configuration's `handlers_enabled`
    /// (one binary, several deployments). A name that is not a handler of the worker stops it
    /// at start, listing the names there are.
    pub fn only_handlers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.only = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Whether the handler `name` runs, given `config`.
    fn runs(&self, name: &str, config: &Config) -> bool {
        match self.only.as_ref().or(config.handlers_enabled.as_ref()) {
            Some(names) => names.iter().any(|n| n == name),
            None => true,
        }
    }

    /// The configuration of every handler of the builder (selected or not), after checking
    /// that there are handlers, with different names.
    fn load_config(&self) -> Result<Config, Error> {
        self.check_handlers()?;
        let declared: Vec<Declared<'_>> = self
            .definitions
            .iter()
            .map(|d| Declared {
                name: &d.name,
                topic: &d.topic,
                overrides: &d.overrides,
            })
            .collect();
        config::load(&self.base, &declared, &self.sources)
    }

    /// There are handlers, with different names.
    fn check_handlers(&self) -> Result<(), Error> {
        if self.definitions.is_empty() {
            return Err(Error::config(NO_HANDLERS));
        }
        let mut names = BTreeMap::new();
        for d in &self.definitions {
            if names.insert(d.name.to_string(), ()).is_some() {
                return Err(Error::config(format!(
                    "two handlers are named `{}`; handler names must be unique",
                    d.name
                )));
            }
        }
        Ok(())
    }

    /// Keeps the definitions of the handlers that run, after checking the selection's names.
    fn select(&mut self, config: &Config) -> Result<(), Error> {
        let (names, key) = match (&self.only, &config.handlers_enabled) {
            (Some(n), _) => (n, "--handlers"),
            (None, Some(n)) => (n, "handlers_enabled"),
            (None, None) => return Ok(()),
        };
        let mut known: Vec<&str> = self.definitions.iter().map(|d| d.name()).collect();
        known.sort_unstable();
        if let Some(unknown) = names.iter().find(|n| !known.contains(&n.as_str())) {
            return Err(Error::config(format!(
                "`{key}` names `{unknown}`, and this binary has no handler of that name; its handlers are: {}",
                known.join(", ")
            )));
        }
        if names.is_empty() {
            return Err(Error::config(format!(
                "`{key}` is empty: name at least one of the handlers: {}",
                known.join(", ")
            )));
        }
        let all = std::mem::take(&mut self.definitions);
        let (run, skip): (Vec<_>, Vec<_>) =
            all.into_iter().partition(|d| self.runs(d.name(), config));
        let skipped: Vec<&str> = skip.iter().map(|d| d.name()).collect();
        info!(handlers = ?run.iter().map(|d| d.name()).collect::<Vec<_>>(), not_run = ?skipped, from = key,
            "running a selection of this binary's handlers");
        self.definitions = run;
        Ok(())
    }

    /// Adds every `#[job]` handler linked into this binary.
    pub fn registered_jobs(mut self) -> Self {
        self.definitions.extend(crate::__private::registered());
        self
    }

    /// Starts from this configuration instead of the built-in defaults. The file and the
    /// environment still apply on top unless [`WorkerBuilder::code_config_only`] is called.
    pub fn config(mut self, config: Config) -> Self {
        self.base = config;
        self
    }

    /// Reads this file instead of `shareworker.toml` (the environment still applies on top);
    /// [`build`](Self::build) fails when it does not exist.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.sources = Sources::File(path.into());
        self
    }

    /// Layers this figment over the defaults and the code, instead of the file and environment.
    pub fn figment(mut self, figment: Figment) -> Self {
        self.sources = Sources::Custom(Box::new(figment));
        self
    }

    /// Ignores `shareworker.toml` and the environment: only defaults and code (for tests).
    pub fn code_config_only(mut self) -> Self {
        self.sources = Sources::CodeOnly;
        self
    }

    /// Shuts down when this future completes, instead of on SIGINT or SIGTERM.
    pub fn shutdown_signal(mut self, signal: impl Future<Output = ()> + Send + 'static) -> Self {
        self.signal = Some(Box::pin(signal));
        self
    }

    /// Does not listen for SIGINT and SIGTERM; stop the worker with its [`ShutdownHandle`].
    pub fn without_signal_handling(mut self) -> Self {
        self.handle_signals = false;
        self
    }

    /// Calls `f` for every [`JobEvent`]; it must be quick (it runs on the dispatcher).
    pub fn on_event(mut self, f: impl Fn(&JobEvent) + Send + Sync + 'static) -> Self {
        self.events.add(Arc::new(f));
        self
    }

    /// Loads and checks the configuration, connects to the broker and reads each group's limits.
    ///
    /// # Errors
    /// With the key's name and what is allowed when a configuration value is bad; when there
    /// are no handlers, two handlers of one group read one topic, or the broker fails.
    pub async fn build(mut self) -> Result<Worker, Error> {
        let config = self.load_config()?;
        let file = self.sources.file()?;
        let which = match &self.broker {
            Some(b) => format!("{} (given in the code)", b.kind()),
            None => config.broker.clone(),
        };
        info!(config = %self.sources.describe(file.as_deref()), broker = %which,
            "configuration loaded");
        self.select(&config)?;
        let (broker, admin): (Arc<dyn Broker>, _) = match self.broker {
            Some(b) => (b, self.admin),
            None => {
                let b = broker_from_config(&config).await?;
                (b.clone(), Some(b))
            }
        };
        let metrics = Arc::new(Metrics::new(broker.clone())?);
        metrics
            .worker_concurrency
            .set(i64::from(config.concurrency));
        let mut groups: BTreeMap<String, Vec<HandlerRt>> = BTreeMap::new();
        for def in self.definitions {
            let cfg = config.handlers.get(&*def.name).cloned().ok_or_else(|| {
                Error::config(format!("no configuration for handler `{}`", def.name))
            })?;
            self.states.check(&def.name, def.needs())?;
            let (name, service) = def.into_service(cfg.concurrency as usize, &self.states);
            let handlers = groups.entry(cfg.group.clone()).or_default();
            if let Some(other) = handlers.iter().find(|h| *h.topic == *cfg.topic) {
                return Err(Error::config(format!(
                    "handlers `{}` and `{name}` both read topic `{}` in group `{}`; give one of them another group",
                    other.name, cfg.topic, cfg.group
                )));
            }
            handlers.push(HandlerRt {
                topic: Arc::from(cfg.topic.as_str()),
                metrics: metrics.handler(&name, &cfg.group, cfg.concurrency),
                name,
                service,
                broker_dead_letter: None,
                config: cfg,
            });
        }
        let mut delivery_limits = BTreeMap::new();
        for (group, handlers) in &mut groups {
            let (limits, broker_dlq) = match group_settings(&*broker, group).await {
                Ok(read) => read,
                Err(e) if e.is_not_authorized() => {
                    let resource = format!("Group:{group}");
                    metrics
                        .missing_acl("group_configs", "DescribeConfigs", &resource)
                        .set(1);
                    let defaults = crate::broker::GroupLimits::default();
                    warn!(group = %group, error = %e, missing_acl = %format!("DescribeConfigs on {resource}"),
                        delivery_count_limit = defaults.delivery_count_limit,
                        "cannot read the share group's configuration: the worker's principal lacks the DescribeConfigs ACL on the group. \
                         Going on with Kafka's defaults: a delivery count limit of {} (set max_attempts at or below the group's real limit, or the broker archives records before their last attempt) \
                         and no broker-side dead-letter queue (if the group has one, dead letters are written twice)",
                        defaults.delivery_count_limit);
                    (defaults, None)
                }
                Err(e) => return Err(e),
            };
            let limit = DeliveryLimit::new(
                group,
                limits.delivery_count_limit,
                metrics.delivery_limit(group),
            );
            limit.set_record_locks(limits.max_record_locks);
            delivery_limits.insert(group.clone(), limit);
            if let Some(t) = &broker_dlq {
                info!(group = %group, dead_letter = %t,
                    "the group has the broker's dead-letter queue: after the last attempt the runtime rejects and the broker writes the dead letter");
                if let Err(e) = broker.prepare_broker_dead_letter(t).await {
                    if e.is_not_authorized() {
                        metrics
                            .missing_acl(
                                "broker_dead_letter_setup",
                                "AlterConfigs",
                                &format!("Topic:{t}"),
                            )
                            .set(1);
                    }
                    warn!(group = %group, dead_letter = %t, error = %e,
                        "could not create the broker's dead-letter topic or enable errors.deadletterqueue.group.enable on it (needs Create and AlterConfigs on the topic, or an operator does it); the broker archives dead letters instead of writing them there");
                }
            }
            for h in handlers.iter_mut() {
                // The limit is read again at every refresh; the attempts follow it.
                let limit = limits.delivery_count_limit;
                if let Some(n) = h.config.max_attempts
                    && n > limit
                {
                    warn!(handler = %h.name, group = %group, max_attempts = n, delivery_count_limit = limit,
                        "max_attempts is above the group's delivery count limit; the broker would archive the record first, so {limit} attempts it is");
                }
                h.broker_dead_letter = broker_dlq.as_deref().map(Arc::from);
                if let (Some(b), DeadLetter::Topic(own)) = (&broker_dlq, &h.config.dead_letter) {
                    info!(handler = %h.name, dead_letter = %own, broker_dead_letter = %b,
                        "the handler's dead_letter topic is not used: the group's broker-side dead-letter queue takes its dead letters");
                    continue;
                }
                if let DeadLetter::Topic(t) = &h.config.dead_letter {
                    let resource = format!("Topic:{t}");
                    let write = metrics.missing_acl("dead_letter_write", "Write", &resource);
                    write.set(0);
                    h.metrics.dead_letter_acl = Some(write.clone());
                    match broker.create_topic(t, 1).await {
                        Ok(()) => {}
                        // The topic is not there, or the principal may not even see it.
                        Err(e) if e.is_not_authorized() => match broker.offsets(t).await {
                            Err(seen) if seen.is_not_authorized() => {
                                write.set(1);
                                warn!(handler = %h.name, dead_letter = %t, error = %seen, missing_acl = %format!("Write on {resource}"),
                                        "the worker's principal may not write to the dead-letter topic (no Write ACL on it): \
                                         records that fail for good are held and their dead letters retried until it is granted");
                            }
                            Ok(_) => {
                                warn!(handler = %h.name, dead_letter = %t, error = %e, "could not create the dead-letter topic");
                            }
                            Err(_) => {
                                metrics
                                    .missing_acl("dead_letter_create", "Create", &resource)
                                    .set(1);
                                warn!(handler = %h.name, dead_letter = %t, error = %e, missing_acl = %format!("Create on {resource}"),
                                        "the dead-letter topic does not exist and the worker's principal may not create it (no Create ACL): \
                                         create it, or grant Create on it; until then records that fail for good are held and their dead letters retried");
                            }
                        },
                        Err(e) => {
                            warn!(handler = %h.name, dead_letter = %t, error = %e, "could not create the dead-letter topic");
                        }
                    }
                }
            }
        }
        let status = WorkerStatus::default();
        // Serve from now on: liveness answers while the worker joins its groups.
        let http = if config.http.enabled {
            let (access, warning) = AdminAccess::from_config(&config.http)?;
            if let Some(w) = warning {
                warn!("{w}");
            }
            let in_flight: BTreeMap<String, prometheus::IntGauge> = groups
                .values()
                .flatten()
                .map(|h| (h.name.to_string(), h.metrics.in_flight.clone()))
                .collect();
            let admin = AdminContext::new(broker.clone(), admin.clone(), &config, access)
                .with_in_flight(move |handler| {
                    in_flight
                        .get(handler)
                        .map(|g| u64::try_from(g.get()).unwrap_or(0))
                });
            let state = http::HttpState {
                metrics: metrics.clone(),
                status: status.clone(),
                admin: Arc::new(admin),
            };
            Some(http::Endpoint::start(&config.http, state).await?)
        } else {
            None
        };
        let counters = Arc::new(Counters::default());
        let mut events = self.events;
        let c = counters.clone();
        events.add(Arc::new(move |e| c.count(e)));
        Ok(Worker {
            broker,
            groups,
            delivery_limits,
            global: Arc::new(Semaphore::new(config.concurrency as usize)),
            shutdown: CancellationToken::new(),
            stop_now: CancellationToken::new(),
            signal: self.signal,
            handle_signals: self.handle_signals,
            events,
            counters,
            config,
            status,
            metrics,
            http,
        })
    }
}

/// The group's limits and its broker-side dead-letter topic, as the broker answers them.
async fn group_settings(
    broker: &dyn Broker,
    group: &str,
) -> Result<(crate::broker::GroupLimits, Option<String>), Error> {
    let limits = broker.group_limits(group).await?;
    let broker_dlq = broker.broker_dead_letter(group).await?;
    Ok((limits, broker_dlq))
}

async fn broker_from_config(config: &Config) -> Result<Arc<dyn BrokerAdmin>, Error> {
    if config.broker == "embedded" {
        let b = EmbeddedBroker::builder()
            .default_partitions(config.embedded.partitions)
            .start_from(config.embedded.start_from.into())
            .lock_duration(config.embedded.lock_duration)
            .delivery_count_limit(config.embedded.delivery_count_limit)
            .max_message_bytes(config.embedded.max_message_bytes)
            .build()
            .map_err(|e| Error::config(format!("`embedded`: {e}")))?;
        warn!(
            max_message_bytes = config.embedded.max_message_bytes,
            "broker = \"embedded\": an in-process broker that keeps its records in memory only; a restart or crash of this process loses every job not yet done, and other processes cannot enqueue to it. Use kafka://host:port for anything that must survive"
        );
        return Ok(Arc::new(b));
    }
    #[cfg(feature = "kafka")]
    return Ok(Arc::new(
        crate::KafkaBroker::from_config(&config.broker, &config.kafka).await?,
    ));
    #[cfg(not(feature = "kafka"))]
    Err(Error::config(format!(
        "`broker`: {}",
        crate::config::NO_KAFKA
    )))
}

/// Why a worker has no handlers, and what to do.
const NO_HANDLERS: &str = "no handlers: annotate an async fn with #[shareworker::job(topic = \"...\")] or add one with WorkerBuilder::job. \
     Handlers in a library crate are linked only when the binary uses that crate: add `use my_jobs as _;` (the library's name) to the binary's main.rs";

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
    counters: Arc<Counters>,
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
        WorkerBuilder {
            broker: None,
            admin: None,
            definitions: Vec::new(),
            base: Config::default(),
            sources: Sources::Standard,
            signal: None,
            handle_signals: true,
            events: EventSink::default(),
            states: States::default(),
            only: None,
        }
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
        stop_side_tasks().await;
        let summary = self.counters.summary();
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
