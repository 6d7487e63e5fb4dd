// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The binary's edge: flags, logging, signals, exit codes; the rest lives in the library.
//!
//! Exit codes: 0 done (and `--help`, `--version`), 1 a runtime failure, 2 a usage error (an
//! unknown flag or a bad value, printed with the usage hint, as pflag does).

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Context as _;
use common::klog::KlogArgs;
use common::logging::{self, Settings};
use pod_webhook::Webhook;
use pod_webhook::cli::Cli;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

const PROGRAM: &str = "apiserver-proxy-pod-webhook";

/// The libraries whose debug lines need `-v=4` or more (rustls writes three per connection).
const LIBRARIES: &[&str] = &["rustls", "tokio_rustls", "h2", "hyper", "hyper_util"];

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let mut cli = match Cli::parse_argv(&argv) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    // RUST_LOG takes `level` or `target=level,...` directives, as env_logger's simple form.
    let v = cli.verbosity.v;
    let directives = std::env::var("RUST_LOG")
        .unwrap_or_else(|_| logging::directives_for_verbosity(v, LIBRARIES));
    // Dropped last: the final lines are written before the exit.
    let _logs = match logging::init(Settings {
        klog: &KlogArgs::with_verbosity(v),
        format: cli.logging_format,
        program: PROGRAM,
        version: pod_webhook::VERSION,
        directives: &directives,
        own_targets: &["pod_webhook", "apiserver_proxy_pod_webhook", "common"],
    }) {
        Ok(flush) => flush,
        Err(error) => {
            eprintln!("error: {}", common::error_chain(&error));
            return ExitCode::FAILURE;
        }
    };
    let positional = std::mem::take(&mut cli.positional);
    if !positional.is_empty() {
        warn!(
            arguments = positional.join(" "),
            "ignoring positional arguments, as the Go binary did"
        );
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(name: logging::ALWAYS, "{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let config = cli.into_config();
        let webhook = Webhook::bind(config)
            .await
            .context("cannot start the webhook server")?;
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM received"),
                _ = int.recv() => info!("SIGINT received"),
            }
            // A second signal stops at once.
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
                warn!("second signal: exiting without draining");
                logging::flush();
                std::process::exit(1);
            });
        };
        webhook.serve(shutdown).await?;
        Ok(())
    })
}
