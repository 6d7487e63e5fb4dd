// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The iptables side effects: read the rules with one `iptables-save`, change them with one
//! atomic `iptables-restore --noflush`, under the host's xtables lock.
//!
//! `iptables -C` is never used to test for a rule: before iptables 1.8.8 it misreports some
//! rules as missing, which piles up duplicates. The dump is read and compared instead.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::rules::{Plan, Rule, Ruleset};

/// How long an `iptables-save` outside the xtables lock may run before it counts as hung.
/// Commands run while holding the lock get `--xtables-lock-timeout` instead: no other iptables
/// user is made to wait on this process for longer than it would wait on them.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a busy xtables lock is tried again within the wait bound.
const LOCK_RETRY: Duration = Duration::from_millis(20);

/// The iptables implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Nft,
    Legacy,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        })
    }
}

/// What went wrong with iptables, with the binary and table in it.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("{binary} not found: install iptables (both the nft and legacy variants)")]
    BinaryMissing { binary: String },
    #[error("cannot run {binary}")]
    Spawn {
        binary: String,
        #[source]
        source: io::Error,
    },
    #[error("{binary} did not finish within {bound:?} and was killed")]
    Hung { binary: String, bound: Duration },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    NoBackend(Vec<FirewallError>),
    #[error("{binary} failed ({status}): {stderr}{hint}")]
    Failed {
        binary: String,
        status: String,
        stderr: String,
        hint: &'static str,
    },
    #[error("the xtables lock {} is held by another program; gave up after {waited:?}", path.display())]
    LockBusy { path: PathBuf, waited: Duration },
    #[error("cannot open the xtables lock {}", path.display())]
    LockOpen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl FirewallError {
    /// Whether the error is a busy lock, for metrics and retry logging.
    pub fn is_lock_busy(&self) -> bool {
        matches!(self, FirewallError::LockBusy { .. })
    }
}

/// One address family's iptables, driven through its binaries.
#[derive(Debug, Clone)]
pub struct Firewall {
    family: &'static str,
    backend: Backend,
    lock_path: PathBuf,
    lock_timeout: Duration,
}

/// The lock file handed to the iptables children while this process holds the host's lock, so
/// they do not wait for the lock their parent holds.
fn child_lock_path(lock_path: &Path) -> PathBuf {
    lock_path.with_file_name("apiserver-proxy-sidecar.xtables.lock")
}

fn family_of(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "iptables",
        IpAddr::V6(_) => "ip6tables",
    }
}

impl Firewall {
    pub fn new(ip: IpAddr, backend: Backend, lock_path: PathBuf, lock_timeout: Duration) -> Self {
        Firewall {
            family: family_of(ip),
            backend,
            lock_path,
            lock_timeout,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn binary(family: &str, backend: Backend, tool: &str) -> String {
        format!("{family}-{backend}{tool}")
    }

    /// Picks the backend that already holds the host's rules: the one with kubelet's canary
    /// chains, else the one with more rules; nft on a tie, as current distributions default to it.
    /// A backend that is installed but hangs or fails makes the choice impossible: picking the
    /// other one could put the rules where the host does not look.
    pub async fn detect_backend(ip: IpAddr) -> Result<(Backend, String), FirewallError> {
        let family = family_of(ip);
        let probe = |backend| {
            let binary = Self::binary(family, backend, "-save");
            async move { (backend, run(&binary, &[], None, None, READ_TIMEOUT).await) }
        };
        let (nft, legacy) = tokio::join!(probe(Backend::Nft), probe(Backend::Legacy));
        let mut found = Vec::new();
        let mut missing = Vec::new();
        let mut failed = Vec::new();
        for (backend, result) in [nft, legacy] {
            match result {
                Ok(output) => found.push((backend, Ruleset::parse(&output))),
                Err(error @ FirewallError::BinaryMissing { .. }) => missing.push(error),
                Err(error) => failed.push(error),
            }
        }
        if !failed.is_empty() || found.is_empty() {
            failed.extend(missing);
            return Err(FirewallError::NoBackend(failed));
        }
        let score = |ruleset: &Ruleset| {
            let canary =
                ruleset.has_chain("KUBE-IPTABLES-HINT") || ruleset.has_chain("KUBE-KUBELET-CANARY");
            (canary, ruleset.rule_count())
        };
        let mut chosen = found[0].0;
        let mut best = score(&found[0].1);
        for (backend, ruleset) in &found[1..] {
            if score(ruleset) > best {
                best = score(ruleset);
                chosen = *backend;
            }
        }
        let why = found
            .iter()
            .map(|(backend, ruleset)| {
                let (canary, rules) = score(ruleset);
                format!(
                    "{backend}: {rules} rules{}",
                    if canary { ", kubelet canary" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        Ok((chosen, why))
    }

    /// The bound of a command run while this process holds the host's xtables lock.
    fn locked_bound(&self) -> Duration {
        self.lock_timeout
    }

    /// Reads the current rules: exactly one process spawn.
    pub async fn read(&self) -> Result<Ruleset, FirewallError> {
        self.read_within(READ_TIMEOUT).await
    }

    async fn read_within(&self, bound: Duration) -> Result<Ruleset, FirewallError> {
        let binary = Self::binary(self.family, self.backend, "-save");
        Ok(Ruleset::parse(&run(&binary, &[], None, None, bound).await?))
    }

    /// Makes each wanted rule present exactly once. `current` is a dump read just before; when
    /// it shows nothing to do, nothing else runs. Returns what was changed.
    pub async fn ensure(&self, current: &Ruleset, wanted: &[Rule]) -> Result<Plan, FirewallError> {
        if Plan::ensure(current, wanted).is_empty() {
            return Ok(Plan::default());
        }
        let _lock = self.lock().await?;
        // Read again under the lock: another instance may have repaired the rules meanwhile.
        let plan = Plan::ensure(&self.read_within(self.locked_bound()).await?, wanted);
        self.apply(&plan).await?;
        Ok(plan)
    }

    /// Like [`Firewall::ensure`] when changes are likely (at start-up): takes the lock first and
    /// reads once under it, which saves the read outside it.
    pub async fn ensure_locked(&self, wanted: &[Rule]) -> Result<Plan, FirewallError> {
        let _lock = self.lock().await?;
        let plan = Plan::ensure(&self.read_within(self.locked_bound()).await?, wanted);
        self.apply(&plan).await?;
        Ok(plan)
    }

    /// Removes every copy of the wanted rules. Returns what was removed.
    pub async fn remove(&self, wanted: &[Rule]) -> Result<Plan, FirewallError> {
        let _lock = self.lock().await?;
        let plan = Plan::remove(&self.read_within(self.locked_bound()).await?, wanted);
        self.apply(&plan).await?;
        Ok(plan)
    }

    async fn apply(&self, plan: &Plan) -> Result<(), FirewallError> {
        if plan.is_empty() {
            return Ok(());
        }
        let binary = Self::binary(self.family, self.backend, "-restore");
        let child_lock = child_lock_path(&self.lock_path);
        run(
            &binary,
            &["--noflush"],
            Some(plan.restore_input()),
            Some(&child_lock),
            self.locked_bound(),
        )
        .await?;
        Ok(())
    }

    /// Takes the host's xtables lock, waiting at most the configured bound.
    async fn lock(&self) -> Result<File, FirewallError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&self.lock_path)
            .map_err(|source| FirewallError::LockOpen {
                path: self.lock_path.clone(),
                source,
            })?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(TryLockError::WouldBlock) if started.elapsed() < self.lock_timeout => {
                    tokio::time::sleep(LOCK_RETRY).await;
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(FirewallError::LockBusy {
                        path: self.lock_path.clone(),
                        waited: started.elapsed(),
                    });
                }
                Err(TryLockError::Error(source)) => {
                    return Err(FirewallError::LockOpen {
                        path: self.lock_path.clone(),
                        source,
                    });
                }
            }
        }
    }
}

/// Whether an executable of that name is on the PATH.
fn in_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(binary).is_file()))
}

