//! The admin routes of a worker's HTTP endpoint: [`route`] answers `/status` and `/admin/...`
//! for the server, which owns the socket (see the table in the [module docs](super)).

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use super::{
    DeadLetterFilter, DeadLetterRecord, EnqueueRequest, GroupConfigs, GroupStatus, HandlerStatus,
    ReplayRequest, StatusReport,
};
use crate::Error;
use crate::broker::Broker;
use crate::config::{Config, DeadLetter};

/// Counts a handler's jobs in flight, by handler name; `None` when unknown.
pub(crate) type InFlight = Arc<dyn Fn(&str) -> Option<u64> + Send + Sync>;

/// What the admin routes know of the worker that serves them.
#[derive(Clone)]
pub(crate) struct AdminContext {
    /// The worker's broker.
    pub(crate) broker: Arc<dyn Broker>,
    /// The worker's handlers.
    pub(crate) handlers: Vec<AdminHandler>,
    /// `http.admin`: whether the mutating routes (enqueue, replay, config set) are allowed.
    pub(crate) admin: bool,
    /// Jobs in flight per handler, if the worker counts them.
    pub(crate) in_flight: Option<InFlight>,
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
    /// The context of a worker on `broker` with this configuration (after every layer: the
    /// handlers are `config.handlers`); `admin` is `http.admin`.
    pub(crate) fn new(broker: Arc<dyn Broker>, config: &Config, admin: bool) -> Self {
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
            handlers,
            admin,
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

    fn forbidden(what: &str) -> Self {
        Self::error(
            403,
            &format!(
                "{what} changes the worker's broker, and this worker's admin routes are off: set \
                 `http.admin = true` in shareworker.toml (or SHAREWORKER_HTTP__ADMIN=true) and \
                 restart the worker, or use the CLI against Kafka directly with --broker"
            ),
        )
    }
}

const ROUTES: &str = "GET /status[?group=G], POST /admin/enqueue, GET /admin/dlq?topic=T, \
                      POST /admin/dlq/replay, GET|POST /admin/groups/G/config";

/// Answers `method` on `path` (with `query`, without the `?`, and the request `body`) if it is
/// one of the admin routes; `None` for any other path, which the server answers itself.
pub(crate) async fn route(
    ctx: &AdminContext,
    method: &str,
    path: &str,
    query: Option<&str>,
    body: Bytes,
) -> Option<AdminResponse> {
    let params = match parse_query(query.unwrap_or("")) {
        Ok(p) => p,
        Err(e) => return Some(AdminResponse::error(400, &e)),
    };
    let param = |name: &str| {
        params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let allow = |allowed: &str| {
        if method == allowed {
            None
        } else {
            Some(AdminResponse::error(
                405,
                &format!("{path} answers {allowed}, not {method}"),
            ))
        }
    };
    let answer = match path.trim_end_matches('/') {
        "/status" => {
            if let Some(r) = allow("GET") {
                return Some(r);
            }
            status(ctx, param("group")).await
        }
        "/admin/enqueue" => {
            if let Some(r) = allow("POST") {
                return Some(r);
            }
            if !ctx.admin {
                return Some(AdminResponse::forbidden("enqueue"));
            }
            let job: EnqueueRequest =
                match decode_body(&body, "{\"topic\": \"emails\", \"payload\": {...}}") {
                    Ok(j) => j,
                    Err(r) => return Some(r),
                };
            super::enqueue(&*ctx.broker, &job)
                .await
                .map(|e| AdminResponse::json(200, &e))
                .unwrap_or_else(|e| AdminResponse::from_error(&e))
        }
        "/admin/dlq" => {
            if let Some(r) = allow("GET") {
                return Some(r);
            }
            match filter_from(&param) {
                Ok(filter) => list_dead_letters(ctx, param("topic"), &filter).await,
                Err(r) => r,
            }
        }
        "/admin/dlq/replay" => {
            if let Some(r) = allow("POST") {
                return Some(r);
            }
            let req: ReplayRequest = match decode_body(
                &body,
                "{\"topic\": \"emails.dlq\", \"filter\": {...}, \"options\": {\"dry_run\": true}}",
            ) {
                Ok(r) => r,
                Err(r) => return Some(r),
            };
            if !ctx.admin && !req.options.dry_run {
                return Some(AdminResponse::forbidden("replay"));
            }
            replay(ctx, &req).await
        }
        p if p.starts_with("/admin/groups/") && p.ends_with("/config") => {
            let raw = &p["/admin/groups/".len()..p.len() - "/config".len()];
            let group = match percent_decode(raw, false) {
                Ok(g) if !g.is_empty() && !g.contains('/') => g,
                _ => {
                    return Some(AdminResponse::error(
                        400,
                        &format!("`{raw}` is not a group id; use /admin/groups/<group>/config"),
                    ));
                }
            };
            match method {
                "GET" => super::group_configs(&*ctx.broker, &group)
                    .await
                    .map(|c| AdminResponse::json(200, &c))
                    .unwrap_or_else(|e| AdminResponse::from_error(&e)),
                "POST" => {
                    if !ctx.admin {
                        return Some(AdminResponse::forbidden("setting group configs"));
                    }
                    let set: GroupConfigs = match decode_body(
                        &body,
                        "{\"configs\": [[\"share.delivery.count.limit\", \"3\"]]}",
                    ) {
                        Ok(s) => s,
                        Err(r) => return Some(r),
                    };
                    match ctx.broker.set_group_configs(&group, &set.configs).await {
                        Ok(()) => super::group_configs(&*ctx.broker, &group)
                            .await
                            .map(|c| AdminResponse::json(200, &c))
                            .unwrap_or_else(|e| AdminResponse::from_error(&e)),
                        Err(e) => AdminResponse::from_error(&e),
                    }
                }
                other => {
                    AdminResponse::error(405, &format!("{path} answers GET and POST, not {other}"))
                }
            }
        }
        p if p == "/admin" || p.starts_with("/admin/") => AdminResponse::error(
            404,
            &format!("no admin route {method} {path}; the routes are: {ROUTES}"),
        ),
        _ => return None,
    };
    Some(answer)
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
        admin: Some(ctx.admin),
        groups: Vec::new(),
    };
    let mine = ctx.groups();
    for g in groups {
        match super::group_status(&*ctx.broker, &g).await {
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
        Some(t) => match super::dead_letters(&*ctx.broker, t, filter).await {
            Ok(l) => out = l,
            Err(e) => return AdminResponse::from_error(&e),
        },
        None => {
            for t in ctx.dead_letter_topics() {
                match super::dead_letters(&*ctx.broker, &t, filter).await {
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

async fn replay(ctx: &AdminContext, req: &ReplayRequest) -> AdminResponse {
    let topics = match &req.topic {
        Some(t) => vec![t.clone()],
        None => ctx.dead_letter_topics(),
    };
    let mut reports = Vec::new();
    for t in &topics {
        match super::replay(&*ctx.broker, t, &req.filter, req.options).await {
            Ok(r) => reports.push(r),
            Err(e) if e.is_unknown_topic() && req.topic.is_none() => {}
            Err(e) => return AdminResponse::from_error(&e),
        }
    }
    AdminResponse::json(200, &reports)
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

#[cfg(test)]
mod tests;
