// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The binary's edge: flags, logging, signals, exit codes; the rest lives in the library.

use std::process::ExitCode;

use anyhow::Context;
use sidecar::cli::{Args, KlogArgs};
use sidecar::error_chain;
use sidecar::run::{self, Outcome, Stop};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{debug, error};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() -> ExitCode {
    let (args, ignored) = match Args::parse_from_with_ignored(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(error) => {
            // --help and --version print and exit 0; every bad flag exits 1 like the original.
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Err(error) = init_logging(&args.klog) {
        eprintln!("error: {error:#}");
        return ExitCode::FAILURE;
    }
    for flag in ignored {
        debug!(flag, "accepted for compatibility; it has no effect here");
    }
    let logs_to_file_only = !args.klog.log_file.is_empty() && !args.klog.also_log_to_stderr;
    // A fatal error always reaches stderr, where an init container's failure is looked for.
    let fatal = |message: String| {
        error!("{message}");
        if logs_to_file_only {
            eprintln!("error: {message}");
        }
        ExitCode::FAILURE
    };
    let config = match args.into_config() {
        Ok(config) => config,
        Err(error) => return fatal(error.to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fatal(format!("cannot start the runtime: {error}")),
    };
    let outcome = runtime.block_on(async {
        let stops = forward_signals().context("cannot watch SIGTERM and SIGINT")?;
        anyhow::Ok(run::run(config, stops).await?)
    });
    match outcome {
        Ok(Outcome::NotInPlace(errors)) => fatal(format!("not everything is in place: {errors}")),
        Ok(Outcome::CleanupIncomplete(errors)) => fatal(format!("cleanup incomplete: {errors}")),
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(error) => fatal(error_chain(error.as_ref())),
    }
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

fn init_logging(klog: &KlogArgs) -> anyhow::Result<()> {
    let level = match klog.verbosity {
        0 => "info",
        1..=4 => "debug",
        _ => "trace",
    };
    // RUST_LOG takes `level` or `target=level,...` directives, as env_logger's simple form.
    // netlink-proto's own warnings (a full notification buffer) are handled and reported here.
    let directives =
        std::env::var("RUST_LOG").unwrap_or_else(|_| format!("{level},netlink_proto=error"));
    let filter: Targets = directives
        .parse()
        .with_context(|| format!("invalid RUST_LOG={directives:?}"))?;
    let writer = if klog.log_file.is_empty() {
        BoxMakeWriter::new(std::io::stderr)
    } else {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&klog.log_file)
            .with_context(|| format!("cannot open --log_file={}", klog.log_file))?;
        let file = std::sync::Arc::new(file);
        if klog.also_log_to_stderr {
            BoxMakeWriter::new(file.and(std::io::stderr))
        } else {
            BoxMakeWriter::new(file)
        }
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false),
        )
        .with(filter)
        .init();
    Ok(())
}
