//! One pipelined connection to one Kafka broker.
//!
//! [`Connection`] is a cheap, cloneable handle; a writer task and a reader task drive the socket.
//! Requests get correlation ids and may overlap; each answer goes back to its caller. A request
//! that gets no answer within its timeout fails with a timeout error and gives the connection up
//! (the broker answers in order, so nothing sent after it would be answered sooner); a broken
//! socket fails every pending request. Either way the connection is marked closed and the owner
//! reconnects.
//!
//! The socket is plain TCP or TLS (rustls), set up before the connection is made: a connection
//! takes a ready [`Transport`] ([`Connection::handshake`]). With SASL, the writer task authenticates right after
//! ApiVersions (SaslHandshake v1, SaslAuthenticate), and again on the same connection before the
//! session lifetime the broker gave runs out (KIP-368): it holds back other requests meanwhile,
//! as the broker wants no other request between the handshake and the last authenticate.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::client::ClientConfig;
use super::sasl::{Credentials, Exchange};
use super::stats::ErrorCounts;
use super::transport::Transport;
use super::wire::layout::Checked;
use crate::{Error, KafkaError as _};
use shareworker_core::lock::LockExt;

/// ApiVersions: v3, the first flexible version, sent first on every connection.
pub(crate) const API_VERSIONS: Versions = Versions { min: 3, max: 3 };

mod frame;

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use frame::decode_frame;
pub(crate) use frame::{decode_header, read_frame};

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

/// Every kafka-protocol request whose response has a [`Checked`] layout: the response is scanned
/// along it before kafka-protocol decodes it, so a corrupt or hostile length prefix is an error
/// rather than a huge allocation (see [`crate::wire::layout`]).
impl<R> Call for R
where
    R: Request,
    R::Response: Checked + Send + 'static,
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
        if let Some(layout) = <R::Response as Checked>::LAYOUT {
            layout.scan(buf, version).map_err(|e| {
                Error::broker(format!(
                    "malformed {} v{version} response: {e}",
                    api_name(Self::KEY)
                ))
            })?;
        }
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

/// Where the answer to one request arrives.
type Reply = oneshot::Receiver<Result<Bytes, Error>>;

struct Pending {
    header_version: i16,
    reply: oneshot::Sender<Result<Bytes, Error>>,
}

struct Shared {
    addr: String,
    pending: Mutex<HashMap<i32, Pending>>,
    closed: AtomicBool,
    /// Why the connection closed, when it has: told to calls made afterwards.
    cause: Mutex<Option<Error>>,
    next_correlation: AtomicI32,
    versions: Mutex<HashMap<i16, Versions>>,
    /// The broker errors of the client this connection belongs to.
    errors: Arc<ErrorCounts>,
}

impl Shared {
    /// Marks the connection closed and fails every pending request with `cause`: as it is when
    /// it is an authentication error (fatal), else as "connection lost".
    fn fail_all(&self, cause: &Error) {
        {
            let mut first = self.cause.locked();
            if first.is_none() {
                *first = Some(cause.duplicate());
            }
        }
        self.closed.store(true, Ordering::Release);
        let pending: Vec<Pending> = self.pending.locked().drain().map(|(_, p)| p).collect();
        for p in pending {
            let _ = p.reply.send(Err(self.lost(cause)));
        }
    }

    /// The error for a call the connection's end (`cause`) took: `cause` as it is when it is
    /// an authentication error (fatal), else "connection lost".
    fn lost(&self, cause: &Error) -> Error {
        if cause.is_auth() {
            cause.duplicate()
        } else {
            Error::broker(format!("connection to {} lost: {cause}", self.addr))
        }
    }

    /// The error for a call made after the connection closed: why it closed, if known (a TLS
    /// alert can end it before its first request is sent).
    fn closed_error(&self) -> Error {
        match &*self.cause.locked() {
            Some(cause) => self.lost(cause),
            None => Error::broker(format!("connection to {} is closed", self.addr)),
        }
    }

