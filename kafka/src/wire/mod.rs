//! Wire codecs: what the kafka-protocol crate lacks, encoded with its public traits.
//!
//! kafka-protocol 0.18 has ShareGroupHeartbeat v1, ShareGroupDescribe v1, ShareFetch v1,
//! ShareAcknowledge v1, DescribeShareGroupOffsets v0 and Alter/DeleteShareGroupOffsets v0.
//! This module adds, per the Apache Kafka JSON message specs:
//!
//! | API | key | versions | module |
//! |---|---|---|---|
//! | ShareFetch | 78 | 1-2 (v2: `ShareAcquireMode`, `IsRenewAck`) | [`share_fetch`] |
//! | ShareAcknowledge | 79 | 1-2 (v2: `IsRenewAck`, response `AcquisitionLockTimeoutMs`) | [`share_acknowledge`] |
//! | DescribeShareGroupOffsets | 90 | 0-1 (v1: response `Lag`) | [`describe_share_group_offsets`] |
//!
//! Every request and response implements kafka-protocol's `Encodable` and `Decodable` (a client
//! encodes requests and decodes responses; the other direction serves tests and fake brokers),
//! `Message` and `HeaderVersion`, and each request its `Request`, so they go wherever
//! kafka-protocol's own messages go. The version is a parameter of every encode and decode; one
//! outside the API's range is an error.
//!
//! kafka-protocol keeps its primitive encoders (`types::*`) behind crate-private traits, so the
//! primitives of the flexible versions (unsigned varints, compact strings, bytes and arrays,
//! tagged fields) are written out in [`codec`]. Decoding is defensive: truncated or malformed
//! input is an error, never a panic, and an array never reserves more elements than there are
//! bytes left (nor more than 64 KiB). The responses decoded with kafka-protocol are scanned
//! along their [`layout`] first, because its decoders reserve whatever a length prefix claims.
//!
//! Every version of these APIs is flexible, so requests carry request header v2 (`ClientId` as a
//! classic nullable string, then tagged fields) and responses response header v1 (correlation
//! id, then tagged fields); kafka-protocol's `RequestHeader` / `ResponseHeader` encode them, see
//! [`encode_request`] and [`decode_response`]. The 4-byte size prefix of a frame is the
//! connection's business.
//!
//! [`records`] turns the `Records` bytes of a ShareFetch partition into the records this member
//! acquired, and the acquired offsets that hold no record (to acknowledge as GAP).

pub(crate) mod codec;
pub(crate) mod common;
pub(crate) mod describe_share_group_offsets;
pub(crate) mod layout;
pub(crate) mod records;
pub(crate) mod share_acknowledge;
pub(crate) mod share_fetch;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

use codec::{BufSink, Reader, Sink, WireError, check_version};

/// Request header version for every API here (all flexible): v2.
#[cfg_attr(not(test), allow(dead_code))] // used by tests and the coming CLI
pub(crate) const REQUEST_HEADER_VERSION: i16 = 2;

/// Response header version for every API here (all flexible): v1. (Only ApiVersions answers with
/// v0 whatever its version; it is not among these.)
#[cfg_attr(not(test), allow(dead_code))] // used by tests and the coming CLI
pub(crate) const RESPONSE_HEADER_VERSION: i16 = 1;

/// A message of this module: written to a [`Sink`], read from a [`Reader`], in a version from
/// `MIN_VERSION` to `MAX_VERSION` (anything else is an error).
///
/// [`impl_kafka_traits`] builds kafka-protocol's `Encodable`, `Decodable`, `Message`,
/// `HeaderVersion` and `Request` on top, so the types work wherever kafka-protocol's own do.
pub(crate) trait WireMessage: Sized {
    /// The message's name in the JSON spec, for errors.
    #[cfg_attr(not(test), allow(dead_code))] // used by tests and the coming CLI
    const NAME: &'static str;
    /// Lowest version implemented.
    const MIN_VERSION: i16;
    /// Highest version implemented.
    const MAX_VERSION: i16;

    /// Writes the message in `version`; checks the version and fields first.
    fn write<S: Sink>(&self, out: &mut S, version: i16) -> Result<(), WireError>;

