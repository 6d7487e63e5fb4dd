// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use sidecar::cli::{Args, Config, KlogArgs};
use sidecar::daemon;
use sidecar::events::KernelEvents;
use sidecar::metrics::{self, Metrics};
use sidecar::netif::Netif;
use sidecar::reconcile::Sidecar;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{debug, error, info};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
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
    for flag in args.klog.ignored() {
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
    match runtime.block_on(run(config)) {
        Ok(code) => code,
        Err(error) => fatal(format!("{error:#}")),
    }
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

/// A signal that stops the sidecar.
#[derive(Debug, Clone, Copy)]
struct Stop {
    name: &'static str,
    /// 128 + the signal's number, as a shell reports a process the signal killed.
    exit_code: u8,
}

/// Completes on the first SIGTERM or SIGINT.
async fn terminated(
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> Stop {
    tokio::select! {
        _ = term.recv() => Stop { name: "SIGTERM", exit_code: 143 },
        _ = int.recv() => Stop { name: "SIGINT", exit_code: 130 },
    }
}

async fn run(config: Config) -> anyhow::Result<ExitCode> {
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let metrics = Arc::new(Metrics::new(
        daemon::stale_after(&config),
        config.setup_iptables,
    ));
    if let Some(address) = config.metrics_bind_address {
        let server = metrics::serve(address, metrics.clone())
            .await
            .with_context(|| format!("cannot listen on --metrics-bind-address={address}"))?;
        tokio::spawn(server);
        info!(%address, "serving /healthz and /metrics");
    }
    let netif = Netif::connect()?;
    let events = if config.daemon && config.watch_kernel_events {
        KernelEvents::subscribe(config.ip)?
    } else {
        KernelEvents::none()
    };
    let daemon = config.daemon;
    let cleanup = config.cleanup;
    info!(
        ip = %config.ip, interface = config.interface, port = config.port,
        setup_iptables = config.setup_iptables, daemon, cleanup,
        version = sidecar::VERSION, "starting"
    );
    if daemon {
        daemon::announce(&config);
    }
    let mut sidecar = Sidecar::new(config, netif, metrics);

    if !daemon {
        // An init container must stop promptly: a signal abandons the sync (which kills a
        // running iptables child and frees the lock).
        return tokio::select! {
            result = sidecar.sync() => match result {
                Ok(()) => {
                    info!("everything is in place");
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => Err(anyhow::anyhow!("not everything is in place: {errors}")),
            },
            signal = terminated(&mut term, &mut int) => {
                error!(signal = signal.name, "stopped before everything was in place");
                Ok(ExitCode::from(signal.exit_code))
            }
        };
    }

    let mut stop = None;
    daemon::run(&mut sidecar, events, async {
        stop = Some(terminated(&mut term, &mut int).await);
    })
    .await;
    info!(signal = stop.map(|stop| stop.name), cleanup, "stopping");
    if !cleanup {
        return Ok(ExitCode::SUCCESS);
    }
    // A second signal abandons the cleanup.
    tokio::select! {
        result = sidecar.teardown() => match result {
            Ok(()) => {
                info!("cleaned up");
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => Err(anyhow::anyhow!("cleanup incomplete: {errors}")),
        },
        second = terminated(&mut term, &mut int) => {
            error!(signal = second.name, "second signal: cleanup abandoned");
            Ok(ExitCode::from(second.exit_code))
        }
    }
}
