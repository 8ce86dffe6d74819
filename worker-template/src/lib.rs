//! The jobs of {{project-name}}: one handler, `process`, reading the topic `{{topic}}` in the
//! share group `{{group}}`.

use serde::{Deserialize, Serialize};
use shareworker::{Job, JobError};

/// What a producer enqueues on `{{topic}}`, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The producer's id of the task, for logs and idempotency.
    pub id: u64,
    /// What to do.
    pub name: String,
}

/// Handles one task. `Ok` settles the record; any other error is retried with backoff, and after
/// the last attempt the record goes to `{{topic}}.dlq`. `JobError::permanent` skips the retries.
///
/// Handlers must be idempotent: delivery is at least once.
#[shareworker::job(topic = "{{topic}}", group = "{{group}}")]
pub async fn process(job: Job<Task>) -> Result<(), JobError> {
    let task = job.payload();
    if task.name.trim().is_empty() {
        return Err(JobError::permanent(format!("task {} has no name", task.id)));
    }
    tracing::info!(id = task.id, name = %task.name, attempt = job.attempt(), "processing");
    Ok(())
}
