//! The fuzz loop: per target, a corpus that starts with the seeds (and the target's regressions)
//! and keeps every input that gave an outcome not seen before (coverage-less feedback: the
//! outcome is what the code returned, numbers blanked), each input run under the guards.

use std::collections::HashSet;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fastrand::Rng;

use crate::guard::{Watchdog, hex, with_alloc_limit};
use crate::targets::{self, Target};

/// How to fuzz.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seed of the random generator: the same seed and iterations give the same inputs.
    pub seed: u64,
    /// Inputs per target; with `duration`, the run also stops when time is up.
    pub iterations: Option<u64>,
    /// Time for the whole run, shared by the targets in turns.
    pub duration: Option<Duration>,
    /// Only targets whose name contains this.
    pub filter: Option<String>,
    /// Add kafka-protocol's raw decoders (they abort: only to show what the checks prevent).
    pub unguarded: bool,
    /// The largest single allocation allowed while an input runs.
    pub alloc_limit: usize,
    /// The longest one input may run.
    pub timeout: Duration,
    /// Where the regression inputs are (`<dir>/<target name, '/' as '-'>/*.hex`).
    pub regressions: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            seed: 1,
            iterations: Some(1000),
            duration: None,
            filter: None,
            unguarded: false,
            alloc_limit: 64 * 1024 * 1024,
            timeout: Duration::from_secs(10),
            regressions: None,
        }
    }
}

/// What a run did per target.
#[derive(Debug, Clone)]
pub struct TargetReport {
    /// The target's name.
    pub name: String,
    /// Inputs run (seeds and regressions included).
    pub inputs: u64,
    /// Inputs the code accepted.
    pub ok: u64,
    /// Distinct outcomes seen.
    pub outcomes: usize,
    /// Corpus size at the end.
    pub corpus: usize,
}

/// An input that made the code under test panic. (Oversized allocations and timeouts abort the
/// process from the guards instead, with the same details on stderr.)
#[derive(Debug, Clone)]
pub struct Finding {
    /// The target.
    pub target: String,
    /// The input.
    pub input: Vec<u8>,
    /// The panic message.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FUZZ FINDING: target {} panicked: {}\ninput ({} bytes, hex):\n{}",
            self.target,
            self.message,
            self.input.len(),
            hex(&self.input)
        )
    }
}

/// The directory name of a target's regressions.
pub fn regression_dir(target: &str) -> String {
    target.replace('/', "-")
}

/// Reads a regression file: hex, whitespace ignored, lines starting with `#` are comments.
pub fn read_hex(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let digits: Vec<u8> = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| line.bytes())
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("{}: odd number of hex digits", path.display()));
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or_else(|| format!("{}: not hex", path.display()))
        })
        .collect()
}

/// The regression inputs of `target` under `dir`, with their paths, sorted.
pub fn regressions(dir: &Path, target: &str) -> Result<Vec<(PathBuf, Vec<u8>)>, String> {
    let dir = dir.join(regression_dir(target));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "hex"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| read_hex(&p).map(|input| (p, input)))
        .collect()
}

/// Runs `input` through `target` under the guards: its outcome, or the panic as a finding.
pub fn execute(
    target: &dyn Target,
    input: &[u8],
    config: &Config,
    watchdog: &Watchdog,
) -> Result<Result<String, String>, Finding> {
    watchdog.running(Some((target.name(), input)));
    let result = with_alloc_limit(config.alloc_limit, target.name(), input, || {
        catch_unwind(AssertUnwindSafe(|| target.run(input)))
    });
    watchdog.running(None);
    result.map_err(|panic| Finding {
        target: target.name().to_owned(),
        input: input.to_vec(),
        message: panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "(not a string)".to_owned()),
    })
}

/// The outcome with digits blanked, so that errors differing only in a number count once.
fn signature(outcome: &Result<String, String>) -> String {
    let (kind, text) = match outcome {
        Ok(text) => ("ok ", text),
        Err(text) => ("err ", text),
    };
    let mut out = String::from(kind);
    out.extend(
        text.chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c }),
    );
    out
}

struct State {
    target: Box<dyn Target>,
    corpus: Vec<Vec<u8>>,
    seen: HashSet<String>,
    report: TargetReport,
}

/// The most inputs a corpus keeps.
const MAX_CORPUS: usize = 2048;
/// Inputs a target runs per turn in a timed run.
const TURN: u64 = 500;

/// Fuzzes every target (matching the filter) and reports, or returns the first panic found.
pub fn run(config: &Config) -> Result<Vec<TargetReport>, Finding> {
    let watchdog = Watchdog::start(config.timeout);
    let mut rng = Rng::with_seed(config.seed);
    let mut states = Vec::new();
    for target in targets::all(config.unguarded) {
        if config
            .filter
            .as_ref()
            .is_some_and(|f| !target.name().contains(f.as_str()))
        {
            continue;
        }
        let mut corpus = target.seeds();
        if let Some(dir) = &config.regressions {
            let found = regressions(dir, target.name()).unwrap_or_else(|e| panic!("{e}"));
            corpus.extend(found.into_iter().map(|(_, input)| input));
        }
        let name = target.name().to_owned();
        let mut state = State {
            target,
            corpus: Vec::new(),
            seen: HashSet::new(),
            report: TargetReport {
                name,
                inputs: 0,
                ok: 0,
                outcomes: 0,
                corpus: 0,
            },
        };
        for input in corpus {
            let outcome = execute(state.target.as_ref(), &input, config, &watchdog)?;
            state.report.inputs += 1;
            state.report.ok += u64::from(outcome.is_ok());
            state.seen.insert(signature(&outcome));
            state.corpus.push(input);
        }
        states.push(state);
    }
    let started = Instant::now();
    let out_of_time = || config.duration.is_some_and(|d| started.elapsed() >= d);
    let per_target = config.iterations.unwrap_or(u64::MAX);
    let mut done = vec![0u64; states.len()];
    loop {
        let mut any = false;
        for (state, done) in states.iter_mut().zip(&mut done) {
            let turn = if config.duration.is_some() {
                TURN
            } else {
                per_target
            };
            let mut ran = 0;
            while ran < turn && *done < per_target {
                if out_of_time() {
                    break;
                }
                let input = state.target.generate(&mut rng, &state.corpus);
                let outcome = execute(state.target.as_ref(), &input, config, &watchdog)?;
                state.report.inputs += 1;
                state.report.ok += u64::from(outcome.is_ok());
                if state.seen.insert(signature(&outcome)) && state.corpus.len() < MAX_CORPUS {
                    state.corpus.push(input);
                    state.target.kept();
                }
                ran += 1;
                *done += 1;
            }
            any |= ran > 0;
        }
        if !any || out_of_time() {
            break;
        }
    }
    Ok(states
        .into_iter()
        .map(|mut s| {
            s.report.outcomes = s.seen.len();
            s.report.corpus = s.corpus.len();
            s.report
        })
        .collect())
}

/// Runs `input` once through the target named `name` under the guards (no mutation): for
/// regression inputs.
pub fn replay(
    name: &str,
    input: &[u8],
    config: &Config,
) -> Result<Result<String, String>, Finding> {
    let watchdog = Watchdog::start(config.timeout);
    let target = targets::all(true)
        .into_iter()
        .find(|t| t.name() == name)
        .ok_or_else(|| Finding {
            target: name.to_owned(),
            input: input.to_vec(),
            message: "no such target".to_owned(),
        })?;
    execute(target.as_ref(), input, config, &watchdog)
}
