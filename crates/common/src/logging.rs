// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Log lines in the two shapes Kubernetes log pipelines read, as `tracing-subscriber` event
//! formatters, and [`init`], which routes them the way klog does ([`KlogArgs::route`]).
//!
//! - [`KlogText`]: klog's text format, `I1130 14:39:27.273949   25085 reconcile.rs:38] "added
//!   address" ip="10.96.0.2"`: severity letter, month and day, time with microseconds (UTC),
//!   process id, file:line, the quoted message, then `key=value` pairs, strings quoted as Go's
//!   `strconv.Quote` does.
//! - [`JsonLines`]: one JSON object per line, as controller-runtime's zap logger writes them:
//!   `{"level":"info","ts":"2026-11-30T14:39:27.273949Z","logger":"…","msg":"…",…fields}`.
//!
//! Every event is exactly one line in both formats: newlines in values are escaped.

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::klog::{Files, KlogArgs, Route, Severity};

/// `--logging-format`, the Kubernetes components' flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// klog's text format.
    Text,
    /// One JSON object per line (controller-runtime's schema).
    Json,
}

/// The `tracing` level `-v` enables: 0 (and below) info, 1 to 4 debug, 5 and more trace.
pub fn level_for_verbosity(v: i32) -> Level {
    match v {
        i32::MIN..=0 => Level::INFO,
        1..=4 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// What [`init`] needs.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    pub klog: &'a KlogArgs,
    pub format: LogFormat,
    /// The program's name, for klog's file names (`NAME.HOST.USER.log.INFO.…`).
    pub program: &'a str,
    /// The program's version, for the header of klog's files.
    pub version: &'a str,
    /// `tracing` filter directives (`info`, `debug,netlink_proto=error`, ...).
    pub directives: &'a str,
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("invalid log filter {directives:?}")]
    Filter {
        directives: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot open log file {}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("a logger is already installed")]
    AlreadyInstalled(#[source] tracing_subscriber::util::TryInitError),
}

/// Installs the global subscriber: lines in `format`, routed as klog routes them.
pub fn init(settings: Settings<'_>) -> Result<(), InitError> {
    let filter: Targets = settings
        .directives
        .parse()
        .map_err(|source| InitError::Filter {
            directives: settings.directives.to_string(),
            source,
        })?;
    let sink = Sink::open(settings)?;
    let klog = settings.klog;
    // One layer type for both formats: a second instantiation of the fmt layer would grow the
    // sidecar's binary, and with it its resident set.
    let (events, fields) = match settings.format {
        LogFormat::Text => (
            Lines::Klog(KlogText {
                skip_headers: klog.skip_headers,
                add_dir_header: klog.add_dir_header,
                pid: std::process::id(),
            }),
            SpanFields::Klog(KlogFields),
        ),
        LogFormat::Json => (Lines::Json(JsonLines), SpanFields::Json(JsonFields)),
    };
    let result = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .event_format(events)
                .fmt_fields(fields)
                .with_writer(sink),
        )
        .with(filter)
        .try_init();
    result.map_err(InitError::AlreadyInstalled)
}

// ---------------------------------------------------------------------------------------------
// Time

/// A UTC timestamp, written in the shapes klog and zap use.
struct Stamp(time::OffsetDateTime);

impl Stamp {
    fn now() -> Stamp {
        Stamp(time::OffsetDateTime::now_utc())
    }

    /// klog's `mmdd hh:mm:ss.uuuuuu`.
    fn klog(&self, out: &mut impl fmt::Write) -> fmt::Result {
        self.month_day(out, "")?;
        out.write_char(' ')?;
        self.time(out, ":")?;
        self.micros(out)
    }

    /// RFC 3339 with microseconds, `2026-11-30T14:39:27.273949Z`.
    fn rfc3339(&self, out: &mut impl fmt::Write) -> fmt::Result {
        self.date(out, "-")?;
        out.write_char('T')?;
        self.time(out, ":")?;
        self.micros(out)?;
        out.write_char('Z')
    }

    /// The time a klog file was created, in its header: `2026/11/30 14:39:27`.
    fn file_header(&self, out: &mut impl fmt::Write) -> fmt::Result {
        self.date(out, "/")?;
        out.write_char(' ')?;
        self.time(out, ":")
    }

    /// The start time in klog's file names: `20261130-143927`.
    fn file_name(&self, out: &mut impl fmt::Write) -> fmt::Result {
        self.date(out, "")?;
        out.write_char('-')?;
        self.time(out, "")
    }

    fn date(&self, out: &mut impl fmt::Write, separator: &str) -> fmt::Result {
        write!(out, "{:04}{separator}", self.0.year())?;
        self.month_day(out, separator)
    }

    fn month_day(&self, out: &mut impl fmt::Write, separator: &str) -> fmt::Result {
        let t = &self.0;
        write!(out, "{:02}{separator}{:02}", u8::from(t.month()), t.day())
    }

    fn time(&self, out: &mut impl fmt::Write, separator: &str) -> fmt::Result {
        let t = &self.0;
        write!(
            out,
            "{:02}{separator}{:02}{separator}{:02}",
            t.hour(),
            t.minute(),
            t.second()
        )
    }

