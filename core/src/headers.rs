use std::fmt;

use bytes::Bytes;

/// One record header. Kafka allows a header without a value (`None`).
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    /// The header's name.
    pub key: String,
    /// The header's value, if any.
    pub value: Option<Bytes>,
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => match std::str::from_utf8(v) {
                Ok(s) => write!(f, "{}={:?}", self.key, s),
                Err(_) => write!(f, "{}=<{} bytes>", self.key, v.len()),
            },
            None => write!(f, "{}=null", self.key),
        }
    }
}

/// The headers of a record, in order; a name may repeat.
///
/// ```
/// let mut headers = shareworker_core::Headers::new();
/// headers.push("trace-id", "abc");
/// assert_eq!(headers.get_str("trace-id"), Some("abc"));
/// assert_eq!(headers.get("missing"), None);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

impl Headers {
    /// No headers.
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// Appends a header.
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<Bytes>) {
        self.0.push(Header {
            key: key.into(),
            value: Some(value.into()),
        });
    }

    /// Appends a header that may have no value.
    pub fn push_header(&mut self, header: Header) {
        self.0.push(header);
    }

    /// The value of the last header named `key`, if it has one.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .rev()
            .find(|h| h.key == key)
            .and_then(|h| h.value.as_deref())
    }

    /// The value of the last header named `key`, if it has one and it is UTF-8.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every header, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.0.iter()
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl From<Vec<Header>> for Headers {
    fn from(headers: Vec<Header>) -> Self {
        Self(headers)
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for Headers {
    type Item = Header;
    type IntoIter = std::vec::IntoIter<Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}
