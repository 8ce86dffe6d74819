//! The {{project-name}} worker: runs every `#[job]` of the library until SIGTERM, with the
//! configuration from `shareworker.toml` and `SHAREWORKER_*` environment variables.
//! `--handlers process` runs only the handlers named (one binary, several deployments).

use std::sync::Arc;

use {{crate_name}}::{LogStore, Store};

#[shareworker::main]
async fn main(app: &mut shareworker::App) {
    // The handlers' state: connect your database here, once, and hand out clones.
    app.state(Store(Arc::new(LogStore)));
}
