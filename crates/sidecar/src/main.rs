// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The binary's edge: flags, logging, signals, exit codes; the rest lives in the library.
//!
//! Exit codes: 0 done (and `--help`, `--version`), 1 a runtime failure, 2 a usage error (an
//! unknown flag or a bad value, printed with the usage hint, as pflag does; a `RUST_LOG` that
//! is refused), 128 + the signal when a signal cuts a one-shot run or a cleanup short.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Context;
use common::klog::KlogArgs;
use common::logging::{self, LogFormat, Settings};
use sidecar::cli::{Args, Config};
use sidecar::error_chain;
use sidecar::run::{self, Outcome, Stop};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{debug, error, warn};

const PROGRAM: &str = "apiserver-proxy-sidecar";

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let start = match Start::parse(&argv) {
        Ok(start) => start,
        Err(error) => return usage(&error),
    };
    // Dropped last: the final lines are written before the exit.
    let _logs = match init_logging(&start.klog, start.format) {
        Ok(flush) => flush,
        Err(error) => {
            eprintln!("error: {}", error_chain(&error));
            // A refused RUST_LOG is a bad value, found before anything is touched.
            return match error {
                logging::InitError::Filter { .. } => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            };
        }
    };
    if !start.positional.is_empty() {
        warn!(
            arguments = start.positional.join(" "),
            "ignoring positional arguments, as the Go binary did"
        );
    }
    for flag in start.without_effect {
        debug!(flag, "accepted for compatibility; it has no effect here");
    }
    exit_code(run(start.config))
}

/// The command line, taken apart.
struct Start {
    config: Config,
    klog: KlogArgs,
    format: LogFormat,
    positional: Vec<String>,
    without_effect: Vec<&'static str>,
}

impl Start {
    fn parse(argv: &[OsString]) -> Result<Start, clap::Error> {
        let parsed = Args::parse_argv(argv)?;
        let mut args = parsed.args;
        let klog = args.klog.clone();
        let format = args.logging_format;
        let positional = std::mem::take(&mut args.positional);
        let config = args.into_config().map_err(Args::usage_error)?;
        Ok(Start {
            config,
            klog,
            format,
            positional,
            without_effect: parsed.without_effect,
        })
    }
}

/// Logging as `-v`, the klog flags and `--logging-format` ask.
fn init_logging(klog: &KlogArgs, format: LogFormat) -> Result<logging::Flush, logging::InitError> {
    // RUST_LOG takes `level` or `target=level,...` directives, as env_logger's simple form.
    // netlink-proto's own warnings (a full notification buffer) are handled and reported here.
    let level = logging::level_for_verbosity(klog.verbosity.v)
        .as_str()
        .to_ascii_lowercase();
    let directives =
        std::env::var("RUST_LOG").unwrap_or_else(|_| format!("{level},netlink_proto=error"));
    logging::init(Settings {
        klog,
        format,
        program: PROGRAM,
        version: sidecar::VERSION,
        directives: &directives,
        own_targets: &["sidecar", "apiserver_proxy_sidecar", "common"],
    })
}

/// Runs the sidecar on a runtime of its own, stopped by SIGTERM and SIGINT.
fn run(config: Config) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let stops = forward_signals().context("cannot watch SIGTERM and SIGINT")?;
        anyhow::Ok(run::run(config, stops).await?)
    })
}

/// The exit code of a run, with the failures logged (whatever `RUST_LOG` says).
fn exit_code(outcome: anyhow::Result<Outcome>) -> ExitCode {
    let fatal = |message: String| {
        error!(name: logging::ALWAYS, "{message}");
        ExitCode::FAILURE
    };
    match outcome {
        Ok(Outcome::NotInPlace(errors)) => fatal(format!("not everything is in place: {errors}")),
        Ok(Outcome::CleanupIncomplete(errors)) => fatal(format!("cleanup incomplete: {errors}")),
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(error) => fatal(error_chain(error.as_ref())),
    }
}

/// Prints a usage error with the usage hint (exit code 2), or the help or version (exit 0).
fn usage(error: &clap::Error) -> ExitCode {
    let _ = error.print();
    ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2))
}

/// SIGTERM and SIGINT as stop requests, each time they arrive.
fn forward_signals() -> std::io::Result<mpsc::Receiver<Stop>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (sender, stops) = mpsc::channel(2);
    tokio::spawn(async move {
        loop {
            let stop = tokio::select! {
                _ = term.recv() => Stop::SIGTERM,
                _ = int.recv() => Stop::SIGINT,
            };
            if sender.send(stop).await.is_err() {
                return;
            }
        }
    });
    Ok(stops)
}
