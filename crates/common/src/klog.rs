// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! klog v2's command-line flags, with klog's syntaxes and defaults, and the pure decision of
//! where a line of each severity goes ([`KlogArgs::route`]).
//!
//! The flags that decide where logs go and what a line looks like (`--logtostderr`,
//! `--alsologtostderr`, `--stderrthreshold`, `--alsologtostderrthreshold`,
//! `--legacy_stderr_threshold_behavior`, `--log_file`, `--log_dir`, `--one_output`,
//! `--skip_headers`, `--skip_log_headers`, `--add_dir_header`, `-v`) act as in klog; the ones
//! that tune klog internals (`--vmodule`, `--log_file_max_size`, `--log_backtrace_at`) are
//! checked for klog's syntax and otherwise ignored, and `--help` says so.

use std::path::PathBuf;

use clap::ArgAction;
use clap::parser::{ArgMatches, ValueSource};

use crate::goflag;

/// A klog severity: 0 INFO, 1 WARNING, 2 ERROR, 3 FATAL. klog takes any integer as a
/// threshold, so a value above 3 means "none" and one below 0 means "all".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Severity(pub i32);

impl Severity {
    pub const INFO: Severity = Severity(0);
    pub const WARNING: Severity = Severity(1);
    pub const ERROR: Severity = Severity(2);
    pub const FATAL: Severity = Severity(3);

    /// The severities a line can have, in klog's order.
    pub const ALL: [Severity; 4] = [
        Severity::INFO,
        Severity::WARNING,
        Severity::ERROR,
        Severity::FATAL,
    ];

    /// klog's name for it, as in its file names (`INFO`, `WARNING`, `ERROR`, `FATAL`).
    pub fn name(self) -> &'static str {
        match self.0 {
            i32::MIN..=0 => "INFO",
            1 => "WARNING",
            2 => "ERROR",
            _ => "FATAL",
        }
    }

    /// The header's letter (`I`, `W`, `E`, `F`).
    pub fn letter(self) -> char {
        match self.0 {
            i32::MIN..=0 => 'I',
            1 => 'W',
            2 => 'E',
            _ => 'F',
        }
    }

    /// The severity of a `tracing` level: debug and trace lines are klog's V(n) info lines.
    pub fn of_level(level: &tracing::Level) -> Severity {
        match *level {
            tracing::Level::ERROR => Severity::ERROR,
            tracing::Level::WARN => Severity::WARNING,
            _ => Severity::INFO,
        }
    }
}

/// Parses a severity as klog does: a name in any case, else any 32-bit integer.
pub fn parse_severity(text: &str) -> Result<Severity, String> {
    match text.to_ascii_uppercase().as_str() {
        "INFO" => Ok(Severity::INFO),
        "WARNING" => Ok(Severity::WARNING),
        "ERROR" => Ok(Severity::ERROR),
        "FATAL" => Ok(Severity::FATAL),
        _ => text.parse::<i32>().map(Severity).map_err(|_| {
            format!("invalid severity {text:?}: use INFO, WARNING, ERROR, FATAL or an integer")
        }),
    }
}

/// Checks `--vmodule` as klog does: comma-separated `pattern=N`, N a non-negative integer.
pub fn parse_vmodule(text: &str) -> Result<String, String> {
    for part in text.split(',').filter(|part| !part.is_empty()) {
        let valid = match part.split_once('=') {
            Some((pattern, level)) => {
                !pattern.is_empty() && !level.contains('=') && level.parse::<u32>().is_ok()
            }
            None => false,
        };
        if !valid {
            return Err(format!(
                "syntax error in {part:?}: expect comma-separated list of filename=N"
            ));
        }
    }
    Ok(text.to_string())
}

/// Checks `--log_backtrace_at` as klog does: empty, `:0`, or `file.go:N`.
pub fn parse_trace_location(text: &str) -> Result<String, String> {
    if text.is_empty() || text == ":0" {
        return Ok(text.to_string());
    }
    match text.rsplit_once(':') {
        Some((file, line)) if !file.is_empty() && line.parse::<u32>().is_ok() => {
            Ok(text.to_string())
        }
        _ => Err(format!("syntax error in {text:?}: expect file.go:234")),
    }
}

