//! Each layout checked against kafka-protocol's own encoding, the samples and the versions sent.

use bytes::Bytes;

use super::messages::*;
use super::*;
use crate::samples;

fn layout(key: i16) -> Option<&'static Layout> {
    Some(match key {
        18 => &API_VERSIONS,
        3 => &METADATA,
        10 => &FIND_COORDINATOR,
        76 => &SHARE_GROUP_HEARTBEAT,
        0 => &PRODUCE,
        19 => &CREATE_TOPICS,
        37 => &CREATE_PARTITIONS,
        32 => &DESCRIBE_CONFIGS,
        44 => &INCREMENTAL_ALTER_CONFIGS,
        2 => &LIST_OFFSETS,
        1 => &FETCH,
        77 => &SHARE_GROUP_DESCRIBE,
        16 => &LIST_GROUPS,
        17 => &SASL_HANDSHAKE,
        36 => &SASL_AUTHENTICATE,
        _ => return None,
    })
}

/// The fewest bytes `ty` takes on the wire, in classic and in flexible versions.
fn min_size(ty: Ty) -> usize {
    match ty {
        Ty::Int8 | Ty::Bool | Ty::NullableStruct(_) => 1,
        Ty::Int16 => 2,
        Ty::Int32 => 4,
        Ty::Int64 => 8,
        Ty::Uuid => 16,
        // A compact null is one byte.
        Ty::String | Ty::Bytes | Ty::Array(_) => 1,
        // Flexible structures end with a tagged-field count; classic ones have a field.
        Ty::Struct(fields) => fields
            .iter()
            .filter(|f| f.tag.is_none())
            .map(|f| min_size(f.ty))
            .sum::<usize>()
            .max(1),
    }
}

