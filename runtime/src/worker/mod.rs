//! The worker: runs handlers on a broker.

use crate::Error;

/// Runs every `#[job]` handler in this binary until a shutdown signal.
///
/// # Errors
/// When the configuration is invalid or the broker cannot be reached.
pub async fn run() -> Result<(), Error> {
    Err(Error::config("not yet"))
}