/// klog's `-v`: the one flag of klog's that every binary here takes, declared once. A binary
/// that says more about it in its help changes the help of the arg with id [`Verbosity::ID`].
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Verbosity {
    /// number for the log level verbosity (0 info, 1-4 debug, 5+ trace).
    #[arg(
        short = 'v',
        long = "v",
        value_name = "LEVEL",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub v: i32,
}

impl Verbosity {
    /// The clap id of `-v`.
    pub const ID: &str = "v";
}

/// klog v2's flags. Bool flags take Go's forms (`--flag`, `--flag=false`, `--flag=0`, ...).
#[derive(Debug, Clone, clap::Args)]
pub struct KlogArgs {
    #[command(flatten)]
    pub verbosity: Verbosity,

    /// comma-separated list of pattern=N settings for file-filtered logging (syntax checked, no
    /// effect here).
    #[arg(long = "vmodule", value_name = "SPEC", default_value = "", value_parser = parse_vmodule)]
    pub vmodule: String,

    /// log to standard error instead of files.
    #[arg(long = "logtostderr", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true", value_parser = goflag::parse_bool,
          action = ArgAction::Set)]
    pub logtostderr: bool,

    /// log to standard error as well as files (no effect when --logtostderr=true).
    #[arg(long = "alsologtostderr", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_parser = goflag::parse_bool,
          action = ArgAction::Set)]
    pub alsologtostderr: bool,

    /// logs at or above this threshold go to stderr when --alsologtostderr=true and
    /// --legacy_stderr_threshold_behavior=false (no effect when --logtostderr=true).
    #[arg(long = "alsologtostderrthreshold", value_name = "SEVERITY", default_value = "0",
          value_parser = parse_severity, allow_negative_numbers = true)]
    pub alsologtostderrthreshold: Severity,

    /// logs at or above this threshold go to stderr when writing to files and stderr (no effect
    /// when --logtostderr=true or --alsologtostderr=true unless
    /// --legacy_stderr_threshold_behavior=false).
    #[arg(long = "stderrthreshold", value_name = "SEVERITY", default_value = "2",
          value_parser = parse_severity, allow_negative_numbers = true)]
    pub stderrthreshold: Severity,

    /// If true, stderrthreshold is ignored when logtostderr=true (legacy behavior). If false,
    /// stderrthreshold is honored even when logtostderr=true.
    #[arg(long = "legacy_stderr_threshold_behavior", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_value = "true", default_missing_value = "true",
          value_parser = goflag::parse_bool, action = ArgAction::Set)]
    pub legacy_stderr_threshold_behavior: bool,

    /// If non-empty, use this log file (no effect when --logtostderr=true).
    #[arg(long = "log_file", value_name = "PATH", default_value = "")]
    pub log_file: String,

    /// If non-empty, write log files in this directory (no effect when --logtostderr=true).
    #[arg(long = "log_dir", value_name = "DIR", default_value = "")]
    pub log_dir: String,

    /// Defines the maximum size a log file can grow to, in megabytes (accepted, no effect: files
    /// are not rotated).
    #[arg(long = "log_file_max_size", value_name = "MB", default_value_t = 1800)]
    pub log_file_max_size: u64,

    /// If true, only write logs to their native severity level (vs also writing to each lower
    /// severity level; no effect when --logtostderr=true).
    #[arg(long = "one_output", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_parser = goflag::parse_bool,
          action = ArgAction::Set)]
    pub one_output: bool,

    /// If true, avoid header prefixes in the log messages.
    #[arg(long = "skip_headers", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_parser = goflag::parse_bool,
          action = ArgAction::Set)]
    pub skip_headers: bool,

    /// If true, avoid headers when opening log files (no effect when --logtostderr=true).
    #[arg(long = "skip_log_headers", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_parser = goflag::parse_bool,
          action = ArgAction::Set)]
    pub skip_log_headers: bool,

    /// If true, adds the file directory to the header of the log messages.
    #[arg(long = "add_dir_header", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_parser = goflag::parse_bool,
          action = ArgAction::Set)]
    pub add_dir_header: bool,

    /// when logging hits line file:N, emit a stack trace (syntax checked, no effect here).
    #[arg(long = "log_backtrace_at", value_name = "FILE:N", default_value = ":0",
          value_parser = parse_trace_location)]
    pub log_backtrace_at: String,
}

/// The klog flags that only tune klog internals, by clap id and name.
const WITHOUT_EFFECT: [(&str, &str); 3] = [
    ("vmodule", "--vmodule"),
    ("log_file_max_size", "--log_file_max_size"),
    ("log_backtrace_at", "--log_backtrace_at"),
];

