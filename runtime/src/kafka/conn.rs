//! One pipelined connection to one Kafka broker.
//!
//! [`Connection`] is a cheap, cloneable handle; a writer task and a reader task drive the socket.
//! Requests get correlation ids and may overlap; each answer goes back to its caller. A request
//! that gets no answer within its timeout fails with a timeout error; a broken socket fails every
//! pending request and marks the connection closed, and the owner reconnects.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::Error;

/// The largest response frame accepted (a ShareFetch answer is bounded by its MaxBytes).
const MAX_FRAME: usize = 256 * 1024 * 1024;

/// A request the connection can send: any kafka-protocol request, or one of our own codecs.
pub(crate) trait Call {
    /// The API key.
    const KEY: i16;
    /// What comes back.
    type Response: Send + 'static;
    /// Encodes the body (after the request header).
    fn encode_body(&self, buf: &mut BytesMut, version: i16) -> Result<(), Error>;
    /// Decodes the body (after the response header).
    fn decode_body(buf: &mut Bytes, version: i16) -> Result<Self::Response, Error>;
    /// The request header version for this API version.
    fn request_header_version(version: i16) -> i16;
    /// The response header version for this API version.
    fn response_header_version(version: i16) -> i16;
}

impl<R> Call for R
where
    R: Request,
    R::Response: Send + 'static,
{
    const KEY: i16 = R::KEY;
    type Response = R::Response;

    fn encode_body(&self, buf: &mut BytesMut, version: i16) -> Result<(), Error> {
        self.encode(buf, version).map_err(|e| {
            Error::codec(format!(
                "cannot encode {} v{version}: {e}",
                api_name(Self::KEY)
            ))
        })
    }

    fn decode_body(buf: &mut Bytes, version: i16) -> Result<Self::Response, Error> {
        R::Response::decode(buf, version).map_err(|e| {
            Error::broker(format!(
                "malformed {} v{version} response: {e}",
                api_name(Self::KEY)
            ))
        })
    }

    fn request_header_version(version: i16) -> i16 {
        R::header_version(version)
    }

    fn response_header_version(version: i16) -> i16 {
        R::Response::header_version(version)
    }
}

/// A readable name for an API key, for messages.
pub(crate) fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(k) => format!("{k:?}"),
        Err(()) => format!("API {key}"),
    }
}

/// The version range a broker supports for one API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Versions {
    pub(crate) min: i16,
    pub(crate) max: i16,
}

struct Pending {
    header_version: i16,
    reply: oneshot::Sender<Result<Bytes, Error>>,
}

struct Shared {
    addr: String,
    pending: Mutex<HashMap<i32, Pending>>,
    closed: AtomicBool,
    next_correlation: AtomicI32,
    versions: Mutex<HashMap<i16, Versions>>,
}

impl Shared {
    fn fail_all(&self, why: &str) {
        self.closed.store(true, Ordering::Release);
        let pending: Vec<Pending> = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, p)| p)
            .collect();
        for p in pending {
            let _ = p.reply.send(Err(Error::broker(format!(
                "connection to {} lost: {why}",
                self.addr
            ))));
        }
    }
}

