//! `#[shareworker::main]` with each return type it accepts; any name works.
#![deny(warnings, missing_docs)]
#![forbid(unsafe_code)]

use std::fmt;

#[shareworker::main]
async fn plain() {
    tokio::task::yield_now().await;
}

#[derive(Debug)]
struct SetupError;

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("setup failed")
    }
}

/// Setup that may fail.
#[shareworker::main]
pub async fn fallible() -> Result<(), SetupError> {
    let n: u32 = "42".parse().map_err(|_| SetupError)?;
    if n == 0 {
        return Err(SetupError);
    }
    Ok(())
}

#[shareworker::main]
async fn with_anyhow() -> anyhow::Result<()> {
    let _n: u32 = "42".parse()?;
    Ok(())
}

/// Setup with the app: state, a queue, a layer.
#[shareworker::main]
async fn with_app(app: &mut shareworker::App) -> Result<(), shareworker::Error> {
    app.state(42_u32)
        .layer("send", tower::limit::ConcurrencyLimitLayer::new(1))?
        .layer_all(tower::limit::ConcurrencyLimitLayer::new(2));
    let queue = app.queue();
    tokio::spawn(async move { queue.enqueue("emails", &"hi").await });
    Ok(())
}

#[shareworker::main]
async fn with_app_no_result(app: &mut shareworker::App) {
    app.state(String::from("config"));
}

fn main() {
    // Compiled, not run: running them would start a worker.
    let _: fn() -> std::process::ExitCode = with_app;
    let _: fn() -> std::process::ExitCode = with_app_no_result;
    let _: fn() -> std::process::ExitCode = plain;
    let _: fn() -> std::process::ExitCode = fallible;
    let _: fn() -> std::process::ExitCode = with_anyhow;
}