    /// Frames `req` with a new correlation id and registers who waits for the answer.
    fn frame<C: Call>(
        &self,
        req: &C,
        version: i16,
        client_id: &str,
    ) -> Result<(i32, Bytes, Reply), Error> {
        let correlation = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let header = RequestHeader::default()
            .with_request_api_key(C::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_string(client_id.to_owned())));
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
        self.pending.locked().insert(
            correlation,
            Pending {
                header_version: C::response_header_version(version),
                reply: tx,
            },
        );
        Ok((correlation, buf.freeze(), rx))
    }

    fn forget(&self, correlation: i32) {
        self.pending.locked().remove(&correlation);
    }

    /// Waits for the answer to a framed request, within `timeout`.
    async fn answer<C: Call>(
        &self,
        rx: Reply,
        version: i16,
        timeout: Duration,
    ) -> Result<C::Response, Error> {
        let mut body = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => {
                return Err(Error::broker(format!("connection to {} lost", self.addr)));
            }
            Err(_) => {
                let e = Error::timeout(format!(
                    "{} to {} got no answer within {timeout:?}",
                    api_name(C::KEY),
                    self.addr,
                ));
                // The broker answers in order: what was sent after this request would wait
                // behind it, and a stalled broker answers none. Give the connection up; its
                // owner opens a new one.
                self.fail_all(&e);
                return Err(e);
            }
        };
        C::decode_body(&mut body, version)
    }
}

/// What the writer task is asked to do.
enum Out {
    /// Write this frame.
    Frame(Bytes),
    /// Authenticate with SASL now, and say how it went.
    Authenticate(oneshot::Sender<Result<(), Error>>),
}

/// A handle to one broker connection.
#[derive(Clone)]
pub(crate) struct Connection {
    shared: Arc<Shared>,
    writer: mpsc::UnboundedSender<Out>,
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
    /// Runs the Kafka protocol on a ready transport `io` to the broker at `addr` (TCP, and TLS
    /// when configured, already set up: see [`transport`](super::transport)): starts the driver
    /// tasks, negotiates API versions and authenticates (SASL) when configured.
    pub(crate) async fn handshake<T: Transport>(
        io: T,
        addr: &str,
        config: &ClientConfig,
        errors: Arc<ErrorCounts>,
    ) -> Result<Self, Error> {
        let timeout = config.request_timeout;
        let security = &config.security;
        let shared = Arc::new(Shared {
            addr: addr.to_owned(),
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            cause: Mutex::new(None),
            next_correlation: AtomicI32::new(1),
            versions: Mutex::new(HashMap::new()),
            errors,
        });
        let (tx, rx) = mpsc::unbounded_channel::<Out>();
        let client_id: Arc<str> = Arc::from(config.client_id.as_str());
        let writer = Writer {
            shared: shared.clone(),
            client_id: client_id.clone(),
            timeout,
            sasl: security.sasl.clone(),
            reauth_at: None,
        };
        let (rd, wr) = io.into_halves();
        spawn_drivers(rd, wr, writer, rx);
        let conn = Self {
            shared,
            writer: tx,
            client_id,
            timeout,
        };
        conn.negotiate().await.map_err(|e| {
            if e.is_broker() && !security.protocol.uses_tls() {
                // A TLS listener answers plain text with an alert or by hanging up.
                Error::broker(format!(
                    "the first request to {addr} failed: is that listener {}? Match `kafka.security_protocol` to it",
                    security.protocol
                ))
                .with_source(e)
            } else {
                e
            }
        })?;
        if security.sasl.is_some() {
            let (done, result) = oneshot::channel();
            conn.writer
                .send(Out::Authenticate(done))
                .map_err(|_| Error::broker(format!("connection to {addr} lost")))?;
            result
                .await
                .map_err(|_| Error::broker(format!("connection to {addr} lost")))??;
        }
        Ok(conn)
    }

    /// The broker's address.
    pub(crate) fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// The broker errors of the client this connection belongs to: count an answer's error
    /// code here.
    pub(crate) fn errors(&self) -> &ErrorCounts {
        &self.shared.errors
    }

    /// Whether the socket is gone; the owner should reconnect.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire) || self.writer.is_closed()
    }

    async fn negotiate(&self) -> Result<(), Error> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("shareworker"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let resp: ApiVersionsResponse = self.call_version(&req, API_VERSIONS.max).await?;
        if resp.error_code != 0 {
            return Err(Error::broker(format!(
                "{} refused ApiVersions v3 (error {})",
                self.addr(),
                resp.error_code
            )));
        }
        let mut versions = self.shared.versions.locked();
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
        self.shared.versions.locked().get(&key).copied()
    }

    /// The highest version both sides support, from our range `ours`.
    pub(crate) fn pick(&self, key: i16, ours: Versions) -> Result<i16, Error> {
        pick(&self.shared, key, ours)
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
            self.shared.errors.record(&api_name(C::KEY), code);
        }
        result
    }

    async fn exchange<C: Call>(&self, req: &C, version: i16) -> Result<C::Response, Error> {
        if self.is_closed() {
            return Err(self.shared.closed_error());
        }
        let (correlation, frame, rx) = self.shared.frame(req, version, &self.client_id)?;
        if self.writer.send(Out::Frame(frame)).is_err() {
            self.shared.forget(correlation);
            return Err(self.shared.closed_error());
        }
        self.shared.answer::<C>(rx, version, self.timeout).await
    }
}

