//! Payload formats: how a handler's payload type is decoded from a record's value, and how
//! [`Queue`](crate::Queue) encodes the same type, so a typed producer and its handler agree.
//!
//! Every type with serde's `Deserialize` decodes as JSON, and with `Serialize` encodes as JSON,
//! except [`Bytes`], `Vec<u8>` and `String` (and `str`, `[u8]` when encoding), which are the raw
//! value (a `String` must be UTF-8). Another format is a [`Decode`] and [`Encode`] impl on the
//! payload type, or on a wrapper of it such as the `Proto<T>` below (a type that derives serde's
//! traits already has the JSON impls, so a second format for it goes on a wrapper).
//!
//! ```
//! use shareworker::{broker::Bytes, codec::{Decode, DecodeError, Encode, EncodeError}, Job, JobError};
//!
//! /// Payloads in a format of our own: `name;count`.
//! struct Order { name: String, count: u32 }
//!
//! impl Decode for Order {
//!     fn decode(raw: &Bytes) -> Result<Self, DecodeError> {
//!         let text = std::str::from_utf8(raw).map_err(DecodeError::new)?;
//!         let (name, count) = text.split_once(';').ok_or_else(|| DecodeError::new("no `;`"))?;
//!         let count = count.parse().map_err(DecodeError::new)?;
//!         Ok(Order { name: name.to_owned(), count })
//!     }
//! }
//!
//! impl Encode for Order {
//!     fn encode(&self) -> Result<Bytes, EncodeError> {
//!         Ok(Bytes::from(format!("{};{}", self.name, self.count)))
//!     }
//! }
//!
//! async fn pack(job: Job<Order>) -> Result<(), JobError> {
//!     println!("packing {} x {}", job.payload().count, job.payload().name);
//!     Ok(())
//! }
//!
//! let raw = Order { name: "tea".into(), count: 3 }.encode()?;
//! assert_eq!(Order::decode(&raw)?.count, 3);
//! assert!(Order::decode(&Bytes::from_static(b"tea")).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::any::{Any, TypeId};
use std::fmt;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use tower::BoxError;

/// Decodes a handler's payload from a record's value: `Job<T>` needs `T: Decode`.
///
/// Implemented for every serde `Deserialize` type (JSON; raw for [`Bytes`], `Vec<u8>` and
/// `String`); implement it for another format (see [the module](crate::codec)). A payload that
/// does not decode is a permanent failure: the record goes to the dead-letter topic, with the
/// [`DecodeError`]'s message, without running the handler.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a job payload: it is neither serde `Deserialize` nor `shareworker::codec::Decode`",
    label = "not a payload type",
    note = "derive `serde::Deserialize` for JSON payloads, or implement `shareworker::codec::Decode` for another format"
)]
pub trait Decode: Sized {
    /// Decodes a record's value.
    ///
    /// # Errors
    /// A [`DecodeError`] saying why the value is not a `Self`.
    fn decode(raw: &Bytes) -> Result<Self, DecodeError>;

    /// The payload of a record without a value (a tombstone). By default it does not decode.
    ///
    /// # Errors
    /// A [`DecodeError`] when a tombstone is not a `Self` (the default).
    fn decode_tombstone() -> Result<Self, DecodeError> {
        Err(DecodeError::new("record has no value (a tombstone)"))
    }
}

/// Encodes a payload as a record's value, for [`Queue::enqueue`](crate::Queue::enqueue) and
/// [`Message::encode`](crate::queue::Message::encode).
///
/// Implemented for every serde `Serialize` type (JSON; raw for [`Bytes`], `Vec<u8>`, `String`,
/// `str` and `[u8]`), matching [`Decode`]; implement both for another format.
///
/// The serde impl is for `'static` types, like a handler's payload; a value that borrows goes
/// as JSON through [`Message::json`](crate::queue::Message::json).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be enqueued: it is neither serde `Serialize` nor `shareworker::codec::Encode`",
    note = "derive `serde::Serialize` for JSON payloads, or implement `shareworker::codec::Encode` for another format"
)]
pub trait Encode {
    /// Encodes `self` as a record's value.
    ///
    /// # Errors
    /// An [`EncodeError`] when `self` cannot be written in the format.
    fn encode(&self) -> Result<Bytes, EncodeError>;
}

impl<T: DeserializeOwned + 'static> Decode for T {
    fn decode(raw: &Bytes) -> Result<Self, DecodeError> {
        if let Some(value) = raw_payload::<T>(raw)? {
            return Ok(value);
        }
        serde_json::from_slice(raw).map_err(|e| {
            DecodeError::new(format!(
                "payload does not decode as {}: {e}",
                std::any::type_name::<T>()
            ))
        })
    }

    fn decode_tombstone() -> Result<Self, DecodeError> {
        match raw_payload::<T>(&Bytes::new())? {
            Some(value) => Ok(value),
            None => Err(DecodeError::new("record has no value (a tombstone)")),
        }
    }
}

