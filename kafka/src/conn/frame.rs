//! Response frames off the socket: the size prefix, bounded, read as the bytes arrive; then the
//! response header.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::Decodable;
use tokio::io::{AsyncRead, AsyncReadExt};

#[cfg(any(test, feature = "fuzzing"))]
use super::Call;
use super::io_error;
use crate::Error;

/// The largest response frame accepted (a ShareFetch answer is bounded by its MaxBytes).
const MAX_FRAME: usize = 256 * 1024 * 1024;

/// How much of a frame is read ahead of its bytes arriving: the buffer grows with the data, so a
/// size prefix alone (up to [`MAX_FRAME`]) reserves no more than this.
const FRAME_CHUNK: usize = 64 * 1024;

/// Reads one size-prefixed frame (the prefix removed) from the broker at `addr`; `None` at a
/// clean end of stream before a frame starts. The frame holds at least the 4-byte correlation id.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    addr: &str,
) -> Result<Option<Bytes>, Error> {
    let len = match rd.read_i32().await {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(io_error(addr, e)),
    };
    let len =
        usize::try_from(len).map_err(|_| Error::broker(format!("negative frame length {len}")))?;
    if !(4..=MAX_FRAME).contains(&len) {
        return Err(Error::broker(format!("frame length {len} out of bounds")));
    }
    let mut frame = BytesMut::with_capacity(len.min(FRAME_CHUNK));
    while frame.len() < len {
        let want = (len - frame.len()).min(FRAME_CHUNK);
        frame.reserve(want);
        let read = (&mut *rd)
            .take(want as u64)
            .read_buf(&mut frame)
            .await
            .map_err(|e| io_error(addr, e))?;
        if read == 0 {
            return Err(Error::broker(format!(
                "the connection to {addr} closed inside a frame ({} of {len} bytes)",
                frame.len()
            )));
        }
    }
    Ok(Some(frame.freeze()))
}

/// Decodes the response header (`header_version`) off a whole frame; the body is what is left.
pub(crate) fn decode_header(mut frame: Bytes, header_version: i16) -> Result<Bytes, Error> {
    ResponseHeader::decode(&mut frame, header_version)
        .map(|_| frame)
        .map_err(|e| Error::broker(format!("malformed response header: {e}")))
}

/// Decodes a whole response frame (size prefix removed) to `C` in `version`, as a connection does:
/// the header, then the body.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn decode_frame<C: Call>(frame: Bytes, version: i16) -> Result<C::Response, Error> {
    let mut body = decode_header(frame, C::response_header_version(version))?;
    C::decode_body(&mut body, version)
}
