//! The primitive types of the protocol's flexible versions, written out here because
//! kafka-protocol keeps its own `types::*` encoders behind crate-private traits (`Encoder`,
//! `Decoder`): outside that crate only `Encodable`, `Decodable`, `ByteBuf(Mut)` and `StrBytes`
//! can be used.
//!
//! Writing goes through a [`Sink`], so one function per message both encodes (into a
//! [`BufSink`]) and sizes it (into a [`SizeCounter`]). Reading goes through a [`Reader`], whose
//! every read checks the remaining length first and whose array reads reserve at most one
//! element per remaining byte, and at most 64 KiB: malformed input ends in a [`WireError`],
//! never in a panic or a large allocation.

use std::fmt::{self, Write as _};

use bytes::{Buf, Bytes};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::protocol::buf::ByteBufMut;

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The most an array reserves before its elements are read. Reserving one element per byte left
/// was up to a hundred times the frame (found by the fuzz harness: `fuzz/tests/fuzz.rs`,
/// `huge_counts_in_large_frames`).
const PREALLOC_BYTES: usize = 64 * 1024;

/// Why a message could not be encoded or decoded.
#[derive(Debug)]
pub(crate) enum WireError {
    /// The API version is not one this codec implements.
    UnsupportedVersion {
        /// The API's name, as in the JSON spec.
        api: &'static str,
        /// The version asked for.
        version: i16,
    },
    /// A field set to a non-default value does not exist in the chosen version.
    FieldNotInVersion {
        /// The field's name, as in the JSON spec.
        field: &'static str,
        /// The version asked for.
        version: i16,
    },
    /// The input ended inside a field.
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// A value that the protocol does not allow: a null where none is allowed, a length out of
    /// range, invalid UTF-8, a bad varint, an impossible offset.
    Invalid {
        /// The field being read or written.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// kafka-protocol could not encode or decode a message header.
    #[cfg_attr(not(test), allow(dead_code))] // used by tests and the coming CLI
    Header {
        /// The cause, from kafka-protocol.
        source: Source,
    },
}

impl WireError {
    pub(crate) fn invalid(field: &'static str, reason: &'static str) -> Self {
        Self::Invalid { field, reason }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedVersion { api, version } => {
                write!(f, "{api} version {version} is not supported")
            }
            Self::FieldNotInVersion { field, version } => {
                write!(
                    f,
                    "field {field} is set but does not exist in version {version}"
                )
            }
            Self::Truncated { field } => write!(f, "message ends inside field {field}"),
            Self::Invalid { field, reason } => write!(f, "invalid field {field}: {reason}"),
            Self::Header { .. } => f.write_str("invalid message header"),
        }
    }
}

impl std::error::Error for WireError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Header { source } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// Fails unless `version` is in `min..=max`.
pub(crate) fn check_version(
    api: &'static str,
    version: i16,
    min: i16,
    max: i16,
) -> Result<(), WireError> {
    if (min..=max).contains(&version) {
        Ok(())
    } else {
        Err(WireError::UnsupportedVersion { api, version })
    }
}

/// A Kafka topic id: a UUID, 16 bytes on the wire.
///
/// Displayed the way Kafka prints it: URL-safe base64 without padding (22 characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub(crate) struct TopicId(pub(crate) [u8; 16]);

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let value = u128::from_be_bytes(self.0);
        // 128 bits = 21 six-bit groups plus 2 bits, which base64 pads to a 22nd group.
        for group in 1..=22i32 {
            let shift = 128 - 6 * group;
            let bits = if shift >= 0 {
                value >> shift
            } else {
                value << -shift
            };
            f.write_char(char::from(ALPHABET[(bits & 0x3f) as usize]))?;
        }
        Ok(())
    }
}

impl fmt::Debug for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicId({self})")
    }
}

/// Where encoded bytes go. The provided methods write the protocol's primitive types.
pub(crate) trait Sink {
    /// Appends raw bytes.
    fn put(&mut self, bytes: &[u8]);

    /// `int8`.
    fn int8(&mut self, value: i8) {
        self.put(&value.to_be_bytes());
    }

    /// `int16`, big-endian.
    fn int16(&mut self, value: i16) {
        self.put(&value.to_be_bytes());
    }

    /// `int32`, big-endian.
    fn int32(&mut self, value: i32) {
        self.put(&value.to_be_bytes());
    }

    /// `int64`, big-endian.
    fn int64(&mut self, value: i64) {
        self.put(&value.to_be_bytes());
    }

    /// `bool`: one byte, 0 or 1.
    fn boolean(&mut self, value: bool) {
        self.put(&[u8::from(value)]);
    }

