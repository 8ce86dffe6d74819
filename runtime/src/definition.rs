//! A job handler with its settings, as `#[job]` generates it or as written by hand.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tower::util::{BoxCloneService, BoxService};
use tower::{Layer, Service, ServiceExt};

use crate::codec::Decode;
use crate::config::{DeadLetter, HandlerOverrides};
use crate::job::{BoxError, Job, JobError};
use crate::state::{FromStates, Need, States};

/// The type-erased tower service a handler runs as.
pub type HandlerService = BoxCloneService<Job<Bytes>, (), BoxError>;

/// The service a [`Layer`] given to [`JobDefinition::layer`] wraps.
pub type InnerService = BoxService<Job<Bytes>, (), BoxError>;

/// Makes the service once the worker's states are known.
type PlainFactory = Box<dyn FnOnce(&States) -> HandlerService + Send>;
type LayeredFactory = Box<dyn FnOnce(&States) -> InnerService + Send>;

enum Stack {
    Plain(PlainFactory),
    Layered(LayeredFactory),
}

/// An async function that can be a handler: it takes a [`Job<T>`] and then up to eight
/// [`State<T>`](crate::State) arguments, and returns `Result<(), E>` where `E:
/// Into<JobError>`. `Args` is the tuple of its argument types; it only tells the
/// implementations apart. See [`JobDefinition::handler`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a job handler",
    note = "a handler is an `async fn(Job<T>, State<A>, ...) -> Result<(), E>` where T is the \
            payload type, each further argument a `State<_>` and E: Into<JobError>; the future \
            must be Send"
)]
pub trait Handler<Args>: Clone + Send + Sync + 'static {
    /// The states its arguments need, checked when the worker starts.
    fn needs() -> Vec<Need>;

    /// The handler as a service over raw jobs, its arguments taken from `states`.
    fn into_service(self, states: &States) -> HandlerService;
}

macro_rules! handler_with_states {
    ($($ty:ident $var:ident),*) => {
        impl<F, Fut, E, T, $($ty,)*> Handler<(Job<T>, $($ty,)*)> for F
        where
            F: Fn(Job<T>, $($ty,)*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future<Output = Result<(), E>> + Send + 'static,
            E: Into<JobError>,
            T: Decode + Send + 'static,
            $($ty: FromStates,)*
        {
            fn needs() -> Vec<Need> {
                vec![$($ty::need()),*]
            }

            #[allow(unused_variables)] // by handlers without states
            fn into_service(self, states: &States) -> HandlerService {
                // Each state is looked up once, here; every job gets a clone.
                $(let $var = $ty::from_states(states);)*
                BoxCloneService::new(tower::service_fn(move |job: Job<Bytes>| {
                    let handler = self.clone();
                    $(let $var = $var.clone();)*
                    async move {
                        let job = job.decode::<T>().map_err(BoxError::from)?;
                        $(
                            // Checked when the worker started: only a worker built around
                            // that check gets here.
                            let Some($var) = $var else {
                                return Err(BoxError::from(JobError::retry(format!(
                                    "no state `{}` is registered",
                                    $ty::need().type_name()
                                ))));
                            };
                        )*
                        handler(job, $($var,)*).await.map_err(|e| BoxError::from(e.into()))
                    }
                }))
            }
        }
    };
}

handler_with_states!();
handler_with_states!(A1 a1);
handler_with_states!(A1 a1, A2 a2);
handler_with_states!(A1 a1, A2 a2, A3 a3);
handler_with_states!(A1 a1, A2 a2, A3 a3, A4 a4);
handler_with_states!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5);
handler_with_states!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6);
handler_with_states!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7);
handler_with_states!(A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6, A7 a7, A8 a8);

/// A handler, the topic it reads and its settings in code.
///
/// `#[shareworker::job]` makes one for each handler (`send_email::definition()`); it can also be
/// written by hand. Settings here sit between the built-in defaults and the configuration file,
/// so operators can still change them without recompiling.
///
/// ```
/// use std::time::Duration;
/// use shareworker::{Job, JobDefinition, JobError};
///
/// async fn resize(job: Job<String>) -> Result<(), JobError> {
///     println!("resizing {}", job.payload());
///     Ok(())
/// }
///
/// let def = JobDefinition::new("resize", "images", resize)
///     .concurrency(4)
///     .max_attempts(3)
///     .timeout(Duration::from_secs(60))
///     .layer(tower::limit::ConcurrencyLimitLayer::new(2));
/// assert_eq!(def.name(), "resize");
/// ```
pub struct JobDefinition {
    pub(crate) name: Arc<str>,
    pub(crate) topic: String,
    pub(crate) overrides: HandlerOverrides,
    needs: Vec<Need>,
    stack: Stack,
}

impl fmt::Debug for JobDefinition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobDefinition")
            .field("name", &self.name)
            .field("topic", &self.topic)
            .field("overrides", &self.overrides)
            .field("states", &self.needs)
            .finish_non_exhaustive()
    }
}

impl JobDefinition {
    /// A definition for an async handler taking a [`Job<T>`]. For a handler that also takes
    /// [`State`](crate::State) arguments use [`JobDefinition::handler`].
    pub fn new<F, T, Fut, E>(name: &str, topic: &str, handler: F) -> Self
    where
        F: Fn(Job<T>) -> Fut + Clone + Send + Sync + 'static,
        T: Decode + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<JobError>,
    {
        let service = tower::service_fn(move |job: Job<Bytes>| {
            let handler = handler.clone();
            async move {
                let job = job.decode::<T>().map_err(BoxError::from)?;
                handler(job).await.map_err(|e| BoxError::from(e.into()))
            }
        });
        Self::from_service(name, topic, service)
    }