/// SaslHandshake: v1 (authentication in SaslAuthenticate requests).
pub(crate) const SASL_HANDSHAKE: Versions = Versions { min: 1, max: 1 };
/// SaslAuthenticate: v1 added the session lifetime (KIP-368).
pub(crate) const SASL_AUTHENTICATE: Versions = Versions { min: 1, max: 2 };

/// The writer task's state.
struct Writer {
    shared: Arc<Shared>,
    client_id: Arc<str>,
    timeout: Duration,
    sasl: Option<Arc<Credentials>>,
    /// When to authenticate again: within the session lifetime the broker gave.
    reauth_at: Option<Instant>,
}

/// How long a writer that failed waits for the reader's reason before failing the calls itself.
const READER_GRACE: Duration = Duration::from_millis(500);

fn spawn_drivers<R, W>(
    mut rd: R,
    mut wr: W,
    mut writer: Writer,
    mut rx: mpsc::UnboundedReceiver<Out>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let r = writer.shared.clone();
    let (read_over, reader_done) = oneshot::channel::<()>();
    tokio::spawn(async move {
        if let Err(e) = writer.run(&mut wr, &mut rx).await {
            // A broker that ends a connection may have said why first (a TLS alert refusing the
            // client's certificate, say); the reader is about to see it, so let it speak first.
            let _ = tokio::time::timeout(READER_GRACE, reader_done).await;
            writer.shared.fail_all(&e);
            return;
        }
        let _ = wr.shutdown().await;
    });
    tokio::spawn(async move {
        let why = match read_loop(&mut rd, &r).await {
            Ok(()) => Error::broker("closed by the broker"),
            Err(e) => e,
        };
        r.fail_all(&why);
        let _ = read_over.send(());
    });
}