    fn micros(&self, out: &mut impl fmt::Write) -> fmt::Result {
        write!(out, ".{:06}", self.0.microsecond())
    }
}

// ---------------------------------------------------------------------------------------------
// Quoting

/// Writes `text` quoted as Go's `strconv.Quote` does: `"` and `\` escaped, control characters
/// as `\n`, `\t`, ... or `\xNN` / `\uNNNN`, printable characters as they are.
pub fn go_quote(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in text.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            '\u{7}' => out.write_str("\\a")?,
            '\u{8}' => out.write_str("\\b")?,
            '\u{c}' => out.write_str("\\f")?,
            '\u{b}' => out.write_str("\\v")?,
            c if (c as u32) < 0x20 || c == '\u{7f}' => write!(out, "\\x{:02x}", c as u32)?,
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' || c == '\u{feff}' => {
                write!(out, "\\u{:04x}", c as u32)?
            }
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

/// Writes `text` as a JSON string.
pub fn json_quote(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in text.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

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

// ---------------------------------------------------------------------------------------------
// Destinations

/// Where formatted lines go: stderr and files, as a [`Route`] says.
#[derive(Debug, Clone)]
pub struct Sink {
    stderr_from: Severity,
    files: Option<Arc<Mutex<FileSet>>>,
}

#[derive(Debug)]
enum FileSet {
    Single(File),
    PerSeverity {
        dir: PathBuf,
        one_output: bool,
        /// INFO, WARNING, ERROR, FATAL; opened on first use.
        open: [Option<File>; 4],
        names: FileNames,
    },
}

/// klog's file names: `PROGRAM.HOST.USER.log.SEVERITY.YYYYMMDD-HHMMSS.PID`, with a symlink
/// `PROGRAM.SEVERITY` to the newest.
#[derive(Debug)]
struct FileNames {
    program: String,
    host: String,
    user: String,
    started: String,
    pid: u32,
    /// The header written at the top of each file, empty with `--skip_log_headers`.
    header: String,
}

impl FileNames {
    fn name(&self, severity: Severity) -> String {
        format!(
            "{}.{}.{}.log.{}.{}.{}",
            self.program,
            self.host,
            self.user,
            severity.name(),
            self.started,
            self.pid
        )
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknownhost".to_string())
}

fn user_name() -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self").map(|meta| meta.uid()) {
        Ok(0) => "root".to_string(),
        _ => std::env::var("USER")
            .ok()
            .filter(|user| !user.is_empty() && !user.contains(['/', '.']))
            .unwrap_or_else(|| "unknownuser".to_string()),
    }
}

/// klog's file header, for a file created at `created`.
fn file_header(program: &str, version: &str, host: &str, created: &Stamp) -> String {
    let mut created_at = String::new();
    // Writing to a String cannot fail.
    let _ = created.file_header(&mut created_at);
    format!(
        "Log file created at: {created_at}\nRunning on machine: {host}\n\
         Binary: {program} {version} (Rust)\n\
         Log line format: [IWEF]mmdd hh:mm:ss.uuuuuu threadid file:line] msg\n"
    )
}

