use super::*;

fn frames(stream: &[u8]) -> Result<Vec<Bytes>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut rd = stream;
        let mut out = Vec::new();
        while let Some(frame) = read_frame(&mut rd, "test")
            .await
            .map_err(|e| e.to_string())?
        {
            out.push(frame);
        }
        Ok(out)
    })
}

#[test]
fn frames_are_read_whole_and_in_order() {
    let stream = [
        &[0, 0, 0, 4][..],
        &[0, 0, 0, 7],
        &[0, 0, 0, 5],
        &[0, 0, 0, 8, 9],
    ]
    .concat();
    let read = frames(&stream);
    assert_eq!(
        read,
        Ok(vec![
            Bytes::from_static(&[0, 0, 0, 7]),
            Bytes::from_static(&[0, 0, 0, 8, 9])
        ])
    );
    assert_eq!(frames(&[]), Ok(vec![]));
}

/// A size prefix claiming the largest frame allowed, with nothing behind it, fails when the
/// stream ends, without having reserved the claimed 256 MiB first (the fuzz harness's
/// allocation bound of 64 MiB checks that part: `fuzz/` target `frames`).
#[test]
fn bad_prefixes_and_cut_frames_are_errors() {
    let cut = frames(&[0x10, 0, 0, 0, 0, 0, 0, 1]);
    assert!(
        matches!(&cut, Err(e) if e.contains("closed inside a frame")),
        "{cut:?}"
    );
    for prefix in [[0xff, 0xff, 0xff, 0xff], [0, 0, 0, 3], [0x10, 0, 0, 1]] {
        let result = frames(&[&prefix[..], &[0; 8]].concat());
        assert!(result.is_err(), "{prefix:?}: {result:?}");
    }
    // A prefix cut short ends the stream like a clean close: the connection is gone either
    // way, and every pending request fails.
    assert_eq!(frames(&[0, 0]), Ok(vec![]));
}