/// The klog flags the command line set that have no effect here.
pub fn without_effect(matches: &ArgMatches) -> Vec<&'static str> {
    WITHOUT_EFFECT
        .iter()
        .filter(|(id, _)| matches.value_source(id) == Some(ValueSource::CommandLine))
        .map(|(_, name)| *name)
        .collect()
}

/// Where log files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Files {
    /// No file.
    None,
    /// Every line to this one file (`--log_file`).
    Single(PathBuf),
    /// One file per severity in this directory (`--log_dir`, else the temporary directory),
    /// each with the lines of its severity and, unless `one_output`, of every higher one.
    PerSeverity { dir: PathBuf, one_output: bool },
}

/// Where lines go, as klog decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Lines at or above this severity are written to stderr.
    pub stderr_from: Severity,
    pub files: Files,
}

impl KlogArgs {
    /// klog's defaults with verbosity `v`: everything to stderr, no file, headers on. For a
    /// binary that has `-v` but not the rest of klog's flags.
    pub fn with_verbosity(v: i32) -> KlogArgs {
        // The defaults are the flags' own: an empty command line, parsed.
        let command = <KlogArgs as clap::Args>::augment_args(clap::Command::new("klog"));
        let defaults = command
            .try_get_matches_from(["klog"])
            .and_then(|matches| <KlogArgs as clap::FromArgMatches>::from_arg_matches(&matches));
        let mut klog = defaults.expect("klog's flags parse with their defaults");
        klog.verbosity.v = v;
        klog
    }