impl Writer {
    /// Writes frames until every handle is gone or the socket breaks; authenticates when asked
    /// to and when the session is due to end.
    async fn run<W: AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
        rx: &mut mpsc::UnboundedReceiver<Out>,
    ) -> Result<(), Error> {
        loop {
            let out = match self.reauth_at {
                Some(at) => tokio::select! {
                    out = rx.recv() => out,
                    () = tokio::time::sleep_until(at) => {
                        self.authenticate(wr, true).await?;
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            match out {
                None => return Ok(()),
                Some(Out::Frame(frame)) => self.write(wr, &frame).await?,
                Some(Out::Authenticate(done)) => {
                    let result = self.authenticate(wr, false).await;
                    let failed = result.as_ref().err().map(Error::duplicate);
                    let _ = done.send(result);
                    if let Some(e) = failed {
                        return Err(e);
                    }
                }
            }
        }
    }

    async fn write<W: AsyncWrite + Unpin>(&self, wr: &mut W, frame: &[u8]) -> Result<(), Error> {
        let io = async {
            wr.write_all(frame).await?;
            wr.flush().await
        };
        io.await.map_err(|e| io_error(&self.shared.addr, e))
    }

    /// Sends `req` straight on the socket (no other request goes out meanwhile) and waits.
    async fn call<C: Call, W: AsyncWrite + Unpin>(
        &self,
        wr: &mut W,
        req: &C,
        ours: Versions,
    ) -> Result<C::Response, Error> {
        let version = pick(&self.shared, C::KEY, ours)?;
        let (correlation, frame, rx) = self.shared.frame(req, version, &self.client_id)?;
        if let Err(e) = self.write(wr, &frame).await {
            self.shared.forget(correlation);
            return Err(e);
        }
        self.shared.answer::<C>(rx, version, self.timeout).await
    }

    /// One SASL authentication: SaslHandshake, then SaslAuthenticate until the mechanism is done.
    async fn authenticate<W: AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
        again: bool,
    ) -> Result<(), Error> {
        let Some(creds) = self.sasl.clone() else {
            return Ok(());
        };
        let addr = self.shared.addr.clone();
        let mechanism = creds.mechanism.as_str();
        let hs: SaslHandshakeResponse = self
            .call(
                wr,
                &SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(mechanism)),
                SASL_HANDSHAKE,
            )
            .await?;
        match hs.error_code {
            0 => {}
            33 => {
                let offered: Vec<&str> = hs.mechanisms.iter().map(|m| m.as_str()).collect();
                return Err(Error::auth(format!(
                    "the Kafka broker at {addr} does not enable SASL mechanism {mechanism}; it offers {}: set `kafka.sasl_mechanism` to one of them",
                    if offered.is_empty() {
                        "none".to_owned()
                    } else {
                        offered.join(", ")
                    }
                )));
            }
            34 => {
                return Err(Error::broker(format!(
                    "the Kafka broker at {addr} does not expect SASL on that listener (ILLEGAL_SASL_STATE): match `kafka.security_protocol` to the listener"
                )));
            }
            code => return Err(self.shared.errors.error("SaslHandshake", code, None)),
        }
        let mut exchange = Exchange::new(&creds);
        let mut message = exchange.first()?;
        let lifetime = loop {
            let resp: SaslAuthenticateResponse = self
                .call(
                    wr,
                    &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message)),
                    SASL_AUTHENTICATE,
                )
                .await?;
            if resp.error_code != 0 {
                let said = resp
                    .error_message
                    .as_ref()
                    .map(|m| format!(": {}", m.as_str()))
                    .unwrap_or_default();
                self.shared
                    .errors
                    .answered("SaslAuthenticate", resp.error_code);
                if resp.error_code == 58 {
                    return Err(Error::auth(format!(
                        "SASL {mechanism} authentication of user `{}` at {addr} failed{said}. Check `kafka.sasl_username` and `kafka.sasl_password` (SHAREWORKER_KAFKA__SASL_PASSWORD), and that the user exists for {mechanism}",
                        creds.username
                    )));
                }
                return Err(Error::kafka(
                    "SaslAuthenticate",
                    resp.error_code,
                    resp.error_message.as_ref().map(|m| m.as_str()),
                ));
            }
            match exchange.next(&resp.auth_bytes)? {
                Some(next) => message = next,
                None => break resp.session_lifetime_ms,
            }
        };
        self.reauth_at = (lifetime > 0).then(|| {
            // As Kafka's client: at a random point between 85% and 95% of the lifetime.
            let ms = u64::try_from(lifetime).unwrap_or(u64::MAX);
            let at = Duration::from_millis(ms).mul_f64(0.85 + 0.1 * fastrand::f64());
            Instant::now() + at
        });
        tracing::debug!(
            broker = %addr,
            mechanism,
            user = %creds.username,
            session_lifetime_ms = lifetime,
            "{}",
            if again { "SASL re-authenticated" } else { "SASL authenticated" }
        );
        Ok(())
    }
}

/// The highest version both sides support, from the versions ApiVersions gave.
fn pick(shared: &Shared, key: i16, ours: Versions) -> Result<i16, Error> {
    let name = api_name(key);
    let theirs = shared
        .versions
        .locked()
        .get(&key)
        .copied()
        .ok_or_else(|| {
            Error::broker(format!(
                "the broker at {} does not support {name}; is it Kafka 4.2 or newer with share groups enabled?",
                shared.addr
            ))
        })?;
    let v = theirs.max.min(ours.max);
    if v < ours.min || v < theirs.min {
        return Err(Error::broker(format!(
            "the broker at {} supports {name} v{}-v{}, this client v{}-v{}",
            shared.addr, theirs.min, theirs.max, ours.min, ours.max
        )));
    }
    Ok(v)
}

/// An I/O error on the socket: TLS certificate problems are fatal (`is_auth`).
fn io_error(addr: &str, e: std::io::Error) -> Error {
    super::tls::classify(addr, e)
}

async fn read_loop<R: AsyncRead + Unpin>(rd: &mut R, shared: &Shared) -> Result<(), Error> {
    while let Some(frame) = read_frame(rd, &shared.addr).await? {
        let correlation = (&frame[..4]).get_i32();
        let pending = shared.pending.locked().remove(&correlation);
        let Some(p) = pending else {
            // Its caller timed out and went away.
            continue;
        };
        let _ = p.reply.send(decode_header(frame, p.header_version));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