    /// Reads the message in `version`.
    fn read<B: Buf>(r: &mut Reader<'_, B>, version: i16) -> Result<Self, WireError>;
}

/// Implements kafka-protocol's traits for a request and its response, both [`WireMessage`]s:
/// `Encodable`, `Decodable`, `Message`, `HeaderVersion` (request header v2, response header v1)
/// and `Request`.
macro_rules! impl_kafka_traits {
    ($request:ty => $response:ty, $key:expr) => {
        $crate::wire::impl_kafka_traits!(@message $request, 2);
        $crate::wire::impl_kafka_traits!(@message $response, 1);

        impl ::kafka_protocol::protocol::Request for $request {
            const KEY: i16 = $key as i16;
            type Response = $response;
        }
    };
    (@message $message:ty, $header_version:expr) => {
        impl ::kafka_protocol::protocol::Encodable for $message {
            fn encode<B: ::kafka_protocol::protocol::buf::ByteBufMut>(
                &self,
                buf: &mut B,
                version: i16,
            ) -> ::anyhow::Result<()> {
                let mut sink = $crate::wire::codec::BufSink(buf);
                $crate::wire::WireMessage::write(self, &mut sink, version)?;
                Ok(())
            }

            fn compute_size(&self, version: i16) -> ::anyhow::Result<usize> {
                let mut counter = $crate::wire::codec::SizeCounter::default();
                $crate::wire::WireMessage::write(self, &mut counter, version)?;
                Ok(counter.0)
            }
        }

        impl ::kafka_protocol::protocol::Decodable for $message {
            fn decode<B: ::kafka_protocol::protocol::buf::ByteBuf>(
                buf: &mut B,
                version: i16,
            ) -> ::anyhow::Result<Self> {
                let mut reader = $crate::wire::codec::Reader::new(buf);
                Ok(<Self as $crate::wire::WireMessage>::read(&mut reader, version)?)
            }
        }

        impl ::kafka_protocol::protocol::Message for $message {
            const VERSIONS: ::kafka_protocol::protocol::VersionRange =
                ::kafka_protocol::protocol::VersionRange {
                    min: <Self as $crate::wire::WireMessage>::MIN_VERSION,
                    max: <Self as $crate::wire::WireMessage>::MAX_VERSION,
                };
            const DEPRECATED_VERSIONS: Option<::kafka_protocol::protocol::VersionRange> = None;
        }

        impl ::kafka_protocol::protocol::HeaderVersion for $message {
            fn header_version(_version: i16) -> i16 {
                $header_version
            }
        }
    };
}

use impl_kafka_traits;

/// Writes request header v2 and then `request` in `version` (no size prefix).
///
/// On error `buf` may hold part of the message: discard it.
#[cfg_attr(not(test), allow(dead_code))] // used by tests and the coming CLI
pub(crate) fn encode_request<R: Request + WireMessage, B: ByteBufMut>(
    buf: &mut B,
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: Option<&StrBytes>,
) -> Result<(), WireError> {
    check_version(R::NAME, version, R::MIN_VERSION, R::MAX_VERSION)?;
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id.cloned());
    header
        .encode(buf, REQUEST_HEADER_VERSION)
        .map_err(|source| WireError::Header {
            source: source.into(),
        })?;
    request.write(&mut BufSink(buf), version)
}

