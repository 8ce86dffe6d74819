//! Support for the code `#[job]` and `#[main]` generate. Not a public API: it may change in any
//! release.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

use crate::{App, JobDefinition, JobError, codec::Decode};

pub use inventory;

/// A handler registered at link time by `#[job]`.
pub struct Registration {
    /// The handler's name, for error messages.
    pub name: &'static str,
    /// Makes the handler's definition.
    pub definition: fn() -> JobDefinition,
}

inventory::collect!(Registration);

/// Definitions of every `#[job]` handler linked into this binary, sorted by name.
pub fn registered() -> Vec<JobDefinition> {
    let mut regs: Vec<&Registration> = inventory::iter::<Registration>.into_iter().collect();
    regs.sort_by_key(|r| r.name);
    regs.into_iter().map(|r| (r.definition)()).collect()
}

/// Compile-time check that a handler argument after the job can be made from the worker's
/// states; the macro spans it at the argument's type.
pub const fn assert_state_arg<A: crate::state::FromStates>() {}

/// Compile-time check that a handler's payload type can be decoded; the macro spans it at `T`.
pub const fn assert_payload<T: Decode + Send + 'static>() {}

/// Compile-time check that a handler's error type converts into [`JobError`]; spanned at `E`.
pub const fn assert_error<E: Into<JobError>>() {}

/// Compile-time check that a handler's future is `Send`.
pub fn assert_send<F: Future + Send>(_: &F) {}

/// What `#[shareworker::main]`'s body may return.
pub trait MainOutput {
    /// `Err` with a message to print, or `Ok` to go on and run the worker.
    fn into_result(self) -> Result<(), String>;
}

impl MainOutput for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display> MainOutput for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// The body of the `main` that `#[shareworker::main]` generates for `async fn main()`: builds a
/// tokio runtime, runs the user's setup, then every registered handler (or those `--handlers`
/// names) until a shutdown signal.
pub fn run_main<F>(setup: F) -> ExitCode
where
    F: Future,
    F::Output: MainOutput,
{
    block_on(async move {
        if let Err(e) = setup.await.into_result() {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        crate::init_tracing();
        let run = async { App::from_env().await?.run().await };
        exit_code(run.await)
    })
}

/// The body of the `main` that `#[shareworker::main]` generates for `async fn main(app: &mut
/// App)`: builds a tokio runtime and the [`App`] (configuration, broker, `--handlers`), runs
/// the user's setup on it, then the worker until a shutdown signal.
pub fn run_app<F, R>(setup: F) -> ExitCode
where
    F: for<'a> FnOnce(&'a mut App) -> Pin<Box<dyn Future<Output = R> + 'a>>,
    R: MainOutput,
{
    block_on(async move {
        crate::init_tracing();
        let mut app = match App::from_env().await {
            Ok(app) => app,
            Err(e) => return exit_code(Err(e)),
        };
        if let Err(e) = setup(&mut app).await.into_result() {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        exit_code(app.run().await)
    })
}

fn block_on(f: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Success, or the error and its causes on stderr and a failure code.
fn exit_code(result: Result<crate::worker::RunSummary, crate::Error>) -> ExitCode {
    match result {
        Ok(_summary) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}
