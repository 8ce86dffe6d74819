//! Durations in configuration: strings such as "500ms", "30s", "5m", "1h".

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Parses "500ms", "30s", "5m", "1h 30m" and the like.
pub(crate) fn parse(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("`{s}` is not a duration ({e}); write it like \"500ms\", \"30s\", \"5m\" or \"1h\"")
    })
}

pub(crate) fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Text(String),
    Int(i64),
    Float(f64),
}

fn from_raw<E: serde::de::Error>(raw: Raw) -> Result<Duration, E> {
    match raw {
        Raw::Text(s) => parse(&s).map_err(E::custom),
        Raw::Int(n) => Err(E::custom(format!(
            "`{n}` has no unit; write a duration like \"{n}ms\" or \"{n}s\""
        ))),
        Raw::Float(n) => Err(E::custom(format!(
            "`{n}` has no unit; write a duration like \"500ms\" or \"30s\""
        ))),
    }
}

/// serde helpers for `Duration` fields.
pub(crate) mod serde_duration {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        from_raw(Raw::deserialize(d)?)
    }
}

/// serde helpers for `Option<Duration>` fields.
pub(crate) mod serde_opt_duration {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format(*d)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<Raw>::deserialize(d)?.map(from_raw).transpose()
    }
}

/// serde helpers for an `Option<Duration>` that configuration may turn off: `"off"` (or
/// `"none"`, `false`) is `None`, so a file or the environment can remove a duration set in code.
pub(crate) mod serde_opt_duration_or_off {
    use super::*;

    pub(crate) use super::serde_opt_duration::serialize;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OrOff {
            Off(bool),
            Raw(Raw),
        }
        match Option::<OrOff>::deserialize(d)? {
            None | Some(OrOff::Off(false)) => Ok(None),
            Some(OrOff::Off(true)) => Err(serde::de::Error::custom(
                "`true` is not a duration; write one like \"30s\", or \"off\"",
            )),
            Some(OrOff::Raw(Raw::Text(t))) if matches!(t.trim(), "off" | "none" | "false") => {
                Ok(None)
            }
            Some(OrOff::Raw(raw)) => from_raw(raw).map(Some),
        }
    }
}

/// A duration in a log line or message, short and rounded: `1.96s`, `250ms`, `3m 5s`, `2h 10m`
/// (where `humantime` writes `1s 961ms 655us 331ns`). Not for values read back: see [`format`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Short(pub(crate) Duration);

impl std::fmt::Display for Short {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        /// `x` with 3 significant digits at most, trailing zeros dropped.
        fn digits(f: &mut std::fmt::Formatter<'_>, x: f64, unit: &str) -> std::fmt::Result {
            let decimals = if x >= 100.0 {
                0
            } else if x >= 10.0 {
                1
            } else {
                2
            };
            let text = format!("{x:.decimals$}");
            let text = if text.contains('.') {
                text.trim_end_matches('0').trim_end_matches('.')
            } else {
                &text
            };
            write!(f, "{text}{unit}")
        }
        let d = self.0;
        let nanos = d.as_nanos();
        if nanos == 0 {
            f.write_str("0s")
        } else if nanos < 1_000 {
            write!(f, "{nanos}ns")
        } else if nanos < 1_000_000 {
            digits(f, nanos as f64 / 1e3, "us")
        } else if nanos < 999_500_000 {
            digits(f, nanos as f64 / 1e6, "ms")
        } else if d < Duration::from_millis(59_500) {
            digits(f, d.as_secs_f64(), "s")
        } else {
            // Whole seconds from here, rounded.
            let secs = (d.as_millis() + 500) / 1000;
            let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
            match (h, m, s) {
                (0, m, 0) => write!(f, "{m}m"),
                (0, m, s) => write!(f, "{m}m {s}s"),
                (h, 0, _) => write!(f, "{h}h"),
                (h, m, _) => write!(f, "{h}h {m}m"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        let err = parse("soon").expect_err("not a duration");
        assert!(err.contains("\"30s\""), "{err}");
    }

    #[test]
    fn short_is_short() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(750), "750ns"),
            (Duration::from_micros(12), "12us"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_micros(1_500), "1.5ms"),
            (Duration::from_nanos(1_961_655_331), "1.96s"),
            (Duration::from_millis(1_000), "1s"),
            (Duration::from_millis(999_700), "16m 40s"),
            (Duration::from_millis(12_345), "12.3s"),
            (Duration::from_secs(185), "3m 5s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(7_830), "2h 10m"),
        ];
        for (d, text) in cases {
            assert_eq!(Short(d).to_string(), text, "{d:?}");
        }
    }

    #[test]
    fn format_round_trips() {
        let d = Duration::from_millis(1500);
        assert_eq!(parse(&format(d)), Ok(d));
    }
}
