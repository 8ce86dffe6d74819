//! AFL++ entry points for the targets of `shareworker-fuzz` (see `scripts/fuzz-afl.sh`).
//!
//! Each binary runs one group of targets under the same allocation bound as the mutational
//! harness: an oversized allocation aborts, which AFL++ records as a crash. The first byte of a
//! `responses` input picks the API and version.

use std::panic::AssertUnwindSafe;

use shareworker_fuzz::guard::with_alloc_limit;
use shareworker_fuzz::targets::{self, Target};

/// The largest single allocation allowed while an input runs.
pub const ALLOC_LIMIT: usize = 64 << 20;

/// The targets whose names start with `prefix`.
pub fn targets(prefix: &str) -> Vec<Box<dyn Target>> {
    targets::all(false)
        .into_iter()
        .filter(|t| t.name().starts_with(prefix))
        .collect()
}

/// Runs AFL++'s loop over the targets named with `prefix`; with more than one, the input's first
/// byte picks the target.
pub fn fuzz(prefix: &str) {
    let targets = AssertUnwindSafe(targets(prefix));
    assert!(!targets.is_empty(), "no target named {prefix}*");
    afl::fuzz!(|data: &[u8]| {
        let (target, input) = if targets.len() == 1 {
            (&targets[0], data)
        } else {
            match data.split_first() {
                Some((&which, input)) => (&targets[usize::from(which) % targets.len()], input),
                None => return,
            }
        };
        let _ = with_alloc_limit(ALLOC_LIMIT, target.name(), input, || target.run(input));
    });
}

/// Writes the seeds of the targets named with `prefix` into `dir`, one file each (prefixed with
/// the target's index when there are several).
pub fn write_seeds(prefix: &str, dir: &std::path::Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let targets = targets(prefix);
    let mut written = 0;
    for (i, target) in targets.iter().enumerate() {
        for (j, seed) in target.seeds().into_iter().enumerate() {
            // AFL++ wants small seeds; the decompression bombs are the big ones.
            if seed.len() > 64 * 1024 {
                continue;
            }
            let mut input = Vec::with_capacity(seed.len() + 1);
            if targets.len() > 1 {
                input.push(i as u8);
            }
            input.extend(seed);
            std::fs::write(dir.join(format!("{i}-{j}")), input)?;
            written += 1;
        }
    }
    Ok(written)
}