/// The raw value as `T` when `T` is one of the raw types.
fn raw_payload<T: 'static>(raw: &Bytes) -> Result<Option<T>, DecodeError> {
    let id = TypeId::of::<T>();
    let value: Box<dyn Any> = if id == TypeId::of::<Bytes>() {
        Box::new(raw.clone())
    } else if id == TypeId::of::<Vec<u8>>() {
        Box::new(raw.to_vec())
    } else if id == TypeId::of::<String>() {
        match std::str::from_utf8(raw) {
            Ok(s) => Box::new(s.to_owned()),
            Err(e) => {
                return Err(DecodeError::new(format!("payload is not UTF-8 text: {e}")));
            }
        }
    } else {
        return Ok(None);
    };
    value
        .downcast::<T>()
        .map(|v| Some(*v))
        .map_err(|_| DecodeError::new("payload type mismatch"))
}

impl<T: Serialize + 'static> Encode for T {
    fn encode(&self) -> Result<Bytes, EncodeError> {
        let any: &dyn Any = self;
        if let Some(b) = any.downcast_ref::<Bytes>() {
            return Ok(b.clone());
        }
        if let Some(v) = any.downcast_ref::<Vec<u8>>() {
            return Ok(Bytes::copy_from_slice(v));
        }
        if let Some(s) = any.downcast_ref::<String>() {
            return Ok(Bytes::copy_from_slice(s.as_bytes()));
        }
        if let Some(s) = any.downcast_ref::<&'static str>() {
            return Ok(Bytes::copy_from_slice(s.as_bytes()));
        }
        json(self)
    }
}

impl Encode for str {
    fn encode(&self) -> Result<Bytes, EncodeError> {
        Ok(Bytes::copy_from_slice(self.as_bytes()))
    }
}

impl Encode for [u8] {
    fn encode(&self) -> Result<Bytes, EncodeError> {
        Ok(Bytes::copy_from_slice(self))
    }
}

/// `payload` as JSON.
pub(crate) fn json<T: Serialize + ?Sized>(payload: &T) -> Result<Bytes, EncodeError> {
    let buf = serde_json::to_vec(payload)
        .map_err(|e| EncodeError::new(format!("the payload cannot be serialized as JSON: {e}")))?;
    // serde_json reserves 128 bytes up front, and shrinking in place leaves the rest of that
    // block fragmented; a queue may hold millions of small payloads, so copy them out at their
    // exact size and let the big buffer be reused.
    Ok(Bytes::copy_from_slice(&buf))
}

/// A payload that did not decode; always a permanent failure, and its message is the dead
/// letter's `shareworker.dlq.error`.
///
/// ```
/// let e = shareworker::codec::DecodeError::new("missing field `to`");
/// assert_eq!(e.to_string(), "missing field `to`");
/// ```
#[derive(Debug)]
pub struct DecodeError(String);

impl DecodeError {
    /// An error with this message (any error or text).
    pub fn new(message: impl fmt::Display) -> Self {
        Self(message.to_string())
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// A payload that cannot be encoded.
///
/// ```
/// let e = shareworker::codec::EncodeError::new("a map key is not a string");
/// assert_eq!(e.to_string(), "a map key is not a string");
/// ```
#[derive(Debug)]
pub struct EncodeError(BoxError);

impl EncodeError {
    /// An error with this message (any error or text).
    pub fn new(message: impl fmt::Display) -> Self {
        Self(message.to_string().into())
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for EncodeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
    struct Email {
        to: String,
    }

    fn raw(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn json_round_trips() {
        let e = Email { to: "a@b".into() };
        let bytes = e.encode().expect("encodes");
        assert_eq!(&bytes[..], br#"{"to":"a@b"}"#);
        assert_eq!(Email::decode(&bytes).expect("decodes"), e);
        assert_eq!(42u32.encode().expect("encodes"), raw("42"));
    }

    #[test]
    fn raw_types_encode_as_they_decode() {
        for b in [
            "text".encode(),
            String::from("text").encode(),
            (&"text").encode(),
            b"text"[..].encode(),
            b"text".to_vec().encode(),
            Bytes::from_static(b"text").encode(),
        ] {
            assert_eq!(b.expect("encodes"), raw("text"));
        }
        assert_eq!(
            String::decode(&String::from("a \"b\"").encode().expect("encodes")).expect("decodes"),
            "a \"b\""
        );
        assert!(String::decode(&Bytes::from_static(&[0xff])).is_err());
    }

    #[test]
    fn tombstones_are_empty_raw_values_and_no_json_value() {
        assert_eq!(Bytes::decode_tombstone().expect("raw"), Bytes::new());
        assert_eq!(String::decode_tombstone().expect("raw"), "");
        let err = Email::decode_tombstone().expect_err("no JSON value");
        assert!(err.to_string().contains("tombstone"), "{err}");
    }

    #[test]
    fn a_map_with_non_string_keys_does_not_encode() {
        let m: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let err = m.encode().expect_err("not JSON");
        assert!(err.to_string().contains("JSON"), "{err}");
    }
}
