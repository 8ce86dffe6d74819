//! `shareworker-fuzz`: the fuzz harness's command line; `scripts/fuzz.sh` runs it.
//!
//! ```text
//! shareworker-fuzz [--seconds N] [--iterations N] [--seed N] [--target SUBSTRING]
//!                  [--alloc-limit-mib N] [--timeout-secs N] [--unguarded]
//! shareworker-fuzz --replay TARGET FILE.hex
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use shareworker_fuzz::runner::{self, Config};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shareworker-fuzz: {e}");
            ExitCode::from(2)
        }
    }
}

fn number<T: std::str::FromStr>(
    args: &mut impl Iterator<Item = String>,
    flag: &str,
) -> Result<T, String> {
    args.next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{flag} needs a number"))
}

fn run() -> Result<ExitCode, String> {
    let mut config = Config {
        iterations: None,
        duration: Some(Duration::from_secs(60)),
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1),
        regressions: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("regressions")),
        ..Config::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => config.duration = Some(Duration::from_secs(number(&mut args, &arg)?)),
            "--iterations" => {
                config.iterations = Some(number(&mut args, &arg)?);
                config.duration = None;
            }
            "--seed" => config.seed = number(&mut args, &arg)?,
            "--target" => config.filter = args.next(),
            "--alloc-limit-mib" => config.alloc_limit = number::<usize>(&mut args, &arg)? << 20,
            "--timeout-secs" => config.timeout = Duration::from_secs(number(&mut args, &arg)?),
            "--unguarded" => config.unguarded = true,
            "--replay" => {
                let (Some(target), Some(file)) = (args.next(), args.next()) else {
                    return Err("--replay needs a target and a file".into());
                };
                let input = runner::read_hex(file.as_ref())?;
                return match runner::replay(&target, &input, &config) {
                    Ok(outcome) => {
                        println!("{target}: {outcome:?}");
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(finding) => {
                        eprintln!("{finding}");
                        Ok(ExitCode::FAILURE)
                    }
                };
            }
            _ => {
                return Err(format!(
                    "unknown argument {arg}; see the header of src/main.rs"
                ));
            }
        }
    }
    println!(
        "fuzzing with seed {} ({}), allocation bound {} MiB, timeout {:?} per input",
        config.seed,
        match (config.duration, config.iterations) {
            (Some(d), _) => format!("{d:?}"),
            (None, Some(n)) => format!("{n} inputs per target"),
            (None, None) => "no limit".into(),
        },
        config.alloc_limit >> 20,
        config.timeout,
    );
    let started = Instant::now();
    match runner::run(&config) {
        Ok(reports) => {
            let total: u64 = reports.iter().map(|r| r.inputs).sum();
            for r in &reports {
                println!(
                    "{:<45} {:>9} inputs {:>9} ok {:>5} outcomes {:>5} corpus",
                    r.name, r.inputs, r.ok, r.outcomes, r.corpus
                );
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{total} inputs in {secs:.1} s ({:.0}/s), {} targets, no finding (seed {})",
                total as f64 / secs.max(1e-9),
                reports.len(),
                config.seed
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(finding) => {
            eprintln!("{finding}");
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/fuzz/findings")
                .join(runner::regression_dir(&finding.target));
            let file = dir.join(format!("seed-{}.hex", config.seed));
            if std::fs::create_dir_all(&dir).is_ok()
                && std::fs::write(&file, shareworker_fuzz::guard::hex(&finding.input)).is_ok()
            {
                eprintln!(
                    "saved to {} (move it to fuzz/regressions/ once fixed)",
                    file.display()
                );
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