/// Runs an iptables binary, feeding `stdin`, and returns its standard output. A child still
/// running after `bound` is killed and reaped before this returns.
async fn run(
    binary: &str,
    args: &[&str],
    stdin: Option<String>,
    child_lock: Option<&Path>,
    bound: Duration,
) -> Result<String, FirewallError> {
    let mut command = Command::new(binary);
    command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(path) = child_lock {
        command.env("XTABLES_LOCKFILE", path);
    }
    let mut child = command.spawn().map_err(|source| match source.kind() {
        // NotFound can also mean a missing /dev/null or interpreter: only blame the binary
        // when no PATH entry has it.
        io::ErrorKind::NotFound if !in_path(binary) => FirewallError::BinaryMissing {
            binary: binary.to_string(),
        },
        _ => FirewallError::Spawn {
            binary: binary.to_string(),
            source,
        },
    })?;
    let (stdin_pipe, stdout, stderr) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let work = async {
        let feed = async {
            if let (Some(input), Some(mut pipe)) = (stdin, stdin_pipe) {
                // A failed write shows up as the command's own error below.
                let _ = pipe.write_all(input.as_bytes()).await;
            }
        };
        let (_, stdout, stderr, status) =
            tokio::join!(feed, read_all(stdout), read_all(stderr), child.wait());
        status.map(|status| (status, stdout, stderr))
    };
    let (status, stdout, stderr) = match tokio::time::timeout(bound, work).await {
        Ok(result) => result.map_err(|source| FirewallError::Spawn {
            binary: binary.to_string(),
            source,
        })?,
        Err(_) => {
            // SIGKILL and reap now, not whenever the runtime gets to it.
            let _ = child.kill().await;
            return Err(FirewallError::Hung {
                binary: binary.to_string(),
                bound,
            });
        }
    };
    let output = std::process::Output {
        status,
        stdout,
        stderr,
    };
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let hint = if stderr.contains("Permission denied") || stderr.contains("Operation not permitted")
    {
        " (the sidecar needs CAP_NET_ADMIN)"
    } else if stderr.contains("Table does not exist") || stderr.contains("can't initialize") {
        " (is the kernel's iptables support for this backend loaded?)"
    } else {
        ""
    };
    Err(FirewallError::Failed {
        binary: binary.to_string(),
        status: output.status.to_string(),
        stderr,
        hint,
    })
}

/// Everything a child writes to one of its pipes.
async fn read_all(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(mut pipe) = pipe {
        // A read error ends the output; the exit status tells what happened.
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut bytes).await;
    }
    bytes
}
