//! The byte stream under a [`Connection`](super::conn::Connection): TCP to a broker, with TLS on
//! it when the client is configured so, set up before the connection is made.
//!
//! Like hyper's `client::conn::http1::handshake(io)`, a connection takes a ready transport
//! ([`Transport`]): [`connect`] dials and secures it (timeouts from the client's settings), then
//! [`Connection::handshake`](super::conn::Connection::handshake) runs the Kafka protocol on it
//! (ApiVersions, then SASL, which stays with the connection: it re-authenticates on the live
//! socket before the session lifetime ends, KIP-368).

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::client::TlsStream;

use super::client::ClientConfig;
use crate::Error;

/// A connected, secured byte stream a [`Connection`](super::conn::Connection) can run on: split
/// into halves for its reader and writer tasks.
pub(crate) trait Transport: Send + 'static {
    /// What the reader task reads from.
    type Read: AsyncRead + Unpin + Send + 'static;
    /// What the writer task writes to.
    type Write: AsyncWrite + Unpin + Send + 'static;
    /// The two halves.
    fn into_halves(self) -> (Self::Read, Self::Write);
}

impl Transport for TcpStream {
    type Read = OwnedReadHalf;
    type Write = OwnedWriteHalf;

    fn into_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

impl Transport for TlsStream<TcpStream> {
    type Read = ReadHalf<Self>;
    type Write = WriteHalf<Self>;

    fn into_halves(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}

/// A ready transport to one broker, plain or TLS as the client's settings say.
pub(crate) enum Stream {
    /// Plain TCP (`PLAINTEXT`, `SASL_PLAINTEXT`).
    Plain(TcpStream),
    /// TLS on TCP (`SSL`, `SASL_SSL`), the handshake done.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Connects to `addr` over TCP and, when `config` says so, does the TLS handshake, each within
/// the request timeout.
///
/// # Errors
/// A timeout, a refused or failed connection (`is_broker`), or a TLS certificate refused either
/// way (`is_auth`).
pub(crate) async fn connect(addr: &str, config: &ClientConfig) -> Result<Stream, Error> {
    let timeout = config.request_timeout;
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::timeout(format!("connecting to {addr} timed out after {timeout:?}")))?
        .map_err(|e| Error::broker(format!("cannot connect to {addr}")).with_source(e))?;
    let _ = stream.set_nodelay(true);
    match &config.security.tls {
        Some(tls) => {
            let stream = tokio::time::timeout(timeout, super::tls::handshake(tls, addr, stream))
                .await
                .map_err(|_| {
                    Error::timeout(format!(
                        "the TLS handshake with {addr} timed out after {timeout:?}"
                    ))
                })??;
            Ok(Stream::Tls(Box::new(stream)))
        }
        None => Ok(Stream::Plain(stream)),
    }
}
