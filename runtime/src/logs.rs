//! Lists and summaries in log lines: JSON text in the text format, JSON values (arrays, objects)
//! with `log.format = "json"`, where `tracing-subscriber` would write every such field as a
//! string.
//!
//! A runtime log line writes such a field as `topics = %Json(&topics)`; [`JsonEvents`], the
//! event format of `init_tracing`'s JSON output, puts its value in the line as JSON instead of
//! a quoted string. Only the fields named in [`JSON_FIELDS`] of the runtime's own events are
//! taken so, and only when their text is valid JSON.

use std::fmt;

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json as JsonFormat, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The fields of the runtime's events written with [`Json`].
pub(crate) const JSON_FIELDS: &[&str] = &["topics", "summary", "loads", "assignment"];

/// Displays a value as JSON text (for a log field named in [`JSON_FIELDS`]).
pub(crate) struct Json<T>(pub(crate) T);

impl<T: Serialize> fmt::Display for Json<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_string(&self.0) {
            Ok(text) => f.write_str(&text),
            Err(e) => write!(f, "(cannot be written as JSON: {e})"),
        }
    }
}

/// `tracing-subscriber`'s JSON event format, with the [`JSON_FIELDS`] of the runtime's events
/// as JSON values.
pub(crate) struct JsonEvents(Format<JsonFormat>);

impl JsonEvents {
    /// One flat JSON object per event, with the current span's fields under `span`.
    pub(crate) fn new() -> Self {
        Self(
            tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false),
        )
    }
}

/// Collects the text of an event's [`JSON_FIELDS`].
#[derive(Default)]
struct Collect(Vec<(&'static str, String)>);

impl Visit for Collect {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if JSON_FIELDS.contains(&field.name()) {
            self.0.push((field.name(), format!("{value:?}")));
        }
    }
}

impl<S, N> FormatEvent<S, N> for JsonEvents
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    Format<JsonFormat>: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ours = event.metadata().target().starts_with("shareworker")
            && event.fields().any(|f| JSON_FIELDS.contains(&f.name()));
        if !ours {
            return self.0.format_event(ctx, writer, event);
        }
        let mut fields = Collect::default();
        event.record(&mut fields);
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&as_json_values(line, &fields.0))
    }
}

/// `line` (a flat JSON object) with each `"name":"<text>"` in it made `"name":<text>` where
/// `text` is valid JSON.
fn as_json_values(mut line: String, fields: &[(&str, String)]) -> String {
    for (name, text) in fields {
        if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
            continue;
        }
        let Ok(quoted) = serde_json::to_string(text) else {
            continue;
        };
        let from = format!("\"{name}\":{quoted}");
        let to = format!("\"{name}\":{text}");
        line = line.replacen(&from, &to, 1);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_fields_become_json_values() {
        let topics = Json(vec!["a", "b\"c"]).to_string();
        assert_eq!(topics, r#"["a","b\"c"]"#);
        let line = format!(
            "{{\"message\":\"joined\",\"topics\":{},\"summary\":\"not json\"}}\n",
            serde_json::to_string(&topics).expect("a string")
        );
        let out = as_json_values(line, &[("topics", topics), ("summary", "not json".into())]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("still JSON");
        assert_eq!(v["topics"], serde_json::json!(["a", "b\"c"]));
        assert_eq!(
            v["summary"], "not json",
            "text that is not JSON stays a string"
        );
        assert!(out.ends_with('\n'));
    }
}