    /// `uuid`: 16 bytes.
    fn uuid(&mut self, value: &TopicId) {
        self.put(&value.0);
    }

    /// An unsigned varint: 7 bits a byte, low bits first, high bit set on all but the last byte.
    fn unsigned_varint(&mut self, mut value: u32) {
        let mut bytes = [0u8; 5];
        let mut len = 0;
        while value >= 0x80 {
            bytes[len] = (value as u8) | 0x80;
            value >>= 7;
            len += 1;
        }
        bytes[len] = value as u8;
        self.put(&bytes[..=len]);
    }

    /// A compact length: `len + 1` as an unsigned varint (0 stands for null).
    fn compact_len(&mut self, field: &'static str, len: usize) -> Result<(), WireError> {
        match u32::try_from(len) {
            Ok(len) if len < i32::MAX as u32 => {
                self.unsigned_varint(len + 1);
                Ok(())
            }
            _ => Err(WireError::invalid(field, "too long to encode")),
        }
    }

    /// `compact_string` (non-null): compact length, then UTF-8 bytes (at most 32767).
    fn compact_string(&mut self, field: &'static str, value: &str) -> Result<(), WireError> {
        if value.len() > i16::MAX as usize {
            return Err(WireError::invalid(field, "string longer than 32767 bytes"));
        }
        self.compact_len(field, value.len())?;
        self.put(value.as_bytes());
        Ok(())
    }

    /// `compact_nullable_string`: 0 for null, else as [`Sink::compact_string`].
    fn compact_nullable_string(
        &mut self,
        field: &'static str,
        value: Option<&str>,
    ) -> Result<(), WireError> {
        match value {
            None => {
                self.unsigned_varint(0);
                Ok(())
            }
            Some(value) => self.compact_string(field, value),
        }
    }

    /// `compact_bytes` (non-null), also the flexible form of `records`.
    fn compact_bytes(&mut self, field: &'static str, value: &[u8]) -> Result<(), WireError> {
        self.compact_len(field, value.len())?;
        self.put(value);
        Ok(())
    }

    /// The length prefix of a non-null `compact_array`.
    fn compact_array_len(&mut self, field: &'static str, len: usize) -> Result<(), WireError> {
        self.compact_len(field, len)
    }

    /// The length prefix of a nullable `compact_array` (0 for null).
    fn compact_nullable_array_len(
        &mut self,
        field: &'static str,
        len: Option<usize>,
    ) -> Result<(), WireError> {
        match len {
            None => {
                self.unsigned_varint(0);
                Ok(())
            }
            Some(len) => self.compact_len(field, len),
        }
    }

    /// The tagged-field section of a structure with none set: a count of 0.
    fn no_tagged_fields(&mut self) {
        self.unsigned_varint(0);
    }
}

/// A [`Sink`] that only counts, for `Encodable::compute_size`.
#[derive(Debug, Default)]
pub(crate) struct SizeCounter(pub(crate) usize);

impl Sink for SizeCounter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// A [`Sink`] writing into a kafka-protocol buffer.
pub(crate) struct BufSink<'a, B>(pub(crate) &'a mut B);

impl<B: ByteBufMut> Sink for BufSink<'_, B> {
    fn put(&mut self, bytes: &[u8]) {
        self.0.put_slice(bytes);
    }
}

/// Reads the protocol's primitive types from a buffer, checking every length against what is
/// left. Each method takes the name of the field it reads, for the error.
pub(crate) struct Reader<'a, B> {
    buf: &'a mut B,
}

impl<'a, B: Buf> Reader<'a, B> {
    pub(crate) fn new(buf: &'a mut B) -> Self {
        Self { buf }
    }

    /// Bytes not read yet.
    #[cfg_attr(not(test), allow(dead_code))] // used by tests and the coming CLI
    pub(crate) fn remaining(&self) -> usize {
        self.buf.remaining()
    }

    fn need(&self, len: usize, field: &'static str) -> Result<(), WireError> {
        if self.buf.remaining() < len {
            Err(WireError::Truncated { field })
        } else {
            Ok(())
        }
    }

    pub(crate) fn int8(&mut self, field: &'static str) -> Result<i8, WireError> {
        self.need(1, field)?;
        Ok(self.buf.get_i8())
    }

    pub(crate) fn int16(&mut self, field: &'static str) -> Result<i16, WireError> {
        self.need(2, field)?;
        Ok(self.buf.get_i16())
    }

    pub(crate) fn int32(&mut self, field: &'static str) -> Result<i32, WireError> {
        self.need(4, field)?;
        Ok(self.buf.get_i32())
    }

    pub(crate) fn int64(&mut self, field: &'static str) -> Result<i64, WireError> {
        self.need(8, field)?;
        Ok(self.buf.get_i64())
    }

