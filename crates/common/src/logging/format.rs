// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! An event's line in either format: klog's text ([`KlogText`]) or controller-runtime's JSON
//! ([`JsonLines`]), with the fields of its spans.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use super::quote::{go_quote, json_quote};
use super::stamp::Stamp;
use crate::klog::Severity;

// ---------------------------------------------------------------------------------------------
// Fields

/// Collects an event's or span's fields: the message apart, the others formatted as `style`
/// wants them.
struct Fields {
    style: Style,
    message: Option<String>,
    rest: String,
}

#[derive(Clone, Copy)]
enum Style {
    /// ` key=value`, strings Go-quoted.
    Klog,
    /// `,"key":value`.
    Json,
}

impl Style {
    /// What goes before a field's value: ` key=` or `,"key":`.
    fn key(self, out: &mut String, name: &str) -> fmt::Result {
        match self {
            Style::Klog => write!(out, " {name}="),
            Style::Json => {
                out.push(',');
                json_quote(out, name)?;
                out.write_char(':')
            }
        }
    }

    /// A string value, quoted as the format quotes strings.
    fn quote(self, out: &mut String, text: &str) -> fmt::Result {
        match self {
            Style::Klog => go_quote(out, text),
            Style::Json => json_quote(out, text),
        }
    }
}

impl Fields {
    fn new(style: Style) -> Fields {
        Fields {
            style,
            message: None,
            rest: String::new(),
        }
    }

    fn key(&mut self, field: &Field) -> bool {
        // tracing-log's copies of the log record's metadata, shown in the header instead.
        if field.name().starts_with("log.") {
            return false;
        }
        let _ = self.style.key(&mut self.rest, field.name());
        true
    }

