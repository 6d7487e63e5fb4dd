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
//! Every event is exactly one line in both formats: newlines in values are escaped. Logging
//! never blocks the caller: lines are written by a thread of their own, and dropped and
//! counted when the output stalls ([`write`]).
//!
//! The work is shared by job: [`filter`] decides which events become lines, [`format`] turns
//! an event into its line, [`route`] opens klog's files and picks the ones a line goes to,
//! [`write`] hands lines to stderr and the files; [`stamp`] and [`quote`] are the pieces of a
//! line both formats share.

mod filter;
mod format;
mod quote;
mod route;
mod stamp;
mod write;

use std::io;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use tracing::Level;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::klog::KlogArgs;

pub use filter::ALWAYS;
pub use format::{JsonFields, JsonLines, KlogFields, KlogText, Lines, SpanFields};
pub use quote::{go_quote, json_quote};
pub use write::{LineWriter, QUEUE_BYTES, Sink, lines_dropped};

/// How long [`flush`] (and the end of [`Flush`]) waits for the writer at most: an output that
/// does not take lines must not hold up the exit.
pub const FLUSH_LIMIT: Duration = Duration::from_secs(1);

/// The installed sink, for [`flush`].
static INSTALLED: OnceLock<Sink> = OnceLock::new();

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

/// From this `-v` on, the libraries' debug lines are shown too (`rustls` writes three per TLS
/// connection).
pub const LIBRARY_DEBUG_FROM: i32 = 4;

/// The filter directives `-v` stands for: [`level_for_verbosity`] for every target, with the
/// `libraries` held at info below [`LIBRARY_DEBUG_FROM`], so that `-v=1` to `-v=3` show the
/// program's own debug lines without the libraries' per-connection chatter.
pub fn directives_for_verbosity(v: i32, libraries: &[&str]) -> String {
    let mut directives = level_for_verbosity(v).as_str().to_ascii_lowercase();
    if level_for_verbosity(v) == Level::DEBUG && v < LIBRARY_DEBUG_FROM {
        for library in libraries {
            directives.push_str(&format!(",{library}=info"));
        }
    }
    directives
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
    /// The targets of the program's own lines (its crates' names): the directives must select
    /// some of them.
    pub own_targets: &'a [&'a str],
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("invalid log filter {directives:?}: {problem}")]
    Filter { directives: String, problem: String },
    #[error("cannot open log file {}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the log writer thread")]
    Thread(#[source] io::Error),
    #[error("a logger is already installed")]
    AlreadyInstalled(#[source] tracing_subscriber::util::TryInitError),
}

/// Installs the global subscriber: lines in `format`, routed as klog routes them, written by a
/// thread of their own. Keep the returned guard until the end of `main`: dropping it writes the
/// last lines (for at most [`FLUSH_LIMIT`]).
pub fn init(settings: Settings<'_>) -> Result<Flush, InitError> {
    let filter = filter::parse(settings.directives, settings.own_targets)?;
    let sink = Sink::open(settings)?;
    let installed = sink.clone();
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
    result.map_err(InitError::AlreadyInstalled)?;
    let _ = INSTALLED.set(installed);
    Ok(Flush(()))
}

/// Waits until the lines logged so far are written, for at most [`FLUSH_LIMIT`]: before the
/// process exits other than by returning from `main`.
pub fn flush() {
    if let Some(sink) = INSTALLED.get() {
        sink.flush(FLUSH_LIMIT);
    }
}

/// Writes the last lines when dropped, at the end of `main` ([`flush`]).
#[derive(Debug)]
#[must_use = "the last lines are written when the guard is dropped"]
pub struct Flush(());

impl Drop for Flush {
    fn drop(&mut self) {
        flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn libraries_speak_up_from_verbosity_4() {
        let libraries = ["rustls", "h2"];
        for (v, want) in [
            (-1, "info"),
            (0, "info"),
            (1, "debug,rustls=info,h2=info"),
            (3, "debug,rustls=info,h2=info"),
            (4, "debug"),
            (5, "trace"),
        ] {
            assert_eq!(directives_for_verbosity(v, &libraries), want, "{v}");
        }
        assert_eq!(directives_for_verbosity(2, &[]), "debug");
    }
}