/// A handle to one broker connection.
#[derive(Clone)]
pub(crate) struct Connection {
    shared: Arc<Shared>,
    writer: mpsc::UnboundedSender<Bytes>,
    client_id: Arc<str>,
    timeout: Duration,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.shared.addr)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Connection {
    /// Connects to `addr`, starts the driver tasks and negotiates API versions.
    pub(crate) async fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                Error::timeout(format!("connecting to {addr} timed out after {timeout:?}"))
            })?
            .map_err(|e| Error::broker(format!("cannot connect to {addr}")).with_source(e))?;
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let shared = Arc::new(Shared {
            addr: addr.to_owned(),
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            next_correlation: AtomicI32::new(1),
            versions: Mutex::new(HashMap::new()),
        });
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let w = shared.clone();
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if let Err(e) = wr.write_all(&frame).await {
                    w.fail_all(&e.to_string());
                    return;
                }
            }
            let _ = wr.shutdown().await;
        });
        let r = shared.clone();
        tokio::spawn(async move {
            let why = match read_loop(&mut rd, &r).await {
                Ok(()) => "closed by the broker".to_owned(),
                Err(e) => e,
            };
            r.fail_all(&why);
        });
        let conn = Self {
            shared,
            writer: tx,
            client_id: Arc::from(client_id),
            timeout,
        };
        conn.negotiate().await?;
        Ok(conn)
    }

    /// The broker's address.
    pub(crate) fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// Whether the socket is gone; the owner should reconnect.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire) || self.writer.is_closed()
    }

    async fn negotiate(&self) -> Result<(), Error> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("shareworker"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let resp: ApiVersionsResponse = self.call_version(&req, 3).await?;
        if resp.error_code != 0 {
            return Err(Error::broker(format!(
                "{} refused ApiVersions v3 (error {})",
                self.addr(),
                resp.error_code
            )));
        }
        let mut versions = self
            .shared
            .versions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for k in resp.api_keys {
            versions.insert(
                k.api_key,
                Versions {
                    min: k.min_version,
                    max: k.max_version,
                },
            );
        }
        Ok(())
    }

    /// The versions the broker supports for `key`, if any.
    pub(crate) fn versions(&self, key: i16) -> Option<Versions> {
        self.shared
            .versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .copied()
    }

    /// The highest version both sides support, from our range `ours`.
    pub(crate) fn pick(&self, key: i16, ours: Versions) -> Result<i16, Error> {
        let name = api_name(key);
        let theirs = self.versions(key).ok_or_else(|| {
            Error::broker(format!(
                "the broker at {} does not support {name}; is it Kafka 4.2 or newer with share groups enabled?",
                self.addr()
            ))
        })?;
        let v = theirs.max.min(ours.max);
        if v < ours.min || v < theirs.min {
            return Err(Error::broker(format!(
                "the broker at {} supports {name} v{}-v{}, this client v{}-v{}",
                self.addr(),
                theirs.min,
                theirs.max,
                ours.min,
                ours.max
            )));
        }
        Ok(v)
    }

    /// Sends `req` at the highest common version within `ours`.
    pub(crate) async fn call<C: Call>(
        &self,
        req: &C,
        ours: Versions,
    ) -> Result<(C::Response, i16), Error> {
        let v = self.pick(C::KEY, ours)?;
        Ok((self.call_version(req, v).await?, v))
    }

    /// Sends `req` at `version` and waits for its answer (or the timeout).
    pub(crate) async fn call_version<C: Call>(
        &self,
        req: &C,
        version: i16,
    ) -> Result<C::Response, Error> {
        let result = self.exchange(req, version).await;
        if let Err(e) = &result {
            let code = if e.is_timeout() {
                "timeout"
            } else if e.is_codec() {
                "codec"
            } else {
                "network"
            };
            super::stats::record(&api_name(C::KEY), code);
        }
        result
    }

    async fn exchange<C: Call>(&self, req: &C, version: i16) -> Result<C::Response, Error> {
        let rx = self.send_frame(req, version)?;
        let mut body = match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => {
                return Err(Error::broker(format!("connection to {} lost", self.addr())));
            }
            Err(_) => {
                return Err(Error::timeout(format!(
                    "{} to {} got no answer within {:?}",
                    api_name(C::KEY),
                    self.addr(),
                    self.timeout
                )));
            }
        };
        C::decode_body(&mut body, version)
    }

    fn send_frame<C: Call>(
        &self,
        req: &C,
        version: i16,
    ) -> Result<oneshot::Receiver<Result<Bytes, Error>>, Error> {
        if self.is_closed() {
            return Err(Error::broker(format!(
                "connection to {} is closed",
                self.addr()
            )));
        }
        let correlation = self.shared.next_correlation.fetch_add(1, Ordering::Relaxed);
        let header = RequestHeader::default()
            .with_request_api_key(C::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_string(self.client_id.to_string())));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0); // the frame length, filled in below
        header
            .encode(&mut buf, C::request_header_version(version))
            .map_err(|e| Error::codec(format!("cannot encode a request header: {e}")))?;
        req.encode_body(&mut buf, version)?;
        let len = i32::try_from(buf.len() - 4)
            .map_err(|_| Error::invalid_input("request larger than 2 GiB"))?;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let (tx, rx) = oneshot::channel();
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                correlation,
                Pending {
                    header_version: C::response_header_version(version),
                    reply: tx,
                },
            );
        if self.writer.send(buf.freeze()).is_err() {
            self.shared
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&correlation);
            return Err(Error::broker(format!(
                "connection to {} is closed",
                self.addr()
            )));
        }
        Ok(rx)
    }
}

async fn read_loop(rd: &mut tokio::net::tcp::OwnedReadHalf, shared: &Shared) -> Result<(), String> {
    loop {
        let len = match rd.read_i32().await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let len = usize::try_from(len).map_err(|_| format!("negative frame length {len}"))?;
        if !(4..=MAX_FRAME).contains(&len) {
            return Err(format!("frame length {len} out of bounds"));
        }
        let mut frame = BytesMut::zeroed(len);
        rd.read_exact(&mut frame).await.map_err(|e| e.to_string())?;
        let mut frame = frame.freeze();
        let correlation = (&frame[..4]).get_i32();
        let pending = shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&correlation);
        let Some(p) = pending else {
            // Its caller timed out and went away.
            continue;
        };
        let result = ResponseHeader::decode(&mut frame, p.header_version)
            .map(|_| frame)
            .map_err(|e| Error::broker(format!("malformed response header: {e}")));
        let _ = p.reply.send(result);
    }
}
