//! The admin routes of a worker's HTTP endpoint: [`router`] serves `/status` and
//! `/admin/...` (the table is in the docs of [`crate::admin`]); who may use them is
//! [`AdminAccess`]'s to say.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use serde::Serialize;
use tracing::warn;

use super::auth::{AdminAccess, Refused};
use crate::Error;
use crate::admin::{
    DeadLetterFilter, DeadLetterRecord, DiscardRequest, EnqueueRequest, GroupConfigs, GroupStatus,
    HandlerStatus, ReplayRequest, StatusReport,
};
use crate::broker::{Broker, BrokerAdmin};
use crate::config::{Config, DeadLetter, HttpConfig};

/// Counts a handler's jobs in flight, by handler name; `None` when unknown.
pub(crate) type InFlight = Arc<dyn Fn(&str) -> Option<u64> + Send + Sync>;

/// What the admin routes know of the worker that serves them.
#[derive(Clone)]
pub(crate) struct AdminContext {
    /// The worker's broker.
    pub(crate) broker: Arc<dyn Broker>,
    /// Its operator views, when the worker was given a broker that has them.
    pub(crate) admin: Option<Arc<dyn BrokerAdmin>>,
    /// The worker's handlers.
    pub(crate) handlers: Vec<AdminHandler>,
    /// Who may read and who may change things.
    pub(crate) access: AdminAccess,
    /// How much of a request body is read, and for how long.
    pub(crate) limits: BodyLimits,
    /// Jobs in flight per handler, if the worker counts them.
    pub(crate) in_flight: Option<InFlight>,
}

/// `http.max_body_bytes` and `http.read_timeout`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyLimits {
    pub(crate) max_body_bytes: usize,
    pub(crate) read_timeout: Duration,
}

impl BodyLimits {
    pub(crate) fn of(http: &HttpConfig) -> Self {
        Self {
            max_body_bytes: http.max_body_bytes,
            read_timeout: http.read_timeout,
        }
    }
}

/// One handler of the worker, as the admin routes show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AdminHandler {
    pub(crate) name: String,
    pub(crate) group: String,
    pub(crate) topic: String,
    pub(crate) dead_letter: Option<String>,
    pub(crate) concurrency: u32,
}

impl AdminContext {
    /// The broker's operator views.
    ///
    /// # Errors
    /// When the worker's broker has none (a `Broker` given without them, through
    /// `WorkerBuilder::broker_arc`).
    fn admin(&self) -> Result<&dyn BrokerAdmin, Error> {
        self.admin.as_deref().ok_or_else(|| {
            Error::broker(format!(
                "the worker's {} broker was given without its operator views (BrokerAdmin): give it with WorkerBuilder::broker or broker_admin_arc",
                self.broker.kind()
            ))
        })
    }

    /// The context of a worker on `broker` with this configuration (after every layer: the
    /// handlers are `config.handlers`), letting in whom `access` lets in.
    pub(crate) fn new(
        broker: Arc<dyn Broker>,
        admin: Option<Arc<dyn BrokerAdmin>>,
        config: &Config,
        access: AdminAccess,
    ) -> Self {
        let handlers = config
            .handlers
            .iter()
            .map(|(name, h)| AdminHandler {
                name: name.clone(),
                group: h.group.clone(),
                topic: h.topic.clone(),
                dead_letter: match &h.dead_letter {
                    DeadLetter::Topic(t) => Some(t.clone()),
                    DeadLetter::Off => None,
                },
                concurrency: h.concurrency,
            })
            .collect();
        Self {
            broker,
            admin,
            handlers,
            access,
            limits: BodyLimits::of(&config.http),
            in_flight: None,
        }
    }

    /// Counts jobs in flight per handler with `f`.
    pub(crate) fn with_in_flight(
        mut self,
        f: impl Fn(&str) -> Option<u64> + Send + Sync + 'static,
    ) -> Self {
        self.in_flight = Some(Arc::new(f));
        self
    }

