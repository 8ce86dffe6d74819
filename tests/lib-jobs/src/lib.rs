//! Handlers that live in a library crate. A binary links them with `use shareworker_test_jobs
//! as _;`: a crate that nothing in the binary names is not linked, and neither are its `#[job]`s.

use shareworker::{Job, JobError};

/// Says it was called.
#[shareworker::job(topic = "app-library")]
pub async fn lib_greet(job: Job<String>) -> Result<(), JobError> {
    println!("library greeted {}", job.payload());
    Ok(())
}
