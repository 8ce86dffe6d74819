//! The jobs of {{project-name}}: one handler, `process`, reading the topic `{{topic}}` in the
//! share group `{{group}}`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shareworker::{Job, JobError, State};

/// What a producer enqueues on `{{topic}}`, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The producer's id of the task, for logs and idempotency.
    pub id: u64,
    /// What to do.
    pub name: String,
}

/// Where processed tasks go: your database in production, a fake in the tests.
pub trait TaskStore: Send + Sync {
    /// Records that `task` was processed; an error is retried with backoff.
    fn save(&self, task: &Task) -> Result<(), String>;
}

/// The handler's state: a cheap handle (an `Arc` inside), cloned for every job. `main.rs`
/// registers the real one; tests register a fake with `TestWorker::state`.
#[derive(Clone)]
pub struct Store(pub Arc<dyn TaskStore>);

/// A store that only logs; replace it with your database client.
pub struct LogStore;

impl TaskStore for LogStore {
    fn save(&self, task: &Task) -> Result<(), String> {
        tracing::info!(id = task.id, name = %task.name, "saved");
        Ok(())
    }
}

/// Handles one task. `Ok` settles the record; any other error is retried with backoff, and after
/// the last attempt the record goes to `{{topic}}.dlq`. `JobError::permanent` skips the retries.
///
/// Handlers must be idempotent: delivery is at least once.
#[shareworker::job(topic = "{{topic}}", group = "{{group}}")]
pub async fn process(job: Job<Task>, State(store): State<Store>) -> Result<(), JobError> {
    let task = job.payload();
    if task.name.trim().is_empty() {
        return Err(JobError::permanent(format!("task {} has no name", task.id)));
    }
    tracing::info!(id = task.id, name = %task.name, attempt = job.attempt(), "processing");
    store.0.save(task).map_err(JobError::retry)?;
    Ok(())
}