    /// A definition for an async handler taking a [`Job<T>`] and then [`State`](crate::State)
    /// arguments, filled for each job from the states registered on the worker; a state that
    /// is not registered stops the worker at start, naming the handler and the type.
    ///
    /// ```
    /// use shareworker::{Job, JobDefinition, JobError, State};
    ///
    /// #[derive(Clone)]
    /// struct Thumbnailer {
    ///     size: u32,
    /// }
    ///
    /// async fn resize(job: Job<String>, State(t): State<Thumbnailer>) -> Result<(), JobError> {
    ///     println!("resizing {} to {}", job.payload(), t.size);
    ///     Ok(())
    /// }
    ///
    /// let def = JobDefinition::handler("resize", "images", resize);
    /// assert!(def.states()[0].ends_with("Thumbnailer"));
    /// ```
    pub fn handler<H, Args>(name: &str, topic: &str, handler: H) -> Self
    where
        H: Handler<Args>,
    {
        Self {
            name: Arc::from(name),
            topic: topic.to_owned(),
            overrides: HandlerOverrides::default(),
            needs: H::needs(),
            stack: Stack::Plain(Box::new(move |states| handler.into_service(states))),
        }
    }

    /// A definition for any tower service over [`Job<Bytes>`]. Its errors are retryable unless
    /// they are a [`JobError`] that says otherwise.
    ///
    /// As tower expects, `poll_ready` and `call` should return at once: the worker's
    /// dispatcher calls them itself (a panic in them fails the job like a panic in the
    /// handler), and the work belongs in the future `call` returns. A service that is not
    /// ready gets its job once it is, without holding up the others.
    pub fn from_service<S>(name: &str, topic: &str, service: S) -> Self
    where
        S: Service<Job<Bytes>, Response = ()> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        let service: HandlerService = BoxCloneService::new(service.map_err(Into::into));
        Self {
            name: Arc::from(name),
            topic: topic.to_owned(),
            overrides: HandlerOverrides::default(),
            needs: Vec::new(),
            stack: Stack::Plain(Box::new(move |_| service)),
        }
    }

    /// Wraps the handler in a tower layer (timeout, rate limit, your own). The first layer added
    /// is the innermost. Layered handlers share one instance of the stack through a buffer, so
    /// stateful layers such as rate limits hold across concurrent jobs.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<InnerService> + Send + 'static,
        L::Service: Service<Job<Bytes>, Response = ()> + Send + 'static,
        <L::Service as Service<Job<Bytes>>>::Error: Into<BoxError>,
        <L::Service as Service<Job<Bytes>>>::Future: Send + 'static,
    {
        let prev = match self.stack {
            Stack::Plain(f) => {
                Box::new(move |states: &States| BoxService::new(f(states))) as LayeredFactory
            }
            Stack::Layered(f) => f,
        };
        self.stack = Stack::Layered(Box::new(move |states: &States| {
            BoxService::new(layer.layer(prev(states)).map_err(Into::into))
        }));
        self
    }

    /// The handler's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic it reads.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The type names of the states its arguments take, in order.
    pub fn states(&self) -> Vec<&'static str> {
        self.needs.iter().map(Need::type_name).collect()
    }

    /// The states its arguments need.
    pub(crate) fn needs(&self) -> &[Need] {
        &self.needs
    }

    /// Sets the share group (default: the handler's name).
    pub fn group(mut self, group: &str) -> Self {
        self.overrides.group = Some(group.to_owned());
        self
    }

    /// Sets the most jobs running at once (default 32).
    pub fn concurrency(mut self, n: u32) -> Self {
        self.overrides.concurrency = Some(n);
        self
    }

    /// Sets how many records are acquired ahead of free slots (default 16).
    pub fn prefetch(mut self, n: u32) -> Self {
        self.overrides.prefetch = Some(n);
        self
    }

    /// Sets the attempts before the dead-letter topic (default and ceiling: the group's delivery
    /// count limit).
    pub fn max_attempts(mut self, n: u16) -> Self {
        self.overrides.max_attempts = Some(n);
        self
    }

    /// Sets the backoff between attempts (see [`BackoffConfig`](crate::config::BackoffConfig)).
    pub fn backoff(
        mut self,
        initial: Duration,
        max: Duration,
        multiplier: f64,
        jitter: f64,
    ) -> Self {
        self.overrides.backoff.initial = Some(initial);
        self.overrides.backoff.max = Some(max);
        self.overrides.backoff.multiplier = Some(multiplier);
        self.overrides.backoff.jitter = Some(jitter);
        self
    }

    /// Sets how long one attempt may run.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.overrides.timeout = Some(timeout);
        self
    }

    /// Sets the dead-letter topic (default `<topic>.dlq`).
    pub fn dead_letter(mut self, topic: &str) -> Self {
        self.overrides.dead_letter = Some(DeadLetter::Topic(topic.to_owned()));
        self
    }

    /// Turns dead-lettering off: after the last attempt the record is only rejected.
    pub fn no_dead_letter(mut self) -> Self {
        self.overrides.dead_letter = Some(DeadLetter::Off);
        self
    }

    /// Sets how many records may wait out a backoff delay at once (default 1000).
    pub fn max_held(mut self, n: u32) -> Self {
        self.overrides.max_held = Some(n);
        self
    }

    /// Builds the service with its states taken from `states` (checked with
    /// [`States::check`] first); must run inside a tokio runtime when layers were added.
    pub(crate) fn into_service(self, buffer: usize, states: &States) -> (Arc<str>, HandlerService) {
        let svc = match self.stack {
            Stack::Plain(f) => f(states),
            Stack::Layered(f) => {
                BoxCloneService::new(tower::buffer::Buffer::new(f(states), buffer.max(1)))
            }
        };
        (self.name, svc)
    }
}
