//! Bytes in JSON: text when they are UTF-8, hex otherwise.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A key, value or header value as it travels in JSON: a string when the bytes are UTF-8,
/// otherwise `{"hex": "0a1b..."}`. Nothing is lost either way.
///
/// ```
/// use shareworker::admin::Payload;
///
/// let text = Payload::from("hello");
/// assert_eq!(serde_json::to_string(&text).ok().as_deref(), Some("\"hello\""));
/// let binary = Payload::from(vec![0xff, 0x00]);
/// assert_eq!(serde_json::to_string(&binary).ok().as_deref(), Some("{\"hex\":\"ff00\"}"));
/// let back: Payload = serde_json::from_str("{\"hex\":\"ff00\"}").expect("hex");
/// assert_eq!(back, binary);
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Payload(pub Bytes);

impl Payload {
    /// The bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// The bytes as text, with invalid UTF-8 replaced.
    pub fn to_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(f, "<{} bytes>", self.0.len()),
        }
    }
}

impl From<Bytes> for Payload {
    fn from(b: Bytes) -> Self {
        Self(b)
    }
}

impl From<&str> for Payload {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for Payload {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        Self(Bytes::from(v))
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => {
                use serde::ser::SerializeMap;
                let mut hex = String::with_capacity(self.0.len() * 2);
                for b in self.0.iter() {
                    hex.push_str(&format!("{b:02x}"));
                }
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("hex", &hex)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Hex { hex: String },
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) => Ok(Self(Bytes::from(t))),
            Raw::Hex { hex } => {
                let digits = hex.as_bytes();
                if digits.len() % 2 != 0 {
                    return Err(D::Error::custom("hex payload has an odd number of digits"));
                }
                let nibble = |c: u8| -> Result<u8, D::Error> {
                    (c as char)
                        .to_digit(16)
                        .map(|n| n as u8)
                        .ok_or_else(|| D::Error::custom("hex payload has a non-hex digit"))
                };
                let mut out = Vec::with_capacity(digits.len() / 2);
                for pair in digits.chunks(2) {
                    out.push(nibble(pair[0])? << 4 | nibble(pair[1])?);
                }
                Ok(Self(Bytes::from(out)))
            }
        }
    }
}
