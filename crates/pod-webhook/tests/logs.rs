// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The binary's logs: `RUST_LOG` cannot silence why it stopped and is refused when it selects
//! none of its lines.

use test_support::webhook as common;

use std::process::{Command, Stdio};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_apiserver-proxy-pod-webhook");

/// The binary on 127.0.0.1 (a free port) with `certs` and `extra` flags; `RUST_LOG` as given
/// (unset for `None`).
fn command(certs: &Certs, extra: &[&str], rust_log: Option<&str>) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["--apiserver-fqdn=foo.bar.", "--host=127.0.0.1", "--port=0"])
        .arg("--cert-dir")
        .arg(certs.dir.path())
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    command
}

/// A filter that would show none of the webhook's lines stops the start with the reason, before
/// anything else can fail unseen (here the certificate, which is missing).
#[test]
fn rust_log_that_selects_none_of_its_lines_is_refused() {
    let certs = Certs::new();
    for (filter, problem) in [
        // A typo'd crate, the binary's name for its crate's.
        (
            "pod-webhook=debug",
            "it selects none of this program's lines",
        ),
        (
            "apiserver-proxy-pod-webhook=debug",
            "it selects none of this program's lines",
        ),
        ("rustls=debug", "it selects none of this program's lines"),
        ("nonesuch", "it selects none of this program's lines"),
        ("pod_webhook=off", "it selects none of this program's lines"),
        (",", "it holds no directive"),
        (
            "info,pod_webhook=loud",
            "directive \"pod_webhook=loud\": error parsing level filter",
        ),
    ] {
        let output = command(&certs, &["--cert-name=missing.crt"], Some(filter))
            .output()
            .expect("run the binary");
        let said = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{filter}: {said}");
        assert!(
            said.contains(&format!("invalid log filter {filter:?}")) && said.contains(problem),
            "{filter}: {said}"
        );
    }
}

#[test]
fn a_failed_start_is_shown_whatever_rust_log_says() {
    let certs = Certs::new();
    // Off, libraries and levels, a trailing comma, an unknown target beside a level.
    for filter in [
        "off",
        "rustls=debug,error",
        "h2=trace,warn",
        "info,",
        "nonesuch=debug,error",
    ] {
        for format in ["json", "text"] {
            let output = command(
                &certs,
                &[
                    "--cert-name=missing.crt",
                    &format!("--logging-format={format}"),
                ],
                Some(filter),
            )
            .output()
            .expect("run the binary");
            let said = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{filter}: {said}");
            assert!(
                said.contains("cannot start the webhook server: cannot read certificate")
                    && said.contains("missing.crt"),
                "{filter} {format}: {said:?}"
            );
        }
    }
}