    /// Where lines go. With `--logtostderr` (the default) everything goes to stderr and no file
    /// is written; without it lines go to `--log_file`, else to files in `--log_dir` (else the
    /// temporary directory), and to stderr too with `--alsologtostderr` or at or above
    /// `--stderrthreshold`. `--legacy_stderr_threshold_behavior=false` makes the thresholds
    /// apply to stderr in every case.
    pub fn route(&self) -> Route {
        let legacy = self.legacy_stderr_threshold_behavior;
        if self.logtostderr {
            let stderr_from = if legacy {
                Severity(i32::MIN)
            } else {
                self.stderrthreshold
            };
            return Route {
                stderr_from,
                files: Files::None,
            };
        }
        let stderr_from = match (self.alsologtostderr, legacy) {
            (true, true) => Severity(i32::MIN),
            (true, false) => self.alsologtostderrthreshold.min(self.stderrthreshold),
            (false, _) => self.stderrthreshold,
        };
        let files = if !self.log_file.is_empty() {
            Files::Single(PathBuf::from(&self.log_file))
        } else {
            let dir = if self.log_dir.is_empty() {
                std::env::temp_dir()
            } else {
                PathBuf::from(&self.log_dir)
            };
            Files::PerSeverity {
                dir,
                one_output: self.one_output,
            }
        };
        Route { stderr_from, files }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{FromArgMatches, Parser};

    #[derive(Debug, Parser)]
    #[command(args_override_self = true)]
    struct Cli {
        #[command(flatten)]
        klog: KlogArgs,
    }

    #[test]
    fn with_verbosity_is_the_defaults() {
        let (parsed, _) = parse(&["-v=3"]).expect("parses");
        assert_eq!(
            format!("{:?}", KlogArgs::with_verbosity(3)),
            format!("{parsed:?}")
        );
    }

    fn parse(args: &[&str]) -> Result<(KlogArgs, Vec<&'static str>), String> {
        let argv = goflag::argv("test", args);
        let matches = <Cli as clap::CommandFactory>::command()
            .try_get_matches_from(argv)
            .map_err(|e| e.to_string())?;
        let cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
        Ok((cli.klog, without_effect(&matches)))
    }

    fn route(args: &[&str]) -> Route {
        parse(args).expect("valid flags").0.route()
    }

    const ALL: Severity = Severity(i32::MIN);

    #[test]
    fn routes_as_klog() {
        let tmp = std::env::temp_dir();
        let single = |path: &str| Files::Single(PathBuf::from(path));
        let dir = |path: &str, one_output| Files::PerSeverity {
            dir: PathBuf::from(path),
            one_output,
        };
        let cases: &[(&[&str], Severity, Files)] = &[
            (&[], ALL, Files::None),
            // --logtostderr=true (the default) ignores the files.
            (&["--log_file=/x.log"], ALL, Files::None),
            (&["--log_dir=/logs"], ALL, Files::None),
            (
                &["--log_file=/x.log", "--alsologtostderr"],
                ALL,
                Files::None,
            ),
            (&["--stderrthreshold=FATAL"], ALL, Files::None),
            (
                &[
                    "--stderrthreshold=WARNING",
                    "--legacy_stderr_threshold_behavior=false",
                ],
                Severity::WARNING,
                Files::None,
            ),
            (
                &["--logtostderr=false", "--log_file=/x.log"],
                Severity::ERROR,
                single("/x.log"),
            ),
            (
                &["--logtostderr=false", "--log_file=/x.log", "--log_dir=/d"],
                Severity::ERROR,
                single("/x.log"),
            ),
            (
                &[
                    "--logtostderr=false",
                    "--log_file=/x.log",
                    "--alsologtostderr",
                ],
                ALL,
                single("/x.log"),
            ),
            (
                &[
                    "--logtostderr=false",
                    "--log_file=/x.log",
                    "--stderrthreshold=0",
                ],
                Severity::INFO,
                single("/x.log"),
            ),
            (
                &[
                    "--logtostderr=false",
                    "--log_file=/x.log",
                    "--stderrthreshold=7",
                ],
                Severity(7),
                single("/x.log"),
            ),
            (
                &[
                    "--logtostderr=false",
                    "--log_file=/x.log",
                    "--alsologtostderr",
                    "--alsologtostderrthreshold=WARNING",
                    "--legacy_stderr_threshold_behavior=false",
                ],
                Severity::WARNING,
                single("/x.log"),
            ),
            (
                &["--logtostderr=false", "--log_dir=/d"],
                Severity::ERROR,
                dir("/d", false),
            ),
            (
                &["--logtostderr=false", "--log_dir=/d", "--one_output"],
                Severity::ERROR,
                dir("/d", true),
            ),
            (
                &["--logtostderr=false"],
                Severity::ERROR,
                Files::PerSeverity {
                    dir: tmp.clone(),
                    one_output: false,
                },
            ),
            // The last value wins.
            (
                &["--logtostderr=false", "--log_file=/x.log", "--logtostderr"],
                ALL,
                Files::None,
            ),
        ];
        for (args, stderr_from, files) in cases {
            assert_eq!(
                route(args),
                Route {
                    stderr_from: *stderr_from,
                    files: files.clone()
                },
                "{args:?}"
            );
        }
    }

    #[test]
    fn severities_as_klog_parses_them() {
        for (text, want) in [
            ("INFO", Ok(Severity::INFO)),
            ("warning", Ok(Severity::WARNING)),
            ("Error", Ok(Severity::ERROR)),
            ("FATAL", Ok(Severity::FATAL)),
            ("2", Ok(Severity::ERROR)),
            ("10", Ok(Severity(10))),
            ("-1", Ok(Severity(-1))),
            ("LOUD", Err("invalid severity")),
            ("2.5", Err("invalid severity")),
        ] {
            match (parse_severity(text), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
                (Err(got), Err(needle)) => assert!(got.contains(needle), "{text}: {got}"),
                (got, _) => panic!("{text}: {got:?}"),
            }
        }
    }

    #[test]
    fn internal_flags_are_checked_then_reported_as_without_effect() {
        let (klog, ignored) = parse(&[
            "--vmodule=foo=3,bar*=1",
            "--log_backtrace_at=main.go:12",
            "--log_file_max_size=10",
            "--one_output",
            "--skip_headers",
            "-v=3",
        ])
        .expect("valid");
        assert_eq!(klog.verbosity.v, 3);
        assert!(klog.one_output && klog.skip_headers);
        assert_eq!(
            ignored,
            ["--vmodule", "--log_file_max_size", "--log_backtrace_at"]
        );
        assert!(parse(&[]).expect("valid").1.is_empty());
        for bad in [
            "--vmodule=foo",
            "--vmodule==3",
            "--vmodule=foo=x",
            "--log_backtrace_at=main.go",
            "--log_backtrace_at=main.go:x",
            "--stderrthreshold=LOUD",
            "--v=loud",
            "--log_file_max_size=-1",
            "--one_output=yes",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad}");
        }
        assert_eq!(parse(&["--v=-1"]).expect("valid").0.verbosity.v, -1);
    }
}