    /// `bool`: any non-zero byte is true, as in the Java client.
    pub(crate) fn boolean(&mut self, field: &'static str) -> Result<bool, WireError> {
        Ok(self.int8(field)? != 0)
    }

    pub(crate) fn uuid(&mut self, field: &'static str) -> Result<TopicId, WireError> {
        self.need(16, field)?;
        let mut id = [0u8; 16];
        self.buf.copy_to_slice(&mut id);
        Ok(TopicId(id))
    }

    /// An unsigned varint of at most 5 bytes that fits in 32 bits.
    pub(crate) fn unsigned_varint(&mut self, field: &'static str) -> Result<u32, WireError> {
        let mut value = 0u32;
        for i in 0..5 {
            let byte = u32::from(self.int8(field)? as u8);
            if i == 4 && byte > 0x0f {
                return Err(WireError::invalid(field, "varint longer than 32 bits"));
            }
            value |= (byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(WireError::invalid(field, "varint longer than 32 bits"))
    }

    /// A compact length: `None` for null, else the length (not yet checked against the input).
    fn compact_len(&mut self, field: &'static str) -> Result<Option<usize>, WireError> {
        Ok(match self.unsigned_varint(field)? {
            0 => None,
            n => Some(n as usize - 1),
        })
    }

    fn string_of_len(&mut self, field: &'static str, len: usize) -> Result<StrBytes, WireError> {
        if len > i16::MAX as usize {
            return Err(WireError::invalid(field, "string longer than 32767 bytes"));
        }
        self.need(len, field)?;
        StrBytes::from_utf8(self.buf.copy_to_bytes(len))
            .map_err(|_| WireError::invalid(field, "not UTF-8"))
    }

    /// `compact_string`; null is an error.
    pub(crate) fn compact_string(&mut self, field: &'static str) -> Result<StrBytes, WireError> {
        match self.compact_len(field)? {
            None => Err(WireError::invalid(field, "null in a non-nullable string")),
            Some(len) => self.string_of_len(field, len),
        }
    }

    /// `compact_nullable_string`.
    pub(crate) fn compact_nullable_string(
        &mut self,
        field: &'static str,
    ) -> Result<Option<StrBytes>, WireError> {
        match self.compact_len(field)? {
            None => Ok(None),
            Some(len) => self.string_of_len(field, len).map(Some),
        }
    }

    /// `compact_bytes` or flexible `records`; null is an error. Zero-copy when `B` is `Bytes`.
    pub(crate) fn compact_bytes(&mut self, field: &'static str) -> Result<Bytes, WireError> {
        match self.compact_len(field)? {
            None => Err(WireError::invalid(field, "null in non-nullable bytes")),
            Some(len) => {
                self.need(len, field)?;
                Ok(self.buf.copy_to_bytes(len))
            }
        }
    }

    fn array_of_len<T>(
        &mut self,
        len: usize,
        mut element: impl FnMut(&mut Self) -> Result<T, WireError>,
    ) -> Result<Vec<T>, WireError> {
        // Every element takes at least one byte, but may take a hundred in memory: reserve no
        // more than there are bytes left, nor more than `PREALLOC_BYTES`; past that the vector
        // grows with the elements actually read.
        let fits = PREALLOC_BYTES / std::mem::size_of::<T>().max(1);
        let mut items = Vec::with_capacity(len.min(self.buf.remaining()).min(fits));
        for _ in 0..len {
            items.push(element(self)?);
        }
        Ok(items)
    }

    /// A non-null `compact_array`, each element read by `element`.
    pub(crate) fn compact_array<T>(
        &mut self,
        field: &'static str,
        element: impl FnMut(&mut Self) -> Result<T, WireError>,
    ) -> Result<Vec<T>, WireError> {
        match self.compact_len(field)? {
            None => Err(WireError::invalid(field, "null in a non-nullable array")),
            Some(len) => self.array_of_len(len, element),
        }
    }

    /// A nullable `compact_array`.
    pub(crate) fn compact_nullable_array<T>(
        &mut self,
        field: &'static str,
        element: impl FnMut(&mut Self) -> Result<T, WireError>,
    ) -> Result<Option<Vec<T>>, WireError> {
        match self.compact_len(field)? {
            None => Ok(None),
            Some(len) => self.array_of_len(len, element).map(Some),
        }
    }

    /// A structure's tagged-field section. None of the messages here define tagged fields, so
    /// every one is skipped (as an unknown tag must be).
    pub(crate) fn tagged_fields(&mut self, field: &'static str) -> Result<(), WireError> {
        let count = self.unsigned_varint(field)?;
        for _ in 0..count {
            let _tag = self.unsigned_varint(field)?;
            let size = self.unsigned_varint(field)? as usize;
            self.need(size, field)?;
            self.buf.advance(size);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint_bytes(value: u32) -> Vec<u8> {
        let mut out = Vec::new();
        BufSink(&mut out).unsigned_varint(value);
        out
    }

    #[test]
    fn unsigned_varint_layout() {
        assert_eq!(varint_bytes(0), [0x00]);
        assert_eq!(varint_bytes(0x7f), [0x7f]);
        assert_eq!(varint_bytes(0x80), [0x80, 0x01]);
        assert_eq!(varint_bytes(300), [0xac, 0x02]);
        assert_eq!(varint_bytes(u32::MAX), [0xff, 0xff, 0xff, 0xff, 0x0f]);
        for value in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            u32::MAX,
        ] {
            let bytes = varint_bytes(value);
            let mut counter = SizeCounter::default();
            counter.unsigned_varint(value);
            assert_eq!(counter.0, bytes.len());
            let mut slice = &bytes[..];
            assert_eq!(
                Reader::new(&mut slice).unsigned_varint("v").ok(),
                Some(value)
            );
            assert!(slice.is_empty());
        }
    }

    #[test]
    fn unsigned_varint_rejects_overlong_and_truncated() {
        let mut too_long = &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..];
        assert!(Reader::new(&mut too_long).unsigned_varint("v").is_err());
        let mut overflow = &[0xff, 0xff, 0xff, 0xff, 0x10][..];
        assert!(Reader::new(&mut overflow).unsigned_varint("v").is_err());
        let mut truncated = &[0x80][..];
        assert!(matches!(
            Reader::new(&mut truncated).unsigned_varint("v"),
            Err(WireError::Truncated { field: "v" })
        ));
    }

    #[test]
    fn strings_and_nulls() {
        let mut out = Vec::new();
        let mut sink = BufSink(&mut out);
        assert!(sink.compact_string("s", "ab").is_ok());
        assert!(sink.compact_nullable_string("n", None).is_ok());
        assert_eq!(out, [0x03, b'a', b'b', 0x00]);

        let mut input = &out[..];
        let mut reader = Reader::new(&mut input);
        assert_eq!(reader.compact_string("s").ok().as_deref(), Some("ab"));
        assert!(matches!(reader.compact_nullable_string("n"), Ok(None)));

        // A null where the spec allows none.
        let mut null = &[0x00][..];
        assert!(matches!(
            Reader::new(&mut null).compact_string("s"),
            Err(WireError::Invalid { field: "s", .. })
        ));
        // Invalid UTF-8.
        let mut bad = &[0x02, 0xff][..];
        assert!(Reader::new(&mut bad).compact_string("s").is_err());
        // Longer than the protocol allows, even if the bytes were there.
        let mut long = vec![0x81, 0x80, 0x02]; // 32769 = 32768 + 1
        long.extend(std::iter::repeat_n(b'a', 32_768));
        assert!(Reader::new(&mut &long[..]).compact_string("s").is_err());
        let too_long = "a".repeat(32_768);
        assert!(
            BufSink(&mut Vec::new())
                .compact_string("s", &too_long)
                .is_err()
        );
    }

    #[test]
    fn huge_array_length_fails_without_allocating() {
        // Length u32::MAX - 1 with three bytes behind it.
        let mut input = &[0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0][..];
        let result = Reader::new(&mut input).compact_array("a", |r| r.int32("e"));
        assert!(matches!(result, Err(WireError::Truncated { field: "e" })));
    }

    #[test]
    fn tagged_fields_are_skipped() {
        // Two tagged fields: tag 0 with 2 bytes, tag 5 with 0 bytes; then an int8.
        let mut input = &[0x02, 0x00, 0x02, 0xaa, 0xbb, 0x05, 0x00, 0x07][..];
        let mut reader = Reader::new(&mut input);
        assert!(reader.tagged_fields("t").is_ok());
        assert_eq!(reader.int8("after").ok(), Some(7));
        // A tagged field longer than the input.
        let mut short = &[0x01, 0x00, 0x05, 0xaa][..];
        assert!(Reader::new(&mut short).tagged_fields("t").is_err());
    }

    #[test]
    fn topic_id_displays_as_kafka_base64() {
        assert_eq!(TopicId([0; 16]).to_string(), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(TopicId([0xff; 16]).to_string(), "_____________________w");
        let mut id = [0u8; 16];
        id[15] = 1;
        assert_eq!(TopicId(id).to_string(), "AAAAAAAAAAAAAAAAAAAAAQ");
    }
}