    fn string(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_string());
        } else if self.key(field) {
            let _ = self.style.quote(&mut self.rest, value);
        }
    }

    fn bare(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.key(field) {
            let _ = self.rest.write_fmt(value);
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.string(field, &format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.string(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.string(field, &crate::error_chain(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.bare(field, format_args!("{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.bare(field, format_args!("{value}"));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.bare(field, format_args!("{value}"));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.bare(field, format_args!("{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.bare(field, format_args!("{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.bare(field, format_args!("{value}"));
        } else {
            self.string(field, &value.to_string());
        }
    }
}

/// Span fields in klog's ` key=value` form (a span's message, if any, counts as a field).
#[derive(Debug, Clone, Copy, Default)]
pub struct KlogFields;

/// Span fields as `,"key":value` JSON members.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonFields;

fn format_span_fields<R: tracing_subscriber::field::RecordFields>(
    style: Style,
    mut writer: Writer<'_>,
    fields: R,
) -> fmt::Result {
    let mut collected = Fields::new(style);
    fields.record(&mut collected);
    if let Some(message) = collected.message.take() {
        let mut text = String::new();
        style.key(&mut text, "message")?;
        style.quote(&mut text, &message)?;
        writer.write_str(&text)?;
    }
    writer.write_str(&collected.rest)
}

impl<'w> FormatFields<'w> for KlogFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        format_span_fields(Style::Klog, writer, fields)
    }
}

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        format_span_fields(Style::Json, writer, fields)
    }
}

/// The fields of the spans the event is in, root first, as their `N` formatted them.
fn span_fields<S, N>(ctx: &FmtContext<'_, S, N>) -> String
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let mut text = String::new();
    if let Some(scope) = ctx.event_scope() {
        for span in scope.from_root() {
            if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
                text.push_str(fields);
            }
        }
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Formats

/// klog's text format.
#[derive(Debug, Clone, Copy)]
pub struct KlogText {
    /// `--skip_headers`: no header, the line starts with the quoted message.
    pub skip_headers: bool,
    /// `--add_dir_header`: the source file with its directory.
    pub add_dir_header: bool,
    /// The "threadid" column: klog writes the process id there.
    pub pid: u32,
}

impl KlogText {
    /// The header, `I1130 14:39:27.273949   25085 reconcile.rs:38] `.
    fn header(
        &self,
        out: &mut impl fmt::Write,
        level: &Level,
        file: Option<&str>,
        line: Option<u32>,
    ) -> fmt::Result {
        out.write_char(Severity::of_level(level).letter())?;
        Stamp::now().klog(out)?;
        let file = match file {
            Some(file) if self.add_dir_header => file,
            Some(file) => file.rsplit(['/', '\\']).next().unwrap_or(file),
            None => "???",
        };
        write!(out, " {:>7} {}:{}] ", self.pid, file, line.unwrap_or(1))
    }
}

impl<S, N> FormatEvent<S, N> for KlogText
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let head = |line: &mut String, meta: &Metadata<'_>| {
            if self.skip_headers {
                return Ok(());
            }
            self.header(line, meta.level(), meta.file(), meta.line())
        };
        format_line(Style::Klog, ctx, writer, event, head, "\n")
    }
}

/// The line of an event in either format: what `head` writes from the event's metadata, the
/// quoted message, the fields of its spans, its own fields, then `end`. Written at once.
fn format_line<S, N>(
    style: Style,
    ctx: &FmtContext<'_, S, N>,
    mut writer: Writer<'_>,
    event: &Event<'_>,
    head: impl FnOnce(&mut String, &Metadata<'_>) -> fmt::Result,
    end: &str,
) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    // A `log` record's own metadata, not that of tracing-log's callsite.
    let normalized = event.normalized_metadata();
    let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
    let mut line = String::with_capacity(160);
    head(&mut line, meta)?;
    let mut fields = Fields::new(style);
    event.record(&mut fields);
    style.quote(&mut line, fields.message.as_deref().unwrap_or_default())?;
    line.push_str(&span_fields(ctx));
    line.push_str(&fields.rest);
    line.push_str(end);
    writer.write_str(&line)
}

/// One JSON object per line, controller-runtime's schema: `level`, `ts`, `logger` (the
/// event's target), `msg`, then the span and event fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

fn json_level(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let head = |line: &mut String, meta: &Metadata<'_>| {
            write!(
                line,
                "{{\"level\":\"{}\",\"ts\":\"",
                json_level(meta.level())
            )?;
            Stamp::now().rfc3339(line)?;
            line.push_str("\",\"logger\":");
            json_quote(line, meta.target())?;
            line.push_str(",\"msg\":");
            Ok(())
        };
        format_line(Style::Json, ctx, writer, event, head, "}\n")
    }
}

/// Either format, chosen at run time.
#[derive(Debug, Clone, Copy)]
pub enum Lines {
    Klog(KlogText),
    Json(JsonLines),
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        match self {
            Lines::Klog(format) => format.format_event(ctx, writer, event),
            Lines::Json(format) => format.format_event(ctx, writer, event),
        }
    }
}

/// The span fields of either format, chosen at run time.
#[derive(Debug, Clone, Copy)]
pub enum SpanFields {
    Klog(KlogFields),
    Json(JsonFields),
}

