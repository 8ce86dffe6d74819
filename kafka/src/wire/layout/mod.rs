//! The wire layouts of the kafka-protocol responses this client decodes, and a scan that walks a
//! response along its layout before kafka-protocol decodes it.
//!
//! kafka-protocol's generated decoders trust the sender: an array reserves room for as many
//! elements as its length prefix claims (up to 2^32, each element up to a few hundred bytes)
//! before reading one, and a `String` reserves its claimed length before checking that the bytes
//! are there. A corrupt or hostile response of a few bytes would make the process abort on an
//! allocation of gigabytes. [`Layout::scan`] reads the same fields in the same order as
//! kafka-protocol will (the layouts follow the Kafka JSON message specs, for the versions this
//! client sends; the tests check each one against kafka-protocol's own encoding of every field)
//! and accepts a response only if every array, string and byte field it claims is really there.
//! kafka-protocol then reserves no more elements than the response holds.
//!
//! The scan follows kafka-protocol where it is lenient, so that it never refuses what
//! kafka-protocol would decode: nullability is not checked (kafka-protocol refuses a null where
//! none is allowed), an unsigned varint ends after five bytes whatever the fifth, and a known
//! tagged field is read in place, whatever size it claims. Our own codecs ([`super::share_fetch`]
//! and the others) check lengths as they read and need no scan.
//!
//! # When this module can go
//!
//! It exists only because kafka-protocol (0.18, `protocol/types.rs`: `Array` and
//! `CompactArray` decode with `Vec::with_capacity(n)` for the `n` read off the wire) reserves
//! what a length prefix claims. Remove it, with the scan in `conn.rs`'s `Call` impl and the
//! [`Checked`] impls, once the kafka-protocol version in `Cargo.lock` bounds what it reserves by
//! the bytes left in the buffer (or decodes with `try_reserve` and fails cleanly), for arrays and
//! for strings decoded to `String`. The test `upstream::kafka_protocol_still_reserves_what_a_length_prefix_claims`
//! watches for that: it decodes frames of a few bytes claiming millions of elements and fails,
//! saying this module can go, when the largest allocation no longer follows the claim. Keep the
//! fuzz target `frames` (its 64 MiB allocation limit) running when removing it.

use super::codec::WireError;
use bytes::Buf;

/// The type of a field on the wire. Strings and bytes cover their nullable forms too.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ty {
    Int8,
    Int16,
    Int32,
    Int64,
    Bool,
    Uuid,
    /// `string` or `nullable_string`: int16 length (-1 null), or compact in flexible versions.
    String,
    /// `bytes`, `nullable_bytes` or `records`: int32 length (-1 null), or compact.
    Bytes,
    /// An array (nullable or not): int32 length (-1 null), or compact; then the elements.
    Array(&'static Ty),
    /// A structure: its fields, then (in flexible versions) its tagged fields.
    Struct(&'static [Field]),
    /// A nullable structure: an int8 marker, 1 when the structure follows.
    NullableStruct(&'static [Field]),
}

/// A field: its type, and the versions it is in; a tagged field also has its tag.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    name: &'static str,
    ty: Ty,
    min: i16,
    max: i16,
    tag: Option<u32>,
}

/// A field in every version.
const fn f(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        min: 0,
        max: i16::MAX,
        tag: None,
    }
}

/// A field from version `min` on.
const fn since(min: i16, name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        min,
        max: i16::MAX,
        tag: None,
    }
}

/// A field up to version `max`.
const fn until(max: i16, name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        min: 0,
        max,
        tag: None,
    }
}

/// A field in versions `min..=max`.
const fn between(min: i16, max: i16, name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        min,
        max,
        tag: None,
    }
}

/// A tagged field, from version `min` on.
const fn tagged(tag: u32, min: i16, name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        min,
        max: i16::MAX,
        tag: Some(tag),
    }
}

/// The layout of one response: its fields, the versions this client decodes, and the first
/// flexible version (compact lengths and tagged fields).
#[derive(Debug)]
pub(crate) struct Layout {
    name: &'static str,
    min: i16,
    max: i16,
    flexible: i16,
    fields: &'static [Field],
}

/// A response's layout, for the scan, or none for our own codecs (which check as they read).
pub(crate) trait Checked {
    /// The layout to scan the response along before decoding it.
    const LAYOUT: Option<&'static Layout>;
}

