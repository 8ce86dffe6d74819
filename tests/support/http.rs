//! A minimal HTTP/1.1 client for the worker's endpoint, and a reader of the Prometheus text
//! format, so the tests check the bytes a scraper gets.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `method path` to `addr` with `Connection: close`; returns the status and the body.
///
/// # Panics
/// When the connection fails or the answer is not HTTP.
pub async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    try_request(addr, method, path)
        .await
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"))
}

/// Polls `/metrics` at `addr` every `every` until `cond` holds on the text, for at most `within`;
/// returns the text that satisfied it.
///
/// # Panics
/// When `/metrics` does not answer 200, or `cond` still fails after `within` (naming `what` and
/// showing the last text).
pub async fn wait_for_metrics(
    addr: SocketAddr,
    what: &str,
    within: Duration,
    every: Duration,
    cond: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (status, body) = request(addr, "GET", "/metrics").await;
        assert_eq!(status, 200, "{body}");
        if cond(&body) {
            return body;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("waited {within:?} for {what}; /metrics said:\n{body}");
        }
        tokio::time::sleep(every).await;
    }
}

/// [`request`] that returns connection errors instead of panicking.
///
/// # Errors
/// When the connection fails or the answer is not HTTP.
pub async fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> Result<(u16, String), String> {
    let io = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(30), io)
        .await
        .map_err(|_| "no answer within 30 s".to_owned())??;
    let text = String::from_utf8(raw).map_err(|e| e.to_string())?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body
            .split_once("\r\n")
            .ok_or_else(|| "bad chunk".to_owned())?;
        let n = usize::from_str_radix(size.trim(), 16).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..n).ok_or_else(|| "short chunk".to_owned())?);
        body = rest.get(n + 2..).ok_or_else(|| "short chunk".to_owned())?;
    }
}

/// The value of the sample `name{labels...}` in a Prometheus text exposition: the first sample
/// of that name whose labels include every pair of `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            return None;
        }
        let ok = labels
            .iter()
            .all(|(k, v)| rest.split(',').any(|p| p == format!("{k}=\"{v}\"")));
        if ok { value.parse().ok() } else { None }
    })
}
