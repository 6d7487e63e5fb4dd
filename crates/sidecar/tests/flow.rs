// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The sidecar's life from start to exit (`sidecar::run::run`), stopped through its channel
//! instead of signals. Each test runs itself again inside a network namespace of its own (as
//! root), where the library talks to the real kernel.

use test_support::netns as support;

use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use sidecar::cli::Args;
use sidecar::run::{self, Outcome, Stop};
use support::block_on;
use tokio::sync::mpsc;

const IP: &str = "10.96.0.2";
/// Set in the copy of the test that runs inside the namespace: the xtables lock to use.
const INSIDE: &str = "SIDECAR_FLOW_TEST_LOCK";

/// Runs `body` inside a fresh namespace: this process re-runs the one test there.
fn in_namespace(test: &str, body: impl FnOnce(&str)) {
    support::in_namespace(test, INSIDE, body);
}

fn config(lock: &str, flags: &[&str]) -> sidecar::cli::Config {
    let lock = format!("--xtables-lock={lock}");
    let argv = ["apiserver-proxy-sidecar", "--ip-address", IP, &lock]
        .into_iter()
        .chain(flags.iter().copied());
    Args::try_parse_from(argv)
        .expect("flags")
        .into_config()
        .expect("config")
}

fn sh(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().expect(program);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn address_present() -> bool {
    sh("ip", &["-o", "addr", "show", "dev", "lo"]).contains(&format!(" {IP}/32 "))
}

fn rules_present() -> usize {
    sh("iptables-nft-save", &[]).matches(IP).count()
}

/// Another program holding the xtables lock for `seconds`; returns once it holds it.
/// Polls `check` on the runtime (the sidecar runs on the same thread) for up to 5 s.
async fn until(check: impl Fn() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < Duration::from_secs(5), "timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_one_shot_run_puts_everything_in_place_and_is_done() {
    in_namespace(
        "a_one_shot_run_puts_everything_in_place_and_is_done",
        |lock| {
            sh("ip", &["link", "set", "lo", "up"]);
            let (_stops, receiver) = mpsc::channel(1);
            let config = config(
                lock,
                &[
                    "--daemon=false",
                    "--setup-iptables",
                    "--iptables-backend=nft",
                ],
            );
            let outcome = block_on(run::run(config, receiver)).expect("start");
            assert!(matches!(outcome, Outcome::Done), "{outcome:?}");
            assert_eq!(outcome.exit_code(), 0);
            assert!(address_present());
            assert_eq!(rules_present(), 5);
        },
    );
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_one_shot_run_is_interrupted_by_a_stop() {
    in_namespace("a_one_shot_run_is_interrupted_by_a_stop", |lock| {
        let mut holder = support::hold_lock(std::path::Path::new(lock), "10");
        let (stops, receiver) = mpsc::channel(1);
        let config = config(
            lock,
            &[
                "--daemon=false",
                "--setup-iptables",
                "--iptables-backend=nft",
                "--xtables-lock-timeout=20s",
            ],
        );
        let started = Instant::now();
        let outcome = block_on(async {
            let run = tokio::spawn(run::run(config, receiver));
            tokio::time::sleep(Duration::from_millis(300)).await;
            stops.send(Stop::SIGTERM).await.expect("send");
            run.await.expect("join").expect("start")
        });
        let _ = holder.kill();
        let _ = holder.wait();
        assert!(
            matches!(outcome, Outcome::Interrupted(Stop::SIGTERM)),
            "{outcome:?}"
        );
        assert_eq!(outcome.exit_code(), 143);
        assert!(started.elapsed() < Duration::from_secs(2));
    });
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn the_daemon_stops_and_cleans_up() {
    in_namespace("the_daemon_stops_and_cleans_up", |lock| {
        let (stops, receiver) = mpsc::channel(1);
        let config = config(
            lock,
            &["--cleanup", "--setup-iptables", "--iptables-backend=nft"],
        );
        let outcome = block_on(async {
            let run = tokio::spawn(run::run(config, receiver));
            until(|| address_present() && rules_present() == 5).await;
            stops.send(Stop::SIGTERM).await.expect("send");
            run.await.expect("join").expect("start")
        });
        assert!(matches!(outcome, Outcome::Done), "{outcome:?}");
        assert!(!address_present());
        assert_eq!(rules_present(), 0);
    });
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn without_cleanup_the_daemon_leaves_everything() {
    in_namespace("without_cleanup_the_daemon_leaves_everything", |lock| {
        let (stops, receiver) = mpsc::channel(1);
        let config = config(lock, &["--setup-iptables", "--iptables-backend=nft"]);
        let outcome = block_on(async {
            let run = tokio::spawn(run::run(config, receiver));
            until(|| address_present() && rules_present() == 5).await;
            stops.send(Stop::SIGINT).await.expect("send");
            run.await.expect("join").expect("start")
        });
        assert!(matches!(outcome, Outcome::Done), "{outcome:?}");
        assert!(address_present());
        assert_eq!(rules_present(), 5);
    });
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_second_stop_abandons_the_cleanup() {
    in_namespace("a_second_stop_abandons_the_cleanup", |lock| {
        let (stops, receiver) = mpsc::channel(2);
        let config = config(
            lock,
            &[
                "--cleanup",
                "--setup-iptables",
                "--iptables-backend=nft",
                "--xtables-lock-timeout=30s",
            ],
        );
        let mut holder = None;
        let outcome = block_on(async {
            let run = tokio::spawn(run::run(config, receiver));
            until(|| address_present() && rules_present() == 5).await;
            // The cleanup needs the lock: it waits while another program holds it. Taken off
            // this thread: the run shares it and may hold the lock a moment longer.
            let lock = std::path::PathBuf::from(lock);
            let taken = tokio::task::spawn_blocking(move || support::hold_lock(&lock, "10"));
            holder = Some(taken.await.expect("hold the lock"));
            stops.send(Stop::SIGTERM).await.expect("send");
            tokio::time::sleep(Duration::from_millis(300)).await;
            // Should the run have ended already, its outcome says why below.
            let _ = stops.send(Stop::SIGINT).await;
            run.await.expect("join").expect("start")
        });
        if let Some(mut holder) = holder {
            let _ = holder.kill();
            let _ = holder.wait();
        }
        assert!(
            matches!(outcome, Outcome::CleanupAbandoned(Stop::SIGINT)),
            "{outcome:?}"
        );
        assert_eq!(outcome.exit_code(), 130);
        // Abandoned before anything was removed.
        assert_eq!(rules_present(), 5);
        assert!(address_present());
    });
}

#[test]
#[ignore = "needs root: runs in network namespaces (make test runs it)"]
fn a_port_in_use_keeps_it_from_starting() {
    in_namespace("a_port_in_use_keeps_it_from_starting", |lock| {
        sh("ip", &["link", "set", "lo", "up"]);
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = taken.local_addr().expect("address").to_string();
        let (_stops, receiver) = mpsc::channel(1);
        let flag = format!("--metrics-bind-address={address}");
        let error =
            block_on(run::run(config(lock, &[&flag]), receiver)).expect_err("the port is taken");
        assert_eq!(
            sidecar::error_chain(&error),
            format!(
                "cannot listen on --metrics-bind-address={address}: Address already in use (os error 98)"
            )
        );
        assert!(
            !address_present(),
            "nothing may be touched when it cannot start"
        );
    });
}