fn open_append(path: &Path, header: &str) -> Result<File, InitError> {
    let file_error = |source| InitError::File {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(file_error)?;
    file.write_all(header.as_bytes()).map_err(file_error)?;
    Ok(file)
}

impl FileSet {
    fn open(route: &Route, settings: Settings<'_>) -> Result<Option<FileSet>, InitError> {
        let header = |host: &str| {
            if settings.klog.skip_log_headers || settings.format == LogFormat::Json {
                String::new()
            } else {
                file_header(settings.program, settings.version, host, &Stamp::now())
            }
        };
        match &route.files {
            Files::None => Ok(None),
            Files::Single(path) => Ok(Some(FileSet::Single(open_append(
                path,
                &header(&host_name()),
            )?))),
            Files::PerSeverity { dir, one_output } => {
                let host = host_name();
                let mut started = String::new();
                // Writing to a String cannot fail.
                let _ = Stamp::now().file_name(&mut started);
                let mut set = FileSet::PerSeverity {
                    dir: dir.clone(),
                    one_output: *one_output,
                    open: [None, None, None, None],
                    names: FileNames {
                        program: settings.program.to_string(),
                        header: header(&host),
                        host,
                        user: user_name(),
                        started,
                        pid: std::process::id(),
                    },
                };
                // klog creates the INFO file with the first file of any severity; creating it
                // now reports an unusable directory at start instead of losing lines.
                set.file(Severity::INFO)?;
                Ok(Some(set))
            }
        }
    }

    /// The file of one severity (of every severity for `Single`), opened when first needed.
    fn file(&mut self, severity: Severity) -> Result<&mut File, InitError> {
        match self {
            FileSet::Single(file) => Ok(file),
            FileSet::PerSeverity {
                dir, open, names, ..
            } => {
                let index = severity.0.clamp(0, 3) as usize;
                if open[index].is_none() {
                    let name = names.name(severity);
                    let file = open_append(&dir.join(&name), &names.header)?;
                    let link = dir.join(format!("{}.{}", names.program, severity.name()));
                    let _ = std::fs::remove_file(&link);
                    let _ = std::os::unix::fs::symlink(&name, &link);
                    open[index] = Some(file);
                }
                open[index].as_mut().ok_or_else(|| InitError::File {
                    path: dir.clone(),
                    source: io::Error::other("not open"),
                })
            }
        }
    }

    fn write(&mut self, severity: Severity, line: &[u8]) {
        let targets: Vec<Severity> = match self {
            FileSet::Single(_) => vec![Severity::INFO],
            FileSet::PerSeverity { one_output, .. } => {
                let own = Severity(severity.0.clamp(0, 3));
                if *one_output {
                    vec![own]
                } else {
                    Severity::ALL.into_iter().filter(|s| *s <= own).collect()
                }
            }
        };
        for target in targets {
            match self.file(target) {
                Ok(file) => {
                    let _ = file.write_all(line);
                }
                Err(error) => {
                    // As klog does, the line still appears somewhere.
                    let mut stderr = io::stderr().lock();
                    let _ = stderr.write_all(line);
                    let _ = writeln!(stderr, "log: {}", crate::error_chain(&error));
                }
            }
        }
    }
}

impl Sink {
    fn open(settings: Settings<'_>) -> Result<Sink, InitError> {
        let route = settings.klog.route();
        let files = FileSet::open(&route, settings)?.map(|set| Arc::new(Mutex::new(set)));
        Ok(Sink {
            stderr_from: route.stderr_from,
            files,
        })
    }

    fn write_line(&self, severity: Severity, line: &[u8]) {
        if severity >= self.stderr_from {
            let _ = io::stderr().lock().write_all(line);
        }
        if let Some(files) = &self.files {
            let mut files = match files.lock() {
                Ok(files) => files,
                Err(poisoned) => poisoned.into_inner(),
            };
            files.write(severity, line);
        }
    }
}

/// One event's writer: the formatter writes the whole line at once.
#[derive(Debug)]
pub struct LineWriter<'a> {
    sink: &'a Sink,
    severity: Severity,
}

impl io::Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sink.write_line(self.severity, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            sink: self,
            severity: Severity::INFO,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter<'a> {
        LineWriter {
            sink: self,
            severity: Severity::of_level(meta.level()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quoting() {
        for (text, want) in [
            ("added address", r#""added address""#),
            ("a \"b\" \\ c", r#""a \"b\" \\ c""#),
            ("two\nlines\r\t", r#""two\nlines\r\t""#),
            ("\u{0}\u{1b}\u{7f}", r#""\x00\x1b\x7f""#),
            ("\u{85}\u{2028}", r#""\u0085\u2028""#),
            ("ünï 🦀", r#""ünï 🦀""#),
        ] {
            let mut out = String::new();
            go_quote(&mut out, text).expect("format");
            assert_eq!(out, want, "{text:?}");
        }
    }

    #[test]
    fn json_quoting() {
        for (text, want) in [
            ("plain", r#""plain""#),
            ("a \"b\" \\", r#""a \"b\" \\""#),
            ("x\ny\u{1}", r#""x\ny\u0001""#),
        ] {
            let mut out = String::new();
            json_quote(&mut out, text).expect("format");
            assert_eq!(out, want, "{text:?}");
        }
    }

    #[test]
    fn timestamps_in_every_shape() {
        // 2026-03-04 05:06:07.000089 UTC: every field padded.
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(1_772_600_767_000_089_000)
            .expect("a time");
        let stamp = Stamp(at);
        let shown = |write: fn(&Stamp, &mut String) -> fmt::Result| {
            let mut out = String::new();
            write(&stamp, &mut out).expect("format");
            out
        };
        assert_eq!(shown(|s, out| s.klog(out)), "0304 05:06:07.000089");
        assert_eq!(
            shown(|s, out| s.rfc3339(out)),
            "2026-03-04T05:06:07.000089Z"
        );
        assert_eq!(shown(|s, out| s.file_header(out)), "2026/03/04 05:06:07");
        assert_eq!(shown(|s, out| s.file_name(out)), "20260304-050607");
        assert_eq!(
            file_header("prog", "v1", "node-1", &stamp),
            "Log file created at: 2026/03/04 05:06:07\nRunning on machine: node-1\n\
             Binary: prog v1 (Rust)\n\
             Log line format: [IWEF]mmdd hh:mm:ss.uuuuuu threadid file:line] msg\n"
        );
    }

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

    #[test]
    fn verbosity_levels() {
        for (v, level) in [
            (-1, Level::INFO),
            (0, Level::INFO),
            (1, Level::DEBUG),
            (4, Level::DEBUG),
            (5, Level::TRACE),
            (9, Level::TRACE),
        ] {
            assert_eq!(level_for_verbosity(v), level, "{v}");
        }
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
        // I1130 14:39:27.273949      42 logging.rs:600] "added address" ...
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
        assert!(header.contains("      42 logging.rs:"), "{header}");
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
                r#"","logger":"common::logging::tests","msg":"added address","why":"periodic","ip":"10.96.0.2","interface":"lo","port":443,"up":true}"#
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
