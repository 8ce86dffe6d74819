//! A worker's HTTP endpoint: JSON over HTTP/1.1 (hyper), one connection per request.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

/// How long one request may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct WorkerClient {
    /// `http://host:port`, for messages.
    url: String,
    /// `host:port`.
    authority: String,
    /// A path prefix (for a worker behind a proxy), without the trailing `/`.
    prefix: String,
    /// The admin token, sent as `Authorization: Bearer` (never printed).
    token: Option<String>,
}

impl WorkerClient {
    pub(crate) fn new(url: &str) -> anyhow::Result<Self> {
        let url = url.trim();
        let Some(rest) = url.strip_prefix("http://").map(|r| r.trim_end_matches('/')) else {
            if url.starts_with("https://") {
                bail!(
                    "--worker `{url}`: https is not supported; reach the worker's endpoint over http (for example through kubectl port-forward)"
                );
            }
            bail!(
                "--worker `{url}` is not an http:// address; write http://host:port (the worker's http.address, 9464 by default)"
            );
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            bail!("--worker `{url}` has no host; write http://host:port");
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            authority,
            prefix: prefix.to_owned(),
            token: None,
        })
    }

    /// Sends `token` as the admin token with every request.
    pub(crate) fn with_token(mut self, token: Option<&str>) -> Self {
        self.token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        self
    }

    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        let mut target = format!("{}{path}", self.prefix);
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            target.push('?');
            target.push_str(&q.join("&"));
        }
        self.call("GET", &target, Bytes::new()).await
    }

    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let body = serde_json::to_vec(body).context("cannot write the request as JSON")?;
        self.call("POST", &format!("{}{path}", self.prefix), Bytes::from(body))
            .await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        target: &str,
        body: Bytes,
    ) -> anyhow::Result<T> {
        let (status, bytes) = tokio::time::timeout(TIMEOUT, self.send(method, target, body))
            .await
            .map_err(|_| {
                anyhow!(
                    "the worker at {} did not answer {method} {target} within {}s",
                    self.url,
                    TIMEOUT.as_secs()
                )
            })??;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| {
                anyhow!(
                    "the worker at {} answered {method} {target} with something this CLI does not understand ({e}); are the CLI and the worker the same version?",
                    self.url
                )
            });
        }
        #[derive(serde::Deserialize)]
        struct ErrorBody {
            error: String,
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) => Err(anyhow!("{}", e.error)),
            Err(_) if status == 404 => Err(anyhow!(
                "the worker at {} has no {target} (HTTP 404): is it a shareworker worker, of a version with the admin routes?",
                self.url
            )),
            Err(_) => Err(anyhow!(
                "the worker at {} answered HTTP {status} to {method} {target}: {}",
                self.url,
                String::from_utf8_lossy(&bytes).trim()
            )),
        }
    }

    async fn send(&self, method: &str, target: &str, body: Bytes) -> anyhow::Result<(u16, Bytes)> {
        let unreachable = |e: &dyn std::fmt::Display| {
            anyhow!(
                "cannot reach the worker at {}: {e}; is it running, with its HTTP endpoint (http.enabled, http.address) on that address?",
                self.url
            )
        };
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(target)
            .header(HOST, &self.authority)
            .header(CONTENT_TYPE, "application/json");
        if let Some(t) = &self.token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(body))
            .context("cannot build the request")?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(&e))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| anyhow!("the worker at {} broke off its answer: {e}", self.url))?
            .to_bytes();
        Ok((status, bytes))
    }
}

/// Percent-encodes everything but unreserved characters.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_urls() {
        let c = WorkerClient::new("http://127.0.0.1:9464/").expect("valid");
        assert_eq!(
            (c.authority.as_str(), c.prefix.as_str()),
            ("127.0.0.1:9464", "")
        );
        let c = WorkerClient::new("http://worker/shareworker").expect("valid");
        assert_eq!(
            (c.authority.as_str(), c.prefix.as_str()),
            ("worker:80", "/shareworker")
        );
        for (bad, says) in [
            ("https://x:1", "https is not supported"),
            ("127.0.0.1:9464", "not an http:// address"),
            ("http://", "no host"),
        ] {
            let e = WorkerClient::new(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert_eq!(encode("a b/c@d"), "a%20b%2Fc%40d");
    }
}