impl<'w> FormatFields<'w> for SpanFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        let style = match self {
            SpanFields::Klog(_) => Style::Klog,
            SpanFields::Json(_) => Style::Json,
        };
        format_span_fields(style, writer, fields)
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::logging::LogFormat;

    #[test]
    fn span_messages_are_fields() {
        let emit = || {
            let span = tracing::info_span!("sync", message = "tick \"7\"", n = 2u8);
            let _entered = span.enter();
            tracing::info!("synced");
        };
        let text = capture(LogFormat::Text, true, emit);
        assert_eq!(text, "\"synced\" message=\"tick \\\"7\\\"\" n=2\n");
        let json = capture(LogFormat::Json, false, emit);
        let end = "\"msg\":\"synced\",\"message\":\"tick \\\"7\\\"\",\"n\":2}\n";
        assert!(json.ends_with(end), "{json}");
    }

    /// Formats events with a subscriber local to the test, into a buffer.
    fn capture(format: LogFormat, skip_headers: bool, emit: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl io::Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().expect("buffer").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let out = buffer.clone();
        let make = move || out.clone();
        let subscriber: Box<dyn Subscriber + Send + Sync> = match format {
            LogFormat::Text => Box::new(
                tracing_subscriber::registry().with(
                    tracing_subscriber::fmt::layer()
                        .event_format(KlogText {
                            skip_headers,
                            add_dir_header: false,
                            pid: 42,
                        })
                        .fmt_fields(KlogFields)
                        .with_writer(make),
                ),
            ),
            LogFormat::Json => Box::new(
                tracing_subscriber::registry().with(
                    tracing_subscriber::fmt::layer()
                        .event_format(JsonLines)
                        .fmt_fields(JsonFields)
                        .with_writer(make),
                ),
            ),
        };
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = buffer.0.lock().expect("buffer").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    fn emit_samples() {
        let ip: std::net::IpAddr = [10, 96, 0, 2].into();
        let span = tracing::info_span!("sync", why = "periodic");
        let _entered = span.enter();
        tracing::info!(%ip, interface = "lo", port = 443u16, up = true, "added address");
        tracing::warn!(error = "line one\nline two", "sync failed");
    }

    #[test]
    fn klog_text_lines() {
        let text = capture(LogFormat::Text, false, emit_samples);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        // I1130 14:39:27.273949      42 format.rs:600] "added address" ...
        let (header, rest) = lines[0].split_once("] ").expect("header");
        // Severity, mmdd, time with microseconds, the pid right-aligned in 7, file:line.
        let bytes = header.as_bytes();
        assert_eq!(bytes[0], b'I', "{header}");
        assert!(bytes[1..5].iter().all(u8::is_ascii_digit), "{header}");
        assert_eq!(&header[5..6], " ");
        assert_eq!(
            (&header[8..9], &header[11..12], &header[14..15]),
            (":", ":", ".")
        );
        assert!(bytes[15..21].iter().all(u8::is_ascii_digit), "{header}");
        assert!(header.contains("      42 format.rs:"), "{header}");
        assert_eq!(
            rest,
            r#""added address" why="periodic" ip="10.96.0.2" interface="lo" port=443 up=true"#
        );
        assert!(lines[1].starts_with('W'), "{}", lines[1]);
        assert!(
            lines[1].ends_with(r#"] "sync failed" why="periodic" error="line one\nline two""#),
            "{}",
            lines[1]
        );
        let bare = capture(LogFormat::Text, true, emit_samples);
        assert!(
            bare.starts_with(r#""added address" why="periodic""#),
            "{bare}"
        );
    }

    #[test]
    fn json_lines() {
        let text = capture(LogFormat::Json, false, emit_samples);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first = lines[0];
        assert!(first.starts_with(r#"{"level":"info","ts":""#), "{first}");
        assert!(
            first.ends_with(
                r#"","logger":"common::logging::format::tests","msg":"added address","why":"periodic","ip":"10.96.0.2","interface":"lo","port":443,"up":true}"#
            ),
            "{first}"
        );
        // ts: 2026-11-30T14:39:27.273949Z
        let ts = &first[r#"{"level":"info","ts":""#.len()..][..27];
        assert_eq!(ts.len(), 27);
        assert_eq!(&ts[4..5], "-");
        assert_eq!(&ts[10..11], "T");
        assert!(ts.ends_with('Z'), "{ts}");
        assert!(
            lines[1].starts_with(r#"{"level":"warn","#)
                && lines[1].ends_with(
                    r#""msg":"sync failed","why":"periodic","error":"line one\nline two"}"#
                ),
            "{}",
            lines[1]
        );
    }
}
