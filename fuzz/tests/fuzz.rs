//! The fuzzing that `cargo test` (and so CI) runs: a short run with a fixed seed, so that a
//! failure reproduces, and every input saved under `regressions/`.
//!
//! `FUZZ_ITERATIONS` sets the inputs per target (default below); `scripts/fuzz.sh` runs longer,
//! with a fresh seed each time.

use std::path::PathBuf;

use shareworker_fuzz::runner::{self, Config};
use shareworker_fuzz::targets;

const SEED: u64 = 0x5eed_2026;
/// Inputs per target: about 660 000 inputs in all, half a minute in a debug build.
const ITERATIONS: u64 = 20_000;

fn regressions_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("regressions")
}

#[test]
fn seeded_run_finds_nothing() {
    let iterations = std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ITERATIONS);
    let config = Config {
        seed: SEED,
        iterations: Some(iterations),
        regressions: Some(regressions_dir()),
        ..Config::default()
    };
    let reports = match runner::run(&config) {
        Ok(reports) => reports,
        Err(finding) => panic!("{finding}\n(seed {SEED}, {iterations} inputs per target)"),
    };
    let total: u64 = reports.iter().map(|r| r.inputs).sum();
    println!("{total} inputs over {} targets, seed {SEED}", reports.len());
    for r in &reports {
        println!(
            "{:<45} {:>7} inputs {:>7} ok {:>5} outcomes",
            r.name, r.inputs, r.ok, r.outcomes
        );
        assert!(r.inputs >= iterations, "{} ran {} inputs", r.name, r.inputs);
        // The mutations must leave some inputs valid and make many distinct errors; a target
        // stuck on one outcome is not being fuzzed.
        assert!(
            r.outcomes >= 5,
            "{} saw only {} outcomes",
            r.name,
            r.outcomes
        );
    }
    // Every API the client decodes, the records and the frames.
    assert!(reports.len() >= 43, "{} targets", reports.len());
}

/// Each saved input runs through its target without a panic, an oversized allocation or a
/// timeout, and gives the outcome its `# expect:` line names (`error` or `ok`).
#[test]
fn regressions_do_not_crash() {
    let dir = regressions_dir();
    let names: Vec<String> = targets::all(false)
        .iter()
        .map(|t| t.name().to_owned())
        .collect();
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/regressions") {
        let path = entry.expect("entry").path();
        let dir_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some(target) = names.iter().find(|n| runner::regression_dir(n) == dir_name) else {
            panic!("{}: no target of that name", path.display());
        };
        for (file, input) in runner::regressions(&dir, target).expect("regressions") {
            let text = std::fs::read_to_string(&file).expect("readable");
            let expect = text
                .lines()
                .find_map(|l| l.strip_prefix("# expect:"))
                .map(str::trim);
            let outcome = match runner::replay(target, &input, &Config::default()) {
                Ok(outcome) => outcome,
                Err(finding) => panic!("{}: {finding}", file.display()),
            };
            match expect {
                Some("error") => assert!(outcome.is_err(), "{}: {outcome:?}", file.display()),
                Some("ok") => assert!(outcome.is_ok(), "{}: {outcome:?}", file.display()),
                _ => panic!("{}: needs an `# expect: error|ok` line", file.display()),
            }
            count += 1;
        }
    }
    assert!(count > 0, "no regression inputs under {}", dir.display());
}

/// Large inputs, which the mutational run rarely makes: every response seed with a huge count
/// written at one position after another (as a compact and as an int32 length) and 1 MiB of
/// 0xff behind it (which decodes as few elements as possible). A decoder that reserves for every
/// byte left rather than for the elements there reserves its element size in MiB: above the
/// 64 MiB bound for elements over 64 bytes. (Decoding real elements costs up to some 30 times
/// their wire size.)
#[test]
fn huge_counts_in_large_frames() {
    use shareworker_fuzz::guard::Watchdog;
    let config = Config::default();
    let watchdog = Watchdog::start(config.timeout);
    let padding = vec![0xffu8; 1 << 20];
    let mut probes = 0;
    for target in targets::all(false) {
        if !target.name().starts_with("response/") {
            continue;
        }
        for seed in target.seeds() {
            let step = (seed.len() / 12).max(1);
            for at in (4..seed.len()).step_by(step) {
                for count in [
                    &[0xff, 0xff, 0xff, 0xff, 0x0f][..],
                    &[0x7f, 0xff, 0xff, 0xff],
                ] {
                    let input = [&seed[..at], count, &seed[at..], &padding].concat();
                    if let Err(finding) =
                        runner::execute(target.as_ref(), &input, &config, &watchdog)
                    {
                        panic!("{}: {}", finding.target, finding.message);
                    }
                    probes += 1;
                }
            }
        }
    }
    assert!(probes > 500, "{probes} probes");
}