    fn groups(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self.handlers.iter().map(|h| h.group.as_str()).collect();
        set.into_iter().map(str::to_owned).collect()
    }

    fn dead_letter_topics(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self
            .handlers
            .iter()
            .filter_map(|h| h.dead_letter.as_deref())
            .collect();
        set.into_iter().map(str::to_owned).collect()
    }

    fn handlers_of(&self, group: &str) -> Vec<HandlerStatus> {
        self.handlers
            .iter()
            .filter(|h| h.group == group)
            .map(|h| HandlerStatus {
                name: h.name.clone(),
                topic: h.topic.clone(),
                dead_letter: h.dead_letter.clone(),
                concurrency: h.concurrency,
                in_flight: self.in_flight.as_ref().and_then(|f| f(&h.name)),
            })
            .collect()
    }
}

/// An answer of the admin routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AdminResponse {
    /// The HTTP status code.
    pub(crate) status: u16,
    /// The `Content-Type`.
    pub(crate) content_type: &'static str,
    /// The body.
    pub(crate) body: Vec<u8>,
}

impl AdminResponse {
    fn json<T: Serialize>(status: u16, value: &T) -> Self {
        match serde_json::to_vec_pretty(value) {
            Ok(mut body) => {
                body.push(b'\n');
                Self {
                    status,
                    content_type: "application/json",
                    body,
                }
            }
            Err(e) => Self::error(500, &format!("cannot write the answer as JSON: {e}")),
        }
    }

    fn error(status: u16, message: &str) -> Self {
        let mut body = serde_json::json!({ "error": message })
            .to_string()
            .into_bytes();
        body.push(b'\n');
        Self {
            status,
            content_type: "application/json",
            body,
        }
    }

    fn from_error(e: &Error) -> Self {
        let status = if e.is_unknown_group() || e.is_unknown_topic() {
            404
        } else if e.is_invalid_input() || e.is_config() || e.is_codec() {
            400
        } else if e.is_timeout() {
            504
        } else {
            502
        };
        Self::error(status, &e.to_string())
    }
}

const ROUTES: &str = "GET /status[?group=G], POST /admin/enqueue, GET /admin/dlq?topic=T, \
                      POST /admin/dlq/replay, POST /admin/dlq/discard, \
                      GET|POST /admin/groups/G/config";

impl IntoResponse for AdminResponse {
    fn into_response(self) -> Response {
        let mut r = Response::new(Body::from(self.body));
        *r.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        if self.status == 401 {
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

impl AdminResponse {
    fn refused(refused: &Refused, method: &Method, path: &str) -> Self {
        let (status, message) = refused.answer();
        if status == 401 {
            // Never the token: only that one was missing or wrong.
            warn!(%method, path, why = %message, "refused an admin request");
        }
        Self::error(status, &message)
    }
}

type Ctx = State<Arc<AdminContext>>;

/// The admin routes (`/status`, `/admin/...`) of the worker whose context is `ctx`; any other
/// path under `/admin` answers 404 with the list of routes.
pub(crate) fn router(ctx: Arc<AdminContext>) -> Router {
    Router::new()
        .route("/status", get(status_route).fallback(not_allowed("GET")))
        .route(
            "/admin/enqueue",
            post(enqueue_route).fallback(not_allowed("POST")),
        )
        .route(
            "/admin/dlq",
            get(dead_letters_route).fallback(not_allowed("GET")),
        )
        .route(
            "/admin/dlq/replay",
            post(replay_route).fallback(not_allowed("POST")),
        )
        .route(
            "/admin/dlq/discard",
            post(discard_route).fallback(not_allowed("POST")),
        )
        .route(
            "/admin/groups/{group}/config",
            get(group_config_route)
                .post(set_group_config_route)
                .fallback(not_allowed("GET and POST")),
        )
        .route("/admin", any(unknown_admin_route))
        .route("/admin/{*rest}", any(unknown_admin_route))
        .with_state(ctx)
}

fn not_allowed(
    allowed: &'static str,
) -> impl Fn(Method, Uri) -> std::future::Ready<AdminResponse> + Clone + Send + Sync + 'static {
    move |method: Method, uri: Uri| {
        std::future::ready(AdminResponse::error(
            405,
            &format!("{} answers {allowed}, not {method}", uri.path()),
        ))
    }
}

async fn unknown_admin_route(method: Method, uri: Uri) -> AdminResponse {
    AdminResponse::error(
        404,
        &format!(
            "no admin route {method} {}; the routes are: {ROUTES}",
            uri.path()
        ),
    )
}

/// The query's parameters, the last of a name winning.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<String>) -> Result<Self, AdminResponse> {
        parse_query(query.as_deref().unwrap_or(""))
            .map(Self)
            .map_err(|e| AdminResponse::error(400, &e))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a request body of at most `http.max_body_bytes` within `http.read_timeout`.
async fn read_body(ctx: &AdminContext, body: Body) -> Result<Bytes, AdminResponse> {
    let limit = ctx.limits.max_body_bytes;
    let read = Limited::new(body, limit).collect();
    match tokio::time::timeout(ctx.limits.read_timeout, read).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) => Err(AdminResponse::error(
            413,
            &format!("cannot read the request body (at most {limit} bytes): {e}"),
        )),
        Err(_) => Err(AdminResponse::error(
            408,
            &format!(
                "the request body did not arrive within {:?} (`http.read_timeout`)",
                ctx.limits.read_timeout
            ),
        )),
    }
}

