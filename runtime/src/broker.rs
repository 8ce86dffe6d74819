//! The seam between the runtime and a broker, in KIP-932 words: the crate `shareworker-core`,
//! re-exported. What a backend author implements ([`Broker`], [`Member`]) and the records,
//! deliveries and acknowledgements they pass.

/// The bytes of payloads and keys (the `bytes` crate's type, re-exported).
pub use bytes::Bytes;
pub use shareworker_core::*;
