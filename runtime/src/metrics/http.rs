//! The worker's HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, and the admin routes of
//! [`crate::admin`] (`/status`, `/admin/...`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Metrics;
use crate::Error;
use crate::admin::AdminContext;
use crate::worker::WorkerStatus;

/// What the endpoint serves from.
#[derive(Clone)]
pub(crate) struct HttpState {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) status: WorkerStatus,
    /// What the admin routes (`/status`, `/admin/...`) answer from.
    pub(crate) admin: Arc<AdminContext>,
}

/// The largest request body the admin routes take.
const MAX_BODY: usize = 1 << 20;

/// Binds `address`; the error says which setting to change.
pub(crate) async fn bind(address: &str) -> Result<TcpListener, Error> {
    let addr: SocketAddr = address.parse().map_err(|_| {
        Error::config(format!(
            "`http.address`: must be an IP address and port such as 0.0.0.0:9464, got `{address}`"
        ))
    })?;
    TcpListener::bind(addr).await.map_err(|e| {
        Error::config(format!(
            "cannot listen on {addr} for /metrics, /healthz and /readyz: {e}; set `http.address` (SHAREWORKER_HTTP__ADDRESS) to a free address, or `http.enabled = false`"
        ))
    })
}

/// A running endpoint; dropping it stops it.
pub(crate) struct Server {
    pub(crate) address: SocketAddr,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Serves on `listener` from now on.
    pub(crate) fn start(listener: TcpListener, state: HttpState) -> Self {
        let address = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, state, stop.clone()));
        Self {
            address,
            stop,
            task: Some(task),
        }
    }

    /// Stops accepting, lets open connections finish their request, and waits.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Serves until `stop` is cancelled; open connections finish their current request.
async fn serve(listener: TcpListener, state: HttpState, stop: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, then go on.
                    warn!(error = %e, "the HTTP endpoint cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&state, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

const PLAIN: &str = "text/plain; charset=utf-8";

async fn respond(state: &HttpState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    match path.as_str() {
        "/metrics" | "/healthz" | "/readyz" if !read => text(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            format!("{path} answers GET only\n"),
        ),
        "/metrics" => {
            state.metrics.ready.set(i64::from(state.status.is_ready()));
            state
                .metrics
                .broker_up
                .set(i64::from(state.status.broker_answers()));
            render(state)
        }
        "/healthz" => text(StatusCode::OK, PLAIN, "ok\n"),
        "/readyz" => match state.status.not_ready_because() {
            None => text(StatusCode::OK, PLAIN, "ready\n"),
            Some(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                PLAIN,
                format!("not ready: {why}\n"),
            ),
        },
        _ => admin(state, req, &path).await,
    }
}

/// The admin routes, or 404.
async fn admin(state: &HttpState, req: Request<Incoming>, path: &str) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                PLAIN,
                format!("cannot read the request body (at most {MAX_BODY} bytes): {e}\n"),
            );
        }
    };
    match crate::admin::route(&state.admin, &method, path, query.as_deref(), body).await {
        Some(r) => text(
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            r.content_type,
            r.body,
        ),
        None => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            format!(
                "no route {path}; this worker serves /metrics, /healthz, /readyz, /status and /admin/...\n"
            ),
        ),
    }
}

fn render(state: &HttpState) -> Response<Full<Bytes>> {
    match state.metrics.render() {
        Ok(body) => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            body,
        ),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, PLAIN, format!("{e}\n")),
    }
}
