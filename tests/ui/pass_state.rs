//! Handlers with `State` arguments, in each pattern form; the generated code passes strict lints.
#![deny(warnings, missing_docs)]
#![forbid(unsafe_code)]

use std::sync::Arc;

use shareworker::{Job, JobError, State};

/// A database handle: an `Arc` inside, cheap to clone per job.
#[derive(Clone, Default)]
pub struct Db(Arc<std::sync::Mutex<Vec<String>>>);

/// A mailer.
#[derive(Clone)]
pub struct Mailer {
    /// Where mail comes from.
    pub from: &'static str,
}

/// Stores the payload and says who sends it.
#[shareworker::job(topic = "signups", concurrency = 4)]
pub async fn welcome(
    job: Job<String>,
    State(db): State<Db>,
    mailer: State<Mailer>,
) -> Result<(), JobError> {
    db.0.lock()
        .map_err(|_| JobError::retry("poisoned"))?
        .push(format!("{} from {}", job.payload(), mailer.0.from));
    Ok(())
}

/// One state, by full path, behind an alias return type.
#[shareworker::job(topic = "audit")]
async fn audit(_job: Job<shareworker::broker::Bytes>, _db: shareworker::State<Db>) -> anyhow::Result<()> {
    Ok(())
}

fn main() {
    let short = |names: Vec<&'static str>| -> Vec<String> {
        names
            .iter()
            .map(|n| n.rsplit("::").next().unwrap_or(n).to_owned())
            .collect()
    };
    assert_eq!(short(welcome::definition().states()), ["Db", "Mailer"]);
    assert_eq!(short(audit::definition().states()), ["Db"]);
}