async fn status_route(
    State(ctx): Ctx,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> AdminResponse {
    if let Err(r) = ctx.access.check_read(&headers) {
        return AdminResponse::refused(&r, &method, uri.path());
    }
    match Params::parse(query) {
        Ok(p) => status(&ctx, p.get("group")).await,
        Err(r) => r,
    }
}

async fn enqueue_route(
    State(ctx): Ctx,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AdminResponse {
    if let Err(r) = ctx.access.check_write(&headers, "enqueue") {
        return AdminResponse::refused(&r, &method, uri.path());
    }
    let body = match read_body(&ctx, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let job: EnqueueRequest =
        match decode_body(&body, "{\"topic\": \"emails\", \"payload\": {...}}") {
            Ok(j) => j,
            Err(r) => return r,
        };
    crate::admin::enqueue(&*ctx.broker, &job)
        .await
        .map(|e| AdminResponse::json(200, &e))
        .unwrap_or_else(|e| AdminResponse::from_error(&e))
}

async fn dead_letters_route(
    State(ctx): Ctx,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> AdminResponse {
    if let Err(r) = ctx.access.check_read(&headers) {
        return AdminResponse::refused(&r, &method, uri.path());
    }
    let params = match Params::parse(query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    match filter_from(&|name| params.get(name)) {
        Ok(filter) => list_dead_letters(&ctx, params.get("topic"), &filter).await,
        Err(r) => r,
    }
}

/// The request of a dead-letter action (replay, discard), if this request may make it: a dry
/// run changes nothing, so it is a read; otherwise it is a change named `what`.
async fn dead_letter_request<R: serde::de::DeserializeOwned>(
    ctx: &AdminContext,
    request: (Method, Uri, HeaderMap, Body),
    example: &str,
    what: &str,
    dry_run: impl Fn(&R) -> bool,
) -> Result<R, AdminResponse> {
    let (method, uri, headers, body) = request;
    let body = read_body(ctx, body).await?;
    let req: R = decode_body(&body, example)?;
    let allowed = if dry_run(&req) {
        ctx.access.check_read(&headers)
    } else {
        ctx.access.check_write(&headers, what)
    };
    allowed.map_err(|r| AdminResponse::refused(&r, &method, uri.path()))?;
    Ok(req)
}

async fn discard_route(
    State(ctx): Ctx,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AdminResponse {
    let example = "{\"topic\": \"emails.dlq\", \"filter\": {...}, \"options\": {\"dry_run\": true, \"reason\": \"...\"}}";
    let request = (method, uri, headers, body);
    match dead_letter_request(&ctx, request, example, "discard", |r: &DiscardRequest| {
        r.options.dry_run
    })
    .await
    {
        Ok(req) => discard(&ctx, &req).await,
        Err(r) => r,
    }
}

async fn replay_route(
    State(ctx): Ctx,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AdminResponse {
    let example =
        "{\"topic\": \"emails.dlq\", \"filter\": {...}, \"options\": {\"dry_run\": true}}";
    let request = (method, uri, headers, body);
    match dead_letter_request(&ctx, request, example, "replay", |r: &ReplayRequest| {
        r.options.dry_run
    })
    .await
    {
        Ok(req) => replay(&ctx, &req).await,
        Err(r) => r,
    }
}

/// The group of `/admin/groups/{group}/config`, decoded; `a%2Fb` is refused.
fn group_of(group: &str) -> Result<&str, AdminResponse> {
    if group.is_empty() || group.contains('/') {
        return Err(AdminResponse::error(
            400,
            &format!("`{group}` is not a group id; use /admin/groups/<group>/config"),
        ));
    }
    Ok(group)
}

async fn group_config_route(
    State(ctx): Ctx,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(group): Path<String>,
) -> AdminResponse {
    if let Err(r) = ctx.access.check_read(&headers) {
        return AdminResponse::refused(&r, &method, uri.path());
    }
    let group = match group_of(&group) {
        Ok(g) => g,
        Err(r) => return r,
    };
    async { crate::admin::group_configs(ctx.admin()?, group).await }
        .await
        .map(|c| AdminResponse::json(200, &c))
        .unwrap_or_else(|e| AdminResponse::from_error(&e))
}

async fn set_group_config_route(
    State(ctx): Ctx,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(group): Path<String>,
    body: Body,
) -> AdminResponse {
    if let Err(r) = ctx.access.check_write(&headers, "setting group configs") {
        return AdminResponse::refused(&r, &method, uri.path());
    }
    let group = match group_of(&group) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let body = match read_body(&ctx, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let set: GroupConfigs = match decode_body(
        &body,
        "{\"configs\": [[\"share.delivery.count.limit\", \"3\"]]}",
    ) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match async { ctx.admin()?.set_group_configs(group, &set.configs).await }.await {
        Ok(()) => async { crate::admin::group_configs(ctx.admin()?, group).await }
            .await
            .map(|c| AdminResponse::json(200, &c))
            .unwrap_or_else(|e| AdminResponse::from_error(&e)),
        Err(e) => AdminResponse::from_error(&e),
    }
}

fn decode_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    example: &str,
) -> Result<T, AdminResponse> {
    serde_json::from_slice(body).map_err(|e| {
        AdminResponse::error(
            400,
            &format!("malformed request body ({e}); send JSON like {example}"),
        )
    })
}

async fn status(ctx: &AdminContext, group: Option<&str>) -> AdminResponse {
    let groups = match group {
        Some(g) => vec![g.to_owned()],
        None => ctx.groups(),
    };
    let mut report = StatusReport {
        broker: ctx.broker.kind().to_owned(),
        admin: Some(ctx.access.writes()),
        groups: Vec::new(),
    };
    let mine = ctx.groups();
    for g in groups {
        match async { crate::admin::group_status(ctx.admin()?, &g).await }.await {
            Ok(mut s) => {
                s.handlers = ctx.handlers_of(&g);
                report.groups.push(s);
            }
            // One of ours that has not joined yet.
            Err(e) if e.is_unknown_group() && mine.contains(&g) => {
                let limits = match ctx.broker.group_limits(&g).await {
                    Ok(l) => l,
                    Err(e) => return AdminResponse::from_error(&e),
                };
                report.groups.push(GroupStatus {
                    group: g.clone(),
                    state: "NotJoined".to_owned(),
                    delivery_count_limit: limits.delivery_count_limit,
                    lock_duration_ms: u64::try_from(limits.lock_duration.as_millis())
                        .unwrap_or(u64::MAX),
                    max_record_locks: limits.max_record_locks,
                    handlers: ctx.handlers_of(&g),
                    ..GroupStatus::default()
                });
            }
            Err(e) if e.is_unknown_group() => {
                let message = format!(
                    "unknown group `{g}`: this worker's groups are {}",
                    if mine.is_empty() {
                        "none".to_owned()
                    } else {
                        mine.join(", ")
                    }
                );
                return AdminResponse::error(404, &message);
            }
            Err(e) => return AdminResponse::from_error(&e),
        }
    }
    AdminResponse::json(200, &report)
}

fn filter_from<'a>(
    param: &impl Fn(&str) -> Option<&'a str>,
) -> Result<DeadLetterFilter, AdminResponse> {
    fn num<T: std::str::FromStr>(name: &str, v: Option<&str>) -> Result<Option<T>, AdminResponse> {
        v.map(|v| {
            v.trim()
                .parse()
                .map_err(|_| AdminResponse::error(400, &format!("`{name}={v}` is not a number")))
        })
        .transpose()
    }
    Ok(DeadLetterFilter {
        partition: num("partition", param("partition"))?,
        from_offset: num("from", param("from"))?,
        to_offset: num("to", param("to"))?,
        error_contains: param("error").map(str::to_owned),
        handler: param("handler").map(str::to_owned),
        limit: num("limit", param("limit"))?,
    })
}

async fn list_dead_letters(
    ctx: &AdminContext,
    topic: Option<&str>,
    filter: &DeadLetterFilter,
) -> AdminResponse {
    let mut out: Vec<DeadLetterRecord> = Vec::new();
    match topic {
        Some(t) => {
            match async { crate::admin::dead_letters(ctx.admin()?, t, filter).await }.await {
                Ok(l) => out = l,
                Err(e) => return AdminResponse::from_error(&e),
            }
        }
        None => {
            for t in ctx.dead_letter_topics() {
                match async { crate::admin::dead_letters(ctx.admin()?, &t, filter).await }.await {
                    Ok(l) => out.extend(l),
                    // Nothing was dead-lettered there yet.
                    Err(e) if e.is_unknown_topic() => {}
                    Err(e) => return AdminResponse::from_error(&e),
                }
            }
            if let Some(limit) = filter.limit {
                out.truncate(limit);
            }
        }
    }
    AdminResponse::json(200, &out)
}

/// `op` on `topic`, or on every dead-letter topic of the worker's handlers (those that do not
/// exist yet are skipped); the reports as JSON.
async fn on_dead_letter_topics<R, F, Fut>(
    ctx: &AdminContext,
    topic: Option<&String>,
    op: F,
) -> AdminResponse
where
    R: Serialize,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<R, Error>>,
{
    let topics = match topic {
        Some(t) => vec![t.clone()],
        None => ctx.dead_letter_topics(),
    };
    let mut reports = Vec::new();
    for t in topics {
        match op(t).await {
            Ok(r) => reports.push(r),
            Err(e) if e.is_unknown_topic() && topic.is_none() => {}
            Err(e) => return AdminResponse::from_error(&e),
        }
    }
    AdminResponse::json(200, &reports)
}

async fn replay(ctx: &AdminContext, req: &ReplayRequest) -> AdminResponse {
    on_dead_letter_topics(ctx, req.topic.as_ref(), |t| async move {
        crate::admin::replay(ctx.admin()?, &t, &req.filter, req.options).await
    })
    .await
}

async fn discard(ctx: &AdminContext, req: &DiscardRequest) -> AdminResponse {
    on_dead_letter_topics(ctx, req.topic.as_ref(), |t| async move {
        crate::admin::discard(ctx.admin()?, &t, &req.filter, req.options.clone()).await
    })
    .await
}

/// `a=1&b=x%20y` into pairs, `+` as a space.
fn parse_query(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(k, true)?, percent_decode(v, true)?))
        })
        .collect()
}

fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-escape in `{s}`"))?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` is not UTF-8 once decoded"))
}
