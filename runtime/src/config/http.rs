//! The HTTP endpoint's settings and their checks.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::duration::serde_duration;

/// The worker's HTTP endpoint (key `http`): Prometheus metrics at `/metrics`, liveness at
/// `/healthz`, readiness at `/readyz`, and the operator routes `/status` and `/admin/...` (see
/// [`shareworker::admin`](crate::admin)). It starts with [`Worker::run`](crate::Worker::run) and
/// stops when the worker has stopped.
///
/// ```toml
/// [http]
/// address = "0.0.0.0:9464"   # SHAREWORKER_HTTP__ADDRESS
/// enabled = true             # SHAREWORKER_HTTP__ENABLED=false turns it off
/// admin = true               # the routes that change things: enqueue, replay, discard, group configs
/// admin_token_file = "/run/secrets/shareworker-admin-token"  # or SHAREWORKER_HTTP__ADMIN_TOKEN
/// admin_address = "127.0.0.1:9465"  # optional: /status and /admin/... on their own listener
/// ```
///
/// # The admin token
/// The routes that change things answer only a request that carries `Authorization: Bearer
/// <token>` with the token configured here, compared in constant time. Without a token they stay
/// off even with `admin = true`, and the worker says so at start. Give the token through the
/// environment (`SHAREWORKER_HTTP__ADMIN_TOKEN`) or a file (`admin_token_file`, such as a mounted
/// Kubernetes secret; surrounding whitespace is dropped), not in `shareworker.toml`: it is never
/// logged, and `Debug` prints `***`. With `admin_protect_reads = true` the read-only routes
/// (`/status`, the dead-letter listing, group configs, dry-run replays) need the token too.
///
/// # Limits
/// The endpoint bounds what a client can hold: `max_connections` open connections (more are
/// closed at once), request headers of at most 16 KiB, request bodies of at most
/// `max_body_bytes`, and `read_timeout` to send a request's headers or body (a slow or idle
/// client is disconnected). Malformed requests are answered 400 and logged at `debug` only.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Whether to serve at all (default true).
    pub enabled: bool,
    /// Where to listen (default `0.0.0.0:9464`; port 0 picks a free port, see
    /// [`Worker::http_address`](crate::Worker::http_address)).
    pub address: String,
    /// Whether the routes that change things (enqueue, dead-letter replay and discard, group
    /// configs) are served, given an admin token; read-only routes always are (default false).
    pub admin: bool,
    /// The bearer token the admin routes ask for (`SHAREWORKER_HTTP__ADMIN_TOKEN`), at least 16
    /// characters. Set this or `admin_token_file`, not both.
    pub admin_token: Option<crate::config::Secret>,
    /// A file holding the admin token (read once at start; surrounding whitespace is dropped).
    pub admin_token_file: Option<PathBuf>,
    /// Whether the read-only routes (`/status`, `GET /admin/dlq`, `GET /admin/groups/G/config`,
    /// dry-run replays) need the admin token too (default false). Needs a token.
    pub admin_protect_reads: bool,
    /// Serve `/status` and `/admin/...` on this address instead of `address` (for example
    /// loopback, away from the port Prometheus scrapes); default: on `address`.
    pub admin_address: Option<String>,
    /// Open connections at most; a connection past it is closed at once (default 256).
    pub max_connections: u32,
    /// How long a client may take to send a request's headers, or its body (default 10 s);
    /// an idle kept-alive connection is closed after it too.
    #[serde(with = "serde_duration")]
    pub read_timeout: Duration,
    /// The largest request body taken, in bytes (default 1 MiB).
    pub max_body_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            address: "0.0.0.0:9464".into(),
            admin: false,
            admin_token: None,
            admin_token_file: None,
            admin_protect_reads: false,
            admin_address: None,
            max_connections: 256,
            read_timeout: Duration::from_secs(10),
            max_body_bytes: 1 << 20,
        }
    }
}

/// The shortest admin token taken, in characters.
pub(crate) const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Checks the `http` settings that need no I/O (the token file is read when the worker starts).
pub(crate) fn validate_http(http: &HttpConfig) -> Result<(), Error> {
    let bad = |key: &str, what: String| Err(Error::config(format!("`http.{key}`: {what}")));
    if !http.enabled {
        return Ok(());
    }
    if let Some(a) = &http.admin_address
        && a.parse::<std::net::SocketAddr>().is_err()
    {
        return bad(
            "admin_address",
            format!("must be an IP address and port such as 127.0.0.1:9465, got `{a}`"),
        );
    }
    if http.admin_token.is_some() && http.admin_token_file.is_some() {
        return bad(
            "admin_token",
            "set `http.admin_token` or `http.admin_token_file`, not both".into(),
        );
    }
    if let Some(t) = &http.admin_token {
        check_admin_token("http.admin_token", t.expose())?;
    }
    if http.admin_protect_reads && http.admin_token.is_none() && http.admin_token_file.is_none() {
        return bad(
            "admin_protect_reads",
            "needs an admin token: set `http.admin_token` (SHAREWORKER_HTTP__ADMIN_TOKEN) or \
             `http.admin_token_file`"
                .into(),
        );
    }
    if http.max_connections == 0 {
        return bad("max_connections", "must be at least 1, got 0".into());
    }
    if http.read_timeout < Duration::from_secs(1) || http.read_timeout > Duration::from_secs(3600) {
        return bad(
            "read_timeout",
            format!("must be between 1s and 1h, got {:?}", http.read_timeout),
        );
    }
    if http.max_body_bytes < 1024 {
        return bad(
            "max_body_bytes",
            format!("must be at least 1024, got {}", http.max_body_bytes),
        );
    }
    Ok(())
}

/// An admin token (already trimmed by the caller where it came from a file) is long enough;
/// the error names `key`, never the token.
pub(crate) fn check_admin_token(key: &str, token: &str) -> Result<(), Error> {
    let len = token.trim().chars().count();
    if len < MIN_ADMIN_TOKEN_LEN {
        return Err(Error::config(format!(
            "`{key}`: the admin token must be at least {MIN_ADMIN_TOKEN_LEN} characters, got \
             {len}; use a random string, such as the output of `openssl rand -hex 32`"
        )));
    }
    Ok(())
}
