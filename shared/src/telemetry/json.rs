//! The JSON log line for Lambda: `{"level":..,"message":..,<the event's fields>,"span":{<the
//! current span's fields>,"name":..}}`, as tracing-subscriber's JSON format writes it with the
//! event flattened and the current span, without its cost.
//!
//! tracing-subscriber's JSON format turns a span's fields into a JSON document when the span is
//! created and parses that document back into a value for every event in the span: in the
//! worker, a task's span and its one log line cost more than running a noop task. Here a span's
//! fields are kept as the members of a JSON object (`"a":1,"b":"x"`) and copied into each line
//! as they are.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats fields as the members of a JSON object, without its braces.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonMembers;

impl<'writer> FormatFields<'writer> for JsonMembers {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut members = Members::new(&mut writer, true);
        fields.record(&mut members);
        members.result
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut writer = current.as_writer();
        let mut members = Members::new(&mut writer, first);
        fields.record(&mut members);
        members.result
    }
}

/// One JSON object per event, on one line; see the module documentation.
#[derive(Debug, Default, Clone, Copy)]
pub struct LambdaJson;

impl<S, N> FormatEvent<S, N> for LambdaJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'writer> FormatFields<'writer> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "{{\"level\":\"{}\"", event.metadata().level())?;
        let mut members = Members::new(&mut writer, false);
        event.record(&mut members);
        members.result?;
        if let Some(span) = ctx.event_scope().and_then(|mut scope| scope.next()) {
            writer.write_str(",\"span\":{")?;
            let extensions = span.extensions();
            if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                if !fields.fields.is_empty() {
                    writer.write_str(&fields.fields)?;
                    writer.write_char(',')?;
                }
            }
            writer.write_str("\"name\":")?;
            string(&mut writer, span.name())?;
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

/// Writes visited fields as `"name":value` members, separated by commas.
struct Members<'a, 'w> {
    writer: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl<'a, 'w> Members<'a, 'w> {
    fn new(writer: &'a mut Writer<'w>, first: bool) -> Self {
        Self {
            writer,
            first,
            result: Ok(()),
        }
    }

    fn member(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'w>) -> fmt::Result) {
        if self.result.is_ok() {
            let first = std::mem::replace(&mut self.first, false);
            self.result = write_member(self.writer, first, field.name(), value);
        }
    }
}

fn write_member<'w>(
    w: &mut Writer<'w>,
    first: bool,
    name: &str,
    value: impl FnOnce(&mut Writer<'w>) -> fmt::Result,
) -> fmt::Result {
    if !first {
        w.write_char(',')?;
    }
    string(w, name)?;
    w.write_char(':')?;
    value(w)
}

impl Visit for Members<'_, '_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.member(field, |w| write!(w, "{value}"));
        } else {
            self.member(field, |w| write!(w, "\"{value}\""));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |w| string(w, value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.member(field, |w| quoted(w, format_args!("{value}")));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |w| quoted(w, format_args!("{value:?}")));
    }
}

fn string(w: &mut impl fmt::Write, value: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaped(w).write_str(value)?;
    w.write_char('"')
}

fn quoted(w: &mut impl fmt::Write, value: fmt::Arguments<'_>) -> fmt::Result {
    w.write_char('"')?;
    Escaped(&mut *w).write_fmt(value)?;
    w.write_char('"')
}

/// Escapes what it is given as the inside of a JSON string.
struct Escaped<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, c) in s.char_indices() {
            let escape = match c {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                c if c < ' ' => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{:04x}", c as u32)?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + c.len_utf8();
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use tms_testkit::logs::Captured;

    use super::*;

    fn lines_of(log: impl FnOnce()) -> Vec<Value> {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonMembers)
            .event_format(LambdaJson)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = captured.text();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn a_line_is_the_level_the_message_the_fields_and_the_current_span() {
        let lines = lines_of(|| {
            let span = tracing::info_span!(
                "task",
                task_id = "t-1",
                attempt = 2_u64,
                tenant = tracing::field::Empty
            );
            span.record("tenant", "demo");
            let _in = span.enter();
            tracing::info!(status = %"succeeded", took_ms = 1.5, retried = false, delta = -3_i64,
                "task attempt recorded");
        });
        assert_eq!(
            lines,
            vec![json!({
                "level": "INFO", "message": "task attempt recorded", "status": "succeeded",
                "took_ms": 1.5, "retried": false, "delta": -3,
                "span": {"task_id": "t-1", "attempt": 2, "tenant": "demo", "name": "task"},
            })]
        );
    }

    #[test]
    fn strings_are_escaped_and_lines_outside_a_span_have_none() {
        let nasty = "a \"quoted\" \\ path\nnext\tline \u{1} é";
        let error = std::io::Error::other("disk \"full\"");
        let lines = lines_of(|| {
            tracing::warn!(value = nasty, debug = ?nasty, error = &error as &dyn std::error::Error,
                "odd {}", "text");
            let empty = tracing::info_span!("empty");
            let _in = empty.enter();
            tracing::error!(nan = f64::NAN, "in an empty span");
        });
        assert_eq!(lines[0]["level"], "WARN");
        assert_eq!(lines[0]["message"], "odd text");
        assert_eq!(lines[0]["value"], nasty);
        assert_eq!(lines[0]["debug"], format!("{nasty:?}"));
        assert_eq!(lines[0]["error"], "disk \"full\"");
        assert!(lines[0].get("span").is_none());
        assert_eq!(lines[1]["span"], json!({"name": "empty"}));
        assert_eq!(lines[1]["nan"], "NaN");
    }
}
