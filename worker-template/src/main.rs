//! The {{project-name}} worker: runs every `#[job]` of the library until SIGTERM, with the
//! configuration from `shareworker.toml` and `SHAREWORKER_*` environment variables.

// Links the library, whose `#[job]`s register themselves with the runtime.
use {{crate_name}} as _;

#[shareworker::main]
async fn main() {}