fn each_array(fields: &[Field], check: &mut impl FnMut(&'static str, Ty)) {
    for field in fields {
        let mut ty = field.ty;
        if let Ty::Array(element) = ty {
            check(field.name, *element);
            ty = *element;
        }
        if let Ty::Struct(inner) | Ty::NullableStruct(inner) = ty {
            each_array(inner, check);
        }
    }
}

/// The scan refuses an array longer than the bytes left: sound only if no element can be
/// empty. (A classic structure whose fields all start in later versions could be; there is
/// none.)
#[test]
fn every_array_element_takes_a_byte() {
    for layout in [
        &API_VERSIONS,
        &METADATA,
        &FIND_COORDINATOR,
        &SHARE_GROUP_HEARTBEAT,
        &PRODUCE,
        &CREATE_TOPICS,
        &CREATE_PARTITIONS,
        &DESCRIBE_CONFIGS,
        &INCREMENTAL_ALTER_CONFIGS,
        &LIST_OFFSETS,
        &SHARE_GROUP_DESCRIBE,
        &LIST_GROUPS,
        &SASL_HANDSHAKE,
        &SASL_AUTHENTICATE,
        &FETCH,
    ] {
        each_array(layout.fields, &mut |name, element| {
            assert!(min_size(element) >= 1, "{}.{name}", layout.name);
            if let Ty::Struct(fields) = element {
                for version in layout.min..layout.flexible.min(layout.max + 1) {
                    let present = fields
                        .iter()
                        .any(|f| f.tag.is_none() && (f.min..=f.max).contains(&version));
                    assert!(present, "{}.{name} is empty in v{version}", layout.name);
                }
            }
        });
    }
}

/// Each layout reads exactly the bytes kafka-protocol wrote for a response with every field
/// set, in every version the client sends; a field missing, extra or in the wrong versions
/// would make the count differ.
#[test]
fn layouts_match_kafka_protocol_encoding() {
    let mut checked = 0;
    for sample in samples::responses() {
        let Some(layout) = layout(sample.key) else {
            continue;
        };
        let body = &sample.frame[sample.body_at..];
        let scanned = layout.scanned_len(body, sample.version);
        assert_eq!(
            scanned.ok(),
            Some(body.len()),
            "{} v{}",
            layout.name,
            sample.version
        );
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} samples");
}

/// The samples decode as the client decodes them, our own codecs and the records included.
#[test]
fn samples_decode() {
    use crate::conn::decode_frame;
    use crate::wire::records::acquired_records;
    for sample in samples::responses() {
        let frame = Bytes::from(sample.frame.clone());
        let v = sample.version;
        let ok = match sample.key {
            18 => decode_frame::<kafka_protocol::messages::ApiVersionsRequest>(frame, v).is_ok(),
            3 => decode_frame::<kafka_protocol::messages::MetadataRequest>(frame, v).is_ok(),
            78 => {
                let decoded = decode_frame::<crate::wire::share_fetch::ShareFetchRequest>(frame, v);
                let Ok(response) = decoded else {
                    panic!("ShareFetch v{v}: {decoded:?}");
                };
                for p in response.responses.iter().flat_map(|t| &t.partitions) {
                    let found = acquired_records(&p.records, &p.acquired_records);
                    let Ok(found) = found else {
                        panic!("records of ShareFetch v{v}: {found:?}");
                    };
                    assert_eq!(found.records.len(), 4); // 0, 2, 3 and 5
                    assert_eq!(found.gaps.len(), 1);
                    assert_eq!(found.missing.len(), 1);
                }
                true
            }
            _ => continue,
        };
        assert!(ok, "API {} v{v}", sample.key);
    }
}

/// Every version the client sends has a layout (else every response fails the scan): a
/// version range widened without its layout fails here, not on a broker.
#[test]
fn layouts_cover_the_versions_sent() {
    use crate::conn::{
        API_VERSIONS as API_VERSIONS_SENT, SASL_AUTHENTICATE as SASL_AUTHENTICATE_SENT,
        SASL_HANDSHAKE as SASL_HANDSHAKE_SENT, Versions,
    };
    use crate::{admin, cluster, producer};
    let sent: [(&Layout, Versions); 14] = [
        (&API_VERSIONS, API_VERSIONS_SENT),
        (&METADATA, cluster::METADATA),
        (&FIND_COORDINATOR, cluster::FIND_COORDINATOR),
        (&PRODUCE, producer::PRODUCE),
        (&CREATE_TOPICS, admin::CREATE_TOPICS),
        (&CREATE_PARTITIONS, admin::CREATE_PARTITIONS),
        (&DESCRIBE_CONFIGS, admin::DESCRIBE_CONFIGS),
        (&INCREMENTAL_ALTER_CONFIGS, admin::INCREMENTAL_ALTER_CONFIGS),
        (&LIST_OFFSETS, admin::LIST_OFFSETS),
        (&SHARE_GROUP_DESCRIBE, admin::SHARE_GROUP_DESCRIBE),
        (&LIST_GROUPS, admin::LIST_GROUPS),
        (&SASL_HANDSHAKE, SASL_HANDSHAKE_SENT),
        (&SASL_AUTHENTICATE, SASL_AUTHENTICATE_SENT),
        (&FETCH, crate::reader::FETCH),
    ];
    let samples = samples::responses();
    for (checked, versions) in sent {
        assert!(
            checked.min <= versions.min && versions.max <= checked.max,
            "{}: sent v{}-v{}, layout v{}-v{}",
            checked.name,
            versions.min,
            versions.max,
            checked.min,
            checked.max
        );
        // And the samples cover every version sent.
        for version in versions.min..=versions.max {
            let covered = samples.iter().any(|s| {
                s.version == version && layout(s.key).is_some_and(|l| l.name == checked.name)
            });
            assert!(covered, "{} v{version}", checked.name);
        }
    }
    // ShareGroupHeartbeat's range lives in a private module: v1 only.
    assert_eq!(
        (SHARE_GROUP_HEARTBEAT.min, SHARE_GROUP_HEARTBEAT.max),
        (1, 1)
    );
}

#[test]
fn huge_array_prefix_is_refused_before_kafka_protocol() {
    // Metadata v12: ThrottleTimeMs, then Brokers with compact length 2^32 - 2.
    let body = [0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0];
    let result = METADATA.scan(&&body[..], 12);
    assert!(
        matches!(
            result,
            Err(WireError::Invalid {
                field: "Brokers",
                ..
            })
        ),
        "{result:?}"
    );
    // The same in a classic version: DescribeConfigs v1, Results with int32 length 2^31 - 1.
    let body = [0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0];
    assert!(DESCRIBE_CONFIGS.scan(&&body[..], 1).is_err());
    // A string claiming more than there is.
    let body = [0, 0, 0, 0, 0x02, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f];
    assert!(METADATA.scan(&&body[..], 12).is_err());
}

#[test]
fn versions_outside_the_layout_are_refused() {
    assert!(matches!(
        METADATA.scan(&&[0u8; 64][..], 8),
        Err(WireError::UnsupportedVersion { .. })
    ));
}
