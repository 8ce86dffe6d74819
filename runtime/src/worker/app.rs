//! [`App`]: the worker of a binary's `#[job]` handlers, set up before it runs.

use std::sync::Arc;

use tower::{Layer, Service};

use super::WorkerBuilder;
use super::builder::broker_from_config;
use crate::broker::Broker;
use crate::config::{self, Config};
use crate::definition::InnerService;
use crate::job::{BoxError, Job};
use crate::{Error, Queue, Worker, broker::Bytes, worker::RunSummary};

/// The worker of this binary's `#[job]` handlers, between loading its configuration and
/// running: register states, enqueue, add tower layers to handlers, then [`run`](App::run).
/// `#[shareworker::main]` hands one to its body when the body takes `app: &mut App`.
///
/// [`App::from_env`] reads the configuration the worker runs with (`shareworker.toml`,
/// `SHAREWORKER_*`), connects to its broker, and takes `--handlers a,b` from the command line
/// (see [`App::only_handlers`]), so setup code enqueues on the very broker the handlers read.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use shareworker::{App, Job, JobError, queue::Message, State};
///
/// #[derive(Clone, Default)]
/// struct Db(Arc<std::sync::Mutex<Vec<String>>>);
///
/// #[shareworker::job(topic = "signups")]
/// async fn welcome(job: Job<String>, State(db): State<Db>) -> Result<(), JobError> {
///     db.0.lock().map_err(|_| JobError::retry("poisoned"))?.push(job.into_payload());
///     Ok(())
/// }
///
/// #[tokio::main]
/// async fn main() -> Result<(), shareworker::Error> {
///     shareworker::init_tracing();
///     let mut app = App::from_env().await?;
///     app.state(Db::default())
///         .layer("welcome", tower::timeout::TimeoutLayer::new(Duration::from_secs(5)))?;
///     app.queue().send("signups", Message::text("ada@example.com")).await?;
///     app.run().await?;
///     Ok(())
/// }
/// ```
pub struct App {
    builder: Option<WorkerBuilder>,
    broker: Arc<dyn Broker>,
    config: Config,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("broker", &self.broker.kind())
            .field("handlers", &self.handlers())
            .finish_non_exhaustive()
    }
}

impl App {
    /// Every `#[job]` handler of the binary, with the standard configuration and the broker it
    /// names; `--handlers a,b` (or `--handlers=a,b`) on the command line selects handlers.
    ///
    /// # Errors
    /// When the configuration is invalid, no handler is registered, `--handlers` names an
    /// unknown handler, or the broker cannot be reached.
    pub async fn from_env() -> Result<Self, Error> {
        let mut builder = crate::Worker::builder().registered_jobs();
        if let Some(names) = handlers_flag(std::env::args().skip(1))? {
            builder = builder.only_handlers(names);
        }
        Self::new(builder).await
    }

    /// An app around `builder`: its handlers, configuration sources and broker (or the broker
    /// its configuration names, connected now).
    ///
    /// # Errors
    /// When the configuration is invalid or the broker cannot be reached.
    pub async fn new(mut builder: WorkerBuilder) -> Result<Self, Error> {
        let config = builder.load_config()?;
        let broker = match &builder.broker {
            Some(b) => b.clone(),
            None => {
                let b = broker_from_config(&config).await?;
                builder.admin = Some(b.clone());
                b
            }
        };
        // The configuration is read again when the worker is built: same sources, same result.
        builder.broker = Some(broker.clone());
        Ok(Self {
            builder: Some(builder),
            broker,
            config,
        })
    }

    fn builder(&mut self) -> &mut WorkerBuilder {
        // Taken only by `into_builder`, which consumes the app.
        self.builder.get_or_insert_with(crate::Worker::builder)
    }

