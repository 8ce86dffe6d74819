//! [`WorkerBuilder`]: loads the configuration, connects to the broker, reads each group's
//! limits and prepares the dead-letter topics before a [`Worker`] runs.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use figment::Figment;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::events::{EventSink, JobEvent};
use super::group::HandlerRt;
use super::{Signal, Worker};
use crate::Error;
use crate::broker::{Broker, BrokerAdmin};
use crate::config::{self, Config, DeadLetter, Declared, Sources};
use crate::definition::JobDefinition;
use crate::embedded::EmbeddedBroker;
use crate::http::{self, AdminAccess, AdminContext};
use crate::limits::DeliveryLimit;
use crate::metrics::Metrics;
use crate::state::States;
use crate::status::WorkerStatus;

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
    pub(super) broker: Option<Arc<dyn Broker>>,
    /// The same broker's operator views, for the HTTP admin routes.
    pub(crate) admin: Option<Arc<dyn BrokerAdmin>>,
    pub(super) definitions: Vec<JobDefinition>,
    base: Config,
    sources: Sources,
    signal: Option<Signal>,
    handle_signals: bool,
    events: EventSink,
    pub(crate) states: States,
    /// `only_handlers`, over `handlers_enabled`.
    pub(super) only: Option<Vec<String>>,
}

impl WorkerBuilder {
    /// An empty builder: no broker (the configuration names one), no handlers, the standard
    /// configuration sources, OS signals handled.
    pub(super) fn new() -> Self {
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
    pub(super) fn runs(&self, name: &str, config: &Config) -> bool {
        match self.only.as_ref().or(config.handlers_enabled.as_ref()) {
            Some(names) => names.iter().any(|n| n == name),
            None => true,
        }
    }

    /// The configuration of every handler of the builder (selected or not), after checking
    /// that there are handlers, with different names.
    pub(super) fn load_config(&self) -> Result<Config, Error> {
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
        let config = config::load(&self.base, &declared, &self.sources)?;
        check_group_names(&config)?;
        Ok(config)
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

    /// Does not listen for SIGINT and SIGTERM; stop the worker with its [`ShutdownHandle`](super::ShutdownHandle).
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
            if let Some(settings) = config.groups.get(group) {
                apply_group_settings(&*broker, group, settings).await?;
            }
            let (limits, broker_dlq) = group_settings(&*broker, &metrics, group).await?;
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
                if let DeadLetter::Topic(t) = h.config.dead_letter.clone() {
                    prepare_dead_letter_topic(&*broker, &metrics, h, &t).await;
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
        Ok(Worker {
            broker,
            groups,
            delivery_limits,
            global: Arc::new(Semaphore::new(config.concurrency as usize)),
            shutdown: CancellationToken::new(),
            stop_now: CancellationToken::new(),
            signal: self.signal,
            handle_signals: self.handle_signals,
            events: self.events,
            config,
            status,
            metrics,
            http,
        })
    }
}

/// Creates the handler's own dead-letter topic, or says (in a log line and the missing-ACL
/// gauge) what the worker's principal lacks to write to it.
async fn prepare_dead_letter_topic(
    broker: &dyn Broker,
    metrics: &Metrics,
    h: &mut HandlerRt,
    t: &str,
) {
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

/// Every `groups.<group>` section names a group of one of the binary's handlers (selected to
/// run or not): a typo would otherwise set nothing, silently.
fn check_group_names(config: &Config) -> Result<(), Error> {
    for group in config.groups.keys() {
        if config.handlers.values().any(|h| h.group == *group) {
            continue;
        }
        let mut known: Vec<&str> = config.handlers.values().map(|h| h.group.as_str()).collect();
        known.sort_unstable();
        known.dedup();
        return Err(Error::config(format!(
            "`groups.{group}`: no handler of this worker reads in share group `{group}`; the groups of its handlers are: {} (a handler's group is its name unless `handlers.<name>.group` or `#[job(group = ...)]` says otherwise)",
            known.join(", ")
        )));
    }
    Ok(())
}

/// Sets `groups.<group>` on the broker before the worker joins the group. A refusal stops the
/// worker: it would otherwise run with settings other than those it was given (a group that
/// starts at the end of its topics instead of their start, say).
async fn apply_group_settings(
    broker: &dyn Broker,
    group: &str,
    settings: &config::GroupSettings,
) -> Result<(), Error> {
    if settings.is_empty() {
        return Ok(());
    }
    match broker
        .configure_group(group, &settings.to_group_config())
        .await
    {
        Ok(()) => {
            info!(group = %group, configs = %settings.describe(), "share-group configs set from `groups.{group}`");
            Ok(())
        }
        // The broker's error, with its kind (not authorized, config) and code, says more.
        Err(e) if e.is_not_authorized() => {
            let message = format!(
                "`groups.{group}`: the worker's principal may not change the share group's configs (no AlterConfigs ACL on Group:{group}): grant it, or have an operator set them (`shareworker group config {group} --set ...`) and remove `groups.{group}` from this worker's configuration ({e})"
            );
            Err(e.with_message(message))
        }
        Err(e) if e.is_config() || e.is_invalid_input() => {
            let message = format!(
                "`groups.{group}`: the broker refused {}: {e}",
                settings.describe()
            );
            Err(e.with_message(message))
        }
        Err(e) => Err(e),
    }
}

/// The group's limits and its broker-side dead-letter topic, as the broker answers them; Kafka's
/// defaults and no broker-side dead letters when the worker may not read the group's configuration
/// (said in a log line and the missing-ACL gauge).
async fn group_settings(
    broker: &dyn Broker,
    metrics: &Metrics,
    group: &str,
) -> Result<(crate::broker::GroupLimits, Option<String>), Error> {
    let read = async {
        let limits = broker.group_limits(group).await?;
        let broker_dlq = broker.broker_dead_letter(group).await?;
        Ok::<_, Error>((limits, broker_dlq))
    };
    match read.await {
        Ok(read) => Ok(read),
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
            Ok((defaults, None))
        }
        Err(e) => Err(e),
    }
}

/// The broker the configuration names: the embedded one, or Kafka.
pub(super) async fn broker_from_config(config: &Config) -> Result<Arc<dyn BrokerAdmin>, Error> {
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
