//! Handler state: values registered on the worker, handed to the handlers that ask for them.

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A value registered on the worker, as a handler argument after the [`Job`](crate::Job): a
/// database pool, an HTTP client, a mailer. Register it with
/// [`WorkerBuilder::state`](crate::worker::WorkerBuilder::state),
/// [`App::state`](crate::App::state) in `#[shareworker::main]`, or
/// [`TestWorker::state`](crate::testing::TestWorker::state) in tests (where a fake goes in
/// its place).
///
/// Each job gets its own clone, so the usual shape is a cheap handle: a type that is an `Arc`
/// inside (most pools and clients are), or your own `Arc<T>`. A handler asking for a type
/// nobody registered is refused when the worker starts, naming the handler and the type.
///
/// ```no_run
/// use std::sync::Arc;
/// use shareworker::{Job, JobError, State};
///
/// #[derive(Clone)]
/// struct Mailer {
///     sent: Arc<std::sync::atomic::AtomicU64>,
/// }
///
/// #[shareworker::job(topic = "emails")]
/// async fn send(job: Job<String>, State(mailer): State<Mailer>) -> Result<(), JobError> {
///     mailer.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///     println!("to {}", job.payload());
///     Ok(())
/// }
///
/// #[shareworker::main]
/// async fn main(app: &mut shareworker::App) {
///     app.state(Mailer { sent: Arc::default() });
/// }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State<T>(pub T);

/// The states registered on a worker, by type. Cheap to clone.
#[derive(Clone, Default)]
pub struct States {
    by_type: Arc<HashMap<TypeId, Entry>>,
}

#[derive(Clone)]
struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    name: &'static str,
}

impl fmt::Debug for States {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.by_type.values().map(|e| e.name).collect();
        names.sort_unstable();
        f.debug_set().entries(names).finish()
    }
}

impl States {
    /// Registers `value`, replacing a value of the same type.
    pub(crate) fn insert<T: Clone + Send + Sync + 'static>(&mut self, value: T) {
        Arc::make_mut(&mut self.by_type).insert(
            TypeId::of::<T>(),
            Entry {
                value: Arc::new(value),
                name: type_name::<T>(),
            },
        );
    }

    /// A clone of the value of type `T`, if one is registered.
    fn get<T: Clone + 'static>(&self) -> Option<T> {
        self.by_type
            .get(&TypeId::of::<T>())
            .and_then(|e| e.value.downcast_ref::<T>())
            .cloned()
    }

    fn has(&self, id: TypeId) -> bool {
        self.by_type.contains_key(&id)
    }

    /// The registered types' names, sorted.
    fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<&str> = self.by_type.values().map(|e| e.name).collect();
        names.sort_unstable();
        names
    }

    /// Every state in `needs` is registered; else an error naming `handler` and the type.
    pub(crate) fn check(&self, handler: &str, needs: &[Need]) -> Result<(), crate::Error> {
        for need in needs {
            if !self.has(need.id) {
                let registered = self.names();
                return Err(crate::Error::config(format!(
                    "handler `{handler}` takes `State<{}>`, and no state of that type is \
                     registered: register one with `.state(..)` on the worker builder, \
                     `app.state(..)` in #[shareworker::main] or `TestWorker::state`; \
                     registered: {}",
                    need.name,
                    if registered.is_empty() {
                        "none".to_owned()
                    } else {
                        registered.join(", ")
                    }
                )));
            }
        }
        Ok(())
    }
}

/// A state type a handler needs, for the start-up check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    id: TypeId,
    name: &'static str,
}

impl Need {
    /// The state of type `T`.
    pub fn of<T: 'static>() -> Self {
        Self {
            id: TypeId::of::<T>(),
            name: type_name::<T>(),
        }
    }

    /// The type's name.
    pub fn type_name(&self) -> &'static str {
        self.name
    }
}

/// A handler argument after the [`Job`](crate::Job), made from the worker's [`States`] for
/// each job: [`State<T>`] is the one there is. Not for implementing outside this crate.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler argument",
    label = "not `State<T>`",
    note = "a #[job] handler takes its `Job<T>`, then only `State<T>` arguments: values \
            registered on the worker with `.state(..)` (T: Clone + Send + Sync + 'static)"
)]
pub trait FromStates: Clone + Sized + Send + Sync + 'static + sealed::Sealed {
    /// The state this argument needs, checked when the worker starts.
    fn need() -> Need;

    /// The argument for one job; `None` when its state is not registered.
    fn from_states(states: &States) -> Option<Self>;
}

impl<T: Clone + Send + Sync + 'static> FromStates for State<T> {
    fn need() -> Need {
        Need::of::<T>()
    }

    fn from_states(states: &States) -> Option<Self> {
        states.get::<T>().map(State)
    }
}

mod sealed {
    pub trait Sealed {}
    impl<T> Sealed for super::State<T> {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Pool(&'static str);

    #[test]
    fn states_are_found_by_type_and_missing_ones_named() {
        let mut states = States::default();
        assert!(State::<Pool>::from_states(&states).is_none());
        let e = states
            .check("send", &[State::<Pool>::need()])
            .expect_err("missing");
        let text = e.to_string();
        assert!(text.contains("handler `send`"), "{text}");
        assert!(
            text.contains("State<shareworker::state::tests::Pool>"),
            "{text}"
        );
        assert!(text.contains("registered: none"), "{text}");
        states.insert(Pool("db"));
        states.insert(7_u32);
        assert_eq!(State::<Pool>::from_states(&states), Some(State(Pool("db"))));
        assert_eq!(State::<u32>::from_states(&states), Some(State(7)));
        assert!(states.check("send", &[State::<Pool>::need()]).is_ok());
        let e = states
            .check("send", &[State::<String>::need()])
            .expect_err("missing");
        assert!(
            e.to_string()
                .contains("registered: shareworker::state::tests::Pool, u32"),
            "{e}"
        );
        // A later value of one type replaces the earlier one.
        states.insert(Pool("other"));
        assert_eq!(
            State::<Pool>::from_states(&states).map(|s| s.0),
            Some(Pool("other"))
        );
    }
}
