//! The worker's HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, and the admin routes
//! (`/status`, `/admin/...`, see [`crate::admin`]) on one axum [`Router`], served by a loop that
//! bounds what a client can hold ([`server`]).
//!
//! | module | role |
//! |---|---|
//! | this one | the routes of metrics and health, and what serves them |
//! | [`admin`] | the admin routes and their context |
//! | [`auth`] | the admin token and who may read or change things |
//! | [`server`] | the listener: connection limit, header size, read timeout |

mod admin;
mod auth;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub(crate) use admin::AdminContext;
pub(crate) use auth::AdminAccess;
use server::{Server, ServerLimits, bind};

use crate::Error;
use crate::config::HttpConfig;
use crate::metrics::Metrics;
use crate::status::WorkerStatus;

/// What the endpoint serves from.
#[derive(Clone)]
pub(crate) struct HttpState {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) status: WorkerStatus,
    /// What the admin routes (`/status`, `/admin/...`) answer from.
    pub(crate) admin: Arc<AdminContext>,
}

/// The running endpoint: one listener, or two with `http.admin_address`. Dropping it stops it.
pub(crate) struct Endpoint {
    main: Server,
    admin: Option<Server>,
}

impl Endpoint {
    /// Binds `http.address` (and `http.admin_address`) and serves from now on.
    ///
    /// # Errors
    /// An address cannot be bound; the message names the setting.
    pub(crate) async fn start(http: &HttpConfig, state: HttpState) -> Result<Self, Error> {
        let limits = ServerLimits::of(http);
        let main_listener = bind(&http.address, "http.address").await?;
        let (routes, admin) = match &http.admin_address {
            Some(a) => {
                let listener = bind(a, "http.admin_address").await?;
                let server = Server::start(listener, admin_router(state.admin.clone()), limits);
                (AdminRoutes::Elsewhere(server.address), Some(server))
            }
            None => (AdminRoutes::Here, None),
        };
        let main = Server::start(main_listener, router(state, routes), limits);
        Ok(Self { main, admin })
    }

    /// Where `/metrics` is served.
    pub(crate) fn address(&self) -> SocketAddr {
        self.main.address
    }

    /// Where the admin routes are served.
    pub(crate) fn admin_address(&self) -> SocketAddr {
        self.admin.as_ref().map_or(self.main.address, |s| s.address)
    }

    /// Stops accepting, lets open connections finish their request, and waits.
    pub(crate) async fn stop(self) {
        if let Some(a) = self.admin {
            a.stop().await;
        }
        self.main.stop().await;
    }
}

const PLAIN: &str = "text/plain; charset=utf-8";

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Where the admin routes are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AdminRoutes {
    /// With the metrics and health routes.
    Here,
    /// On a listener of their own (`http.admin_address`), named in this one's 404.
    Elsewhere(SocketAddr),
}

/// The routes of metrics and health, plus the admin routes unless they are served elsewhere.
pub(crate) fn router(state: HttpState, admin: AdminRoutes) -> Router {
    let ctx = state.admin.clone();
    let health = Router::new()
        .route("/metrics", get(metrics).fallback(get_only))
        .route("/healthz", get(healthz).fallback(get_only))
        .route("/readyz", get(readyz).fallback(get_only))
        .with_state(state);
    match admin {
        AdminRoutes::Here => health.merge(admin::router(ctx)).fallback(no_route),
        AdminRoutes::Elsewhere(at) => health.fallback(move |method: Method, uri: Uri| async move {
            text(
                StatusCode::NOT_FOUND,
                PLAIN,
                format!(
                    "no route {method} {}; this address serves /metrics, /healthz and /readyz, \
                     the admin routes (/status, /admin/...) are on {at}\n",
                    uri.path()
                ),
            )
        }),
    }
}

/// The admin routes alone, for `http.admin_address`.
pub(crate) fn admin_router(ctx: Arc<AdminContext>) -> Router {
    admin::router(ctx).fallback(no_route)
}

async fn no_route(uri: Uri) -> Response {
    text(
        StatusCode::NOT_FOUND,
        PLAIN,
        format!(
            "no route {}; this worker serves /metrics, /healthz, /readyz, /status and /admin/...\n",
            uri.path()
        ),
    )
}

async fn get_only(uri: Uri) -> Response {
    text(
        StatusCode::METHOD_NOT_ALLOWED,
        PLAIN,
        format!("{} answers GET only\n", uri.path()),
    )
}

async fn metrics(State(state): State<HttpState>) -> Response {
    state.metrics.ready.set(i64::from(state.status.is_ready()));
    state
        .metrics
        .broker_up
        .set(i64::from(state.status.broker_answers()));
    match state.metrics.render() {
        Ok(body) => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            body,
        ),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, PLAIN, format!("{e}\n")),
    }
}

async fn healthz() -> impl IntoResponse {
    text(StatusCode::OK, PLAIN, "ok\n")
}

async fn readyz(State(state): State<HttpState>) -> Response {
    match state.status.not_ready_because() {
        None => text(StatusCode::OK, PLAIN, "ready\n"),
        Some(why) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            PLAIN,
            format!("not ready: {why}\n"),
        ),
    }
}

#[cfg(test)]
#[path = "admin_tests.rs"]
mod admin_tests;
#[cfg(test)]
mod tests;