/// Reads response header v1 and then the response to `R` in `version` from a whole frame (size
/// prefix removed). Bytes left over are an error: they mean the version is not the one sent.
#[cfg_attr(not(test), allow(dead_code))] // used by tests and the coming CLI
pub(crate) fn decode_response<R>(
    mut frame: Bytes,
    version: i16,
) -> Result<(ResponseHeader, R::Response), WireError>
where
    R: Request + WireMessage,
    R::Response: WireMessage,
{
    check_version(R::NAME, version, R::MIN_VERSION, R::MAX_VERSION)?;
    let header = ResponseHeader::decode(&mut frame, RESPONSE_HEADER_VERSION).map_err(|source| {
        WireError::Header {
            source: source.into(),
        }
    })?;
    let mut reader = Reader::new(&mut frame);
    let response = R::Response::read(&mut reader, version)?;
    if reader.remaining() != 0 {
        return Err(WireError::invalid(R::NAME, "bytes left after the response"));
    }
    Ok((header, response))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::protocol::HeaderVersion;

    use super::codec::TopicId;
    use super::common::{AcknowledgePartition, AcknowledgeTopic};
    use super::describe_share_group_offsets::DescribeShareGroupOffsetsRequest;
    use super::share_acknowledge::ShareAcknowledgeRequest;
    use super::share_fetch::ShareFetchRequest;
    use super::*;

    /// The kafka-protocol view of a request: key, versions, header versions.
    fn kafka_view<R: Request>(version: i16) -> (i16, i16, i16, i16, i16) {
        (
            R::KEY,
            R::VERSIONS.min,
            R::VERSIONS.max,
            R::header_version(version),
            R::Response::header_version(version),
        )
    }

    #[test]
    fn kafka_protocol_traits() {
        assert_eq!(kafka_view::<ShareFetchRequest>(1), (78, 1, 2, 2, 1));
        assert_eq!(kafka_view::<ShareAcknowledgeRequest>(2), (79, 1, 2, 2, 1));
        assert_eq!(
            kafka_view::<DescribeShareGroupOffsetsRequest>(0),
            (90, 0, 1, 2, 1)
        );
        // The same header versions kafka-protocol uses for the versions it knows.
        use kafka_protocol::messages::ApiKey;
        assert_eq!(
            ApiKey::ShareFetch.request_header_version(1),
            REQUEST_HEADER_VERSION
        );
        assert_eq!(
            ApiKey::ShareFetch.response_header_version(1),
            RESPONSE_HEADER_VERSION
        );
        assert_eq!(
            ApiKey::DescribeShareGroupOffsets.request_header_version(0),
            REQUEST_HEADER_VERSION
        );
    }

    #[test]
    fn request_header_v2_then_body() {
        let request = ShareAcknowledgeRequest {
            group_id: StrBytes::from_static_str("g"),
            member_id: StrBytes::from_static_str("m"),
            share_session_epoch: 1,
            is_renew_ack: false,
            topics: vec![AcknowledgeTopic {
                topic_id: TopicId([7; 16]),
                partitions: vec![AcknowledgePartition {
                    partition_index: 0,
                    acknowledgement_batches: vec![],
                }],
            }],
        };
        let mut buf = Vec::new();
        let client_id = StrBytes::from_static_str("cli");
        assert!(encode_request(&mut buf, &request, 1, 42, Some(&client_id)).is_ok());
        let header: &[u8] = &[
            0x00, 0x4f, // RequestApiKey: int16 79 (ShareAcknowledge)
            0x00, 0x01, // RequestApiVersion: int16 1
            0x00, 0x00, 0x00, 0x2a, // CorrelationId: int32 42
            0x00, 0x03, b'c', b'l',
            b'i', // ClientId: nullable string (int16 length, not compact)
            0x00, // header tagged fields: none
        ];
        assert_eq!(&buf[..header.len()], header);
        let mut body = Vec::new();
        assert!(request.encode(&mut body, 1).is_ok());
        assert_eq!(&buf[header.len()..], &body[..]);
        assert_eq!(request.compute_size(1).ok(), Some(body.len()));

        // A null client id is int16 -1.
        let mut buf = Vec::new();
        assert!(encode_request(&mut buf, &request, 2, 1, None).is_ok());
        assert_eq!(&buf[8..11], &[0xff, 0xff, 0x00]);

        // Unsupported version: nothing written.
        let mut buf = Vec::new();
        assert!(encode_request(&mut buf, &request, 3, 1, None).is_err());
        assert!(buf.is_empty());
    }

    #[test]
    fn response_header_v1_then_body() {
        let frame: Vec<u8> = [
            &[0x00, 0x00, 0x00, 0x2a][..], // CorrelationId: int32 42
            &[0x01, 0x03, 0x01, 0xee],     // header tagged fields: one unknown (tag 3, 1 byte)
            &[0x00, 0x00, 0x00, 0x00],     // ThrottleTimeMs
            &[0x00, 0x00],                 // ErrorCode
            &[0x00],                       // ErrorMessage: null
            &[0x01],                       // Responses: empty
            &[0x01],                       // NodeEndpoints: empty
            &[0x00],                       // tagged fields
        ]
        .concat();
        let decoded = decode_response::<ShareAcknowledgeRequest>(Bytes::from(frame.clone()), 1);
        let Ok((header, response)) = decoded else {
            panic!("decode failed: {decoded:?}");
        };
        assert_eq!(header.correlation_id, 42);
        assert_eq!(response.acquisition_lock_timeout_ms, None);

        let mut extra = frame;
        extra.push(0);
        assert!(decode_response::<ShareAcknowledgeRequest>(Bytes::from(extra), 1).is_err());
    }
}