impl Layout {
    /// Walks `body` (the response after its header) along the layout in `version` without
    /// consuming it; an error if a field claims more bytes or elements than there are.
    pub(crate) fn scan<B: Buf>(&self, body: &B, version: i16) -> Result<(), WireError> {
        if !(self.min..=self.max).contains(&version) {
            return Err(WireError::UnsupportedVersion {
                api: self.name,
                version,
            });
        }
        let mut scan = Scan {
            rest: body.chunk(),
            version,
            flexible: version >= self.flexible,
        };
        if scan.rest.len() != body.remaining() {
            return Err(WireError::invalid(self.name, "response not contiguous"));
        }
        scan.fields(self.fields)
    }

    /// How many bytes of `body` the scan reads, for the tests.
    #[cfg(test)]
    fn scanned_len(&self, body: &[u8], version: i16) -> Result<usize, WireError> {
        let mut scan = Scan {
            rest: body,
            version,
            flexible: version >= self.flexible,
        };
        scan.fields(self.fields)?;
        Ok(body.len() - scan.rest.len())
    }
}

struct Scan<'a> {
    rest: &'a [u8],
    version: i16,
    flexible: bool,
}

impl Scan<'_> {
    fn skip(&mut self, len: usize, field: &'static str) -> Result<(), WireError> {
        if self.rest.len() < len {
            return Err(WireError::Truncated { field });
        }
        self.rest = &self.rest[len..];
        Ok(())
    }

    fn int(&mut self, len: usize, field: &'static str) -> Result<i64, WireError> {
        if self.rest.len() < len {
            return Err(WireError::Truncated { field });
        }
        let value = self.rest.get_int(len);
        Ok(value)
    }

    /// An unsigned varint as kafka-protocol reads it: at most five bytes, high bits dropped.
    fn varint(&mut self, field: &'static str) -> Result<u32, WireError> {
        let mut value = 0u32;
        for i in 0..5 {
            let byte = self.int(1, field)? as u8;
            value |= u32::from(byte & 0x7f).wrapping_shl(7 * i);
            if byte < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// The length of a string, bytes or array: `None` for null.
    fn len(
        &mut self,
        classic_width: usize,
        field: &'static str,
    ) -> Result<Option<usize>, WireError> {
        if self.flexible {
            return Ok(match self.varint(field)? {
                0 => None,
                n => Some(n as usize - 1),
            });
        }
        match self.int(classic_width, field)? {
            -1 => Ok(None),
            n => usize::try_from(n)
                .map(Some)
                .map_err(|_| WireError::invalid(field, "negative length")),
        }
    }

    fn ty(&mut self, ty: Ty, field: &'static str) -> Result<(), WireError> {
        match ty {
            Ty::Int8 | Ty::Bool => self.skip(1, field),
            Ty::Int16 => self.skip(2, field),
            Ty::Int32 => self.skip(4, field),
            Ty::Int64 => self.skip(8, field),
            Ty::Uuid => self.skip(16, field),
            Ty::String => match self.len(2, field)? {
                None => Ok(()),
                Some(len) => self.skip(len, field),
            },
            Ty::Bytes => match self.len(4, field)? {
                None => Ok(()),
                Some(len) => self.skip(len, field),
            },
            Ty::Array(element) => {
                let Some(len) = self.len(4, field)? else {
                    return Ok(());
                };
                // Every element takes at least one byte (the tests check each layout).
                if len > self.rest.len() {
                    return Err(WireError::invalid(field, "more elements than bytes"));
                }
                for _ in 0..len {
                    self.ty(*element, field)?;
                }
                Ok(())
            }
            Ty::Struct(fields) => self.fields(fields),
            Ty::NullableStruct(fields) => {
                if self.int(1, field)? == 1 {
                    self.fields(fields)
                } else {
                    Ok(())
                }
            }
        }
    }

    fn fields(&mut self, fields: &'static [Field]) -> Result<(), WireError> {
        let version = self.version;
        let present = |field: &&Field| (field.min..=field.max).contains(&version);
        for field in fields.iter().filter(|f| f.tag.is_none()).filter(present) {
            self.ty(field.ty, field.name)?;
        }
        if !self.flexible {
            return Ok(());
        }
        let count = self.varint("tagged fields")?;
        for _ in 0..count {
            let tag = self.varint("tagged fields")?;
            let size = self.varint("tagged fields")? as usize;
            match fields.iter().find(|f| f.tag == Some(tag)) {
                // Read in place, whatever size it claims, as kafka-protocol does.
                Some(field) if present(&field) => self.ty(field.ty, field.name)?,
                Some(field) => {
                    return Err(WireError::FieldNotInVersion {
                        field: field.name,
                        version,
                    });
                }
                None => self.skip(size, "tagged fields")?,
            }
        }
        Ok(())
    }
}

mod messages;

#[cfg(test)]
mod upstream;

#[cfg(test)]
mod tests;
