//! The listener behind the endpoint: accepts connections up to `http.max_connections`, gives a
//! client `http.read_timeout` to send each request's headers (idle kept-alive connections
//! included), takes headers of at most [`MAX_HEADER_BYTES`], and hands each request to a
//! [`Router`]. Malformed requests are answered 400 by hyper and logged at `debug` only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::Error;
use crate::config::HttpConfig;

/// The most bytes of request line and headers a client may send (431 past it).
pub(crate) const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The most header fields in one request (431 past it).
const MAX_HEADERS: usize = 64;

/// What one listener lets a client hold.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ServerLimits {
    pub(crate) max_connections: usize,
    pub(crate) read_timeout: Duration,
}

impl ServerLimits {
    pub(crate) fn of(http: &HttpConfig) -> Self {
        Self {
            max_connections: usize::try_from(http.max_connections).unwrap_or(usize::MAX),
            read_timeout: http.read_timeout,
        }
    }
}

/// Binds `address`, the value of the setting `key`; the error says which setting to change.
pub(crate) async fn bind(address: &str, key: &str) -> Result<TcpListener, Error> {
    let env = format!(
        "SHAREWORKER_{}",
        key.replace('.', "__").to_ascii_uppercase()
    );
    let addr: SocketAddr = address.parse().map_err(|_| {
        Error::config(format!(
            "`{key}`: must be an IP address and port such as 0.0.0.0:9464, got `{address}`"
        ))
    })?;
    TcpListener::bind(addr).await.map_err(|e| {
        Error::config(format!(
            "cannot listen on {addr} for the HTTP endpoint: {e}; set `{key}` ({env}) to a free address, or `http.enabled = false`"
        ))
    })
}

/// A running listener; dropping it stops it.
pub(crate) struct Server {
    pub(crate) address: SocketAddr,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Serves `router` on `listener` from now on.
    pub(crate) fn start(listener: TcpListener, router: Router, limits: ServerLimits) -> Self {
        let address = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, router, limits, stop.clone()));
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

/// `/status/` as `/status`: a trailing slash names the same route.
fn without_trailing_slash(mut req: Request<Incoming>) -> Request<Incoming> {
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let pq = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_owned(),
        };
        if let Ok(uri) = Uri::builder().path_and_query(pq).build() {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// Serves until `stop` is cancelled; open connections finish their current request.
async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut refused_logged = false;
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, then go on.
                    warn!(error = %e, "the HTTP endpoint cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Closed at once: a flood of connections cannot starve the ones being served.
            if !refused_logged {
                warn!(%peer, max_connections = limits.max_connections,
                    "the HTTP endpoint has `http.max_connections` open connections: closing new ones until some end (logged once)");
                refused_logged = true;
            }
            drop(stream);
            continue;
        };
        let router = router.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req: Request<Incoming>| {
                let router = router.clone();
                async move {
                    let req = without_trailing_slash(req).map(Body::new);
                    Ok::<_, Infallible>(router.oneshot(req).await.unwrap_or_else(|e| match e {}))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.read_timeout)
                .max_buf_size(MAX_HEADER_BYTES)
                .max_headers(MAX_HEADERS)
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
                // Malformed requests, slow clients, resets: the client's trouble, not ours.
                debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
}