    /// Registers `value` as state for the handlers that take [`State<T>`](crate::State) of its
    /// type (see [`WorkerBuilder::state`]).
    pub fn state<T: Clone + Send + Sync + 'static>(&mut self, value: T) -> &mut Self {
        self.builder().states.insert(value);
        self
    }

    /// A [`Queue`] on the broker the worker uses: enqueue from setup, or move a clone into a
    /// background task.
    pub fn queue(&self) -> Queue {
        Queue::from_arc(self.broker.clone())
    }

    /// The broker the worker uses.
    pub fn broker(&self) -> Arc<dyn Broker> {
        self.broker.clone()
    }

    /// The configuration the worker runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The names of the handlers this process runs, sorted.
    pub fn handlers(&self) -> Vec<&str> {
        let Some(b) = &self.builder else {
            return Vec::new();
        };
        let mut names: Vec<&str> = b
            .definitions
            .iter()
            .map(|d| d.name())
            .filter(|n| b.runs(n, &self.config))
            .collect();
        names.sort_unstable();
        names
    }

    /// Wraps the handler named `handler` in a tower layer (see [`JobDefinition::layer`]).
    ///
    /// [`JobDefinition::layer`]: crate::JobDefinition::layer
    ///
    /// # Errors
    /// When no handler of this binary has that name; the message lists the names.
    pub fn layer<L>(&mut self, handler: &str, layer: L) -> Result<&mut Self, Error>
    where
        L: Layer<InnerService> + Send + 'static,
        L::Service: Service<Job<Bytes>, Response = ()> + Send + 'static,
        <L::Service as Service<Job<Bytes>>>::Error: Into<BoxError>,
        <L::Service as Service<Job<Bytes>>>::Future: Send + 'static,
    {
        let definitions = &mut self.builder().definitions;
        let Some(i) = definitions.iter().position(|d| d.name() == handler) else {
            let mut names: Vec<&str> = definitions.iter().map(|d| d.name()).collect();
            names.sort_unstable();
            return Err(Error::config(format!(
                "no handler is named `{handler}`; the handlers are: {}",
                names.join(", ")
            )));
        };
        let def = definitions.remove(i);
        definitions.insert(i, def.layer(layer));
        Ok(self)
    }

    /// Wraps every handler in (a clone of) a tower layer.
    pub fn layer_all<L>(&mut self, layer: L) -> &mut Self
    where
        L: Layer<InnerService> + Clone + Send + 'static,
        L::Service: Service<Job<Bytes>, Response = ()> + Send + 'static,
        <L::Service as Service<Job<Bytes>>>::Error: Into<BoxError>,
        <L::Service as Service<Job<Bytes>>>::Future: Send + 'static,
    {
        let definitions = std::mem::take(&mut self.builder().definitions);
        self.builder().definitions = definitions
            .into_iter()
            .map(|d| d.layer(layer.clone()))
            .collect();
        self
    }

    /// Runs only these handlers (see [`WorkerBuilder::only_handlers`]).
    pub fn only_handlers<I, S>(&mut self, names: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names = names.into_iter().map(Into::into).collect();
        self.builder().only = Some(names);
        self
    }

    /// The builder, to go on by hand (events, a shutdown signal).
    pub fn into_builder(mut self) -> WorkerBuilder {
        self.builder.take().unwrap_or_else(crate::Worker::builder)
    }

    /// Builds the worker.
    ///
    /// # Errors
    /// As [`WorkerBuilder::build`]: a handler takes a state nobody registered, for example.
    pub async fn build(self) -> Result<Worker, Error> {
        self.into_builder().build().await
    }

    /// Builds the worker and runs it until SIGINT or SIGTERM.
    ///
    /// # Errors
    /// As [`WorkerBuilder::build`] and [`Worker::run`].
    pub async fn run(self) -> Result<RunSummary, Error> {
        self.build().await?.run().await
    }
}

/// The names after `--handlers` (`--handlers a,b` or `--handlers=a,b`, repeatable); `None`
/// without the flag. Other arguments are left to the application.
pub(crate) fn handlers_flag(
    args: impl Iterator<Item = String>,
) -> Result<Option<Vec<String>>, Error> {
    let mut names: Option<Vec<String>> = None;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let value = if arg == "--handlers" {
            match args.next() {
                Some(v) if !v.starts_with("--") => v,
                _ => {
                    return Err(Error::config(
                        "--handlers needs a value: a comma-separated list of handler names, such as --handlers send_email,resize",
                    ));
                }
            }
        } else if let Some(v) = arg.strip_prefix("--handlers=") {
            v.to_owned()
        } else {
            continue;
        };
        names
            .get_or_insert_with(Vec::new)
            .extend(config::split_names(&value));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> impl Iterator<Item = String> {
        a.iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn the_handlers_flag_is_read_and_other_arguments_left_alone() {
        assert_eq!(handlers_flag(args(&["--port", "1"])).ok(), Some(None));
        assert_eq!(
            handlers_flag(args(&["--handlers", "a, b", "x", "--handlers=c"])).ok(),
            Some(Some(vec!["a".into(), "b".into(), "c".into()]))
        );
        for bad in [&["--handlers"][..], &["--handlers", "--other"]] {
            let e = handlers_flag(args(bad)).expect_err("refused");
            assert!(e.to_string().contains("--handlers needs a value"), "{e}");
        }
    }
}
