// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The iptables driver: read the rules with one `iptables-save`, change them with one
//! atomic `iptables-restore --noflush`, under the host's xtables lock.
//!
//! `iptables -C` is never used to test for a rule: before iptables 1.8.8 it misreports some
//! rules as missing, which piles up duplicates. The dump is read and compared instead, of the
//! tables the sidecar writes only ([`TABLES`]): a node's nat table (kube-proxy's) can hold tens
//! of thousands of rules the sidecar has no business parsing.
//!
//! Every child runs in a process group of its own; a child that outlives its bound is killed
//! with its whole group, so a wrapper script's children never outlive it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tracing::{debug, info};

pub use super::backend::{Backend, choose_backend, unconfirmed};
use crate::instance::{Claims, Look};
use crate::nftnl::{Family, Nftables, Transaction};
use crate::rules::{Plan, Rule, Ruleset};

/// How long an `iptables-save` outside the xtables lock may run before it counts as hung.
/// Commands run while holding the lock get `--xtables-lock-timeout` instead: no other iptables
/// user is made to wait on this process for longer than it would wait on them.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a busy xtables lock is tried again within the wait bound.
const LOCK_RETRY: Duration = Duration::from_millis(20);

/// The tables the sidecar writes, and so the only ones it reads (one `iptables-save -t` each:
/// it takes one table at a time).
pub const TABLES: [&str; 2] = ["raw", "filter"];

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
    #[error("{}", .0.iter().map(|error| crate::error_chain(error)).collect::<Vec<_>>().join("; "))]
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
    /// An address of the family, for a new pick of the backend.
    ip: IpAddr,
    family: &'static str,
    backend: Backend,
    /// Whether the backend was picked automatically, and may be picked again.
    auto: bool,
    lock_path: PathBuf,
    lock_timeout: Duration,
    /// With the nft backend: the nf_tables generation at which the rules were last found
    /// exact. Clones share it.
    verified: Arc<Mutex<Verified>>,
}

/// What the last full check of an nft backend found exact, to skip the next one while nothing
/// changed.
#[derive(Debug, Default)]
struct Verified {
    /// The socket for the generation id, opened on first use and again after a failure.
    nft: Option<Nftables>,
    /// The generation, the IPs of the commented rules then, and those of them spared then
    /// (claimed by other live instances, or waiting out their grace): a change of claims, or a
    /// grace that ends, needs a full check as much as a change of rules.
    at: Option<(u32, Vec<IpAddr>, Vec<IpAddr>)>,
}

impl Verified {
    /// The ruleset's generation id now; `None` when it cannot be read (a full check runs).
    async fn generation(&mut self) -> Option<u32> {
        let nft = match self.nft.take() {
            Some(nft) => nft,
            None => Nftables::open().ok()?,
        };
        let nft = self.nft.insert(nft);
        match nft.generation().await {
            Ok(generation) => Some(generation),
            Err(error) => {
                debug!(error = %crate::error_chain(&error), "cannot read the nf_tables generation; reading the rules");
                self.nft = None;
                None
            }
        }
    }
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
            ip,
            family: family_of(ip),
            backend,
            auto: false,
            lock_path,
            lock_timeout,
            verified: Arc::default(),
        }
    }

    /// The same, for a backend [`Firewall::detect_backend`] picked: it is picked again when a
    /// sync finds neither rules of this sidecar nor the kubelet's in it.
    #[must_use]
    pub fn auto_picked(mut self) -> Self {
        self.auto = true;
        self
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
        pick_backend(vec![nft, legacy])
    }

    /// The bound of a command run while this process holds the host's xtables lock.
    fn locked_bound(&self) -> Duration {
        self.lock_timeout
    }

    /// Reads the current rules of the tables the sidecar writes: one `iptables-save` per
    /// table, run side by side.
    pub async fn read(&self) -> Result<Ruleset, FirewallError> {
        self.read_within(READ_TIMEOUT).await
    }

    async fn read_within(&self, bound: Duration) -> Result<Ruleset, FirewallError> {
        let binary = Self::binary(self.family, self.backend, "-save");
        let dumps = join_all(
            TABLES.map(|table| async { run(&binary, &["-t", table], None, None, bound).await }),
        )
        .await;
        let mut text = String::new();
        for dump in dumps {
            text.push_str(&dump?);
        }
        Ok(Ruleset::parse(&text))
    }

    /// Makes each wanted rule present exactly once. In steady state (not `first`) this is one
    /// read, and the lock is taken only when something is missing; at start-up, when changes
    /// are likely, the lock is taken first and the rules read once under it. The rules of IPs
    /// that other live instances keep (`claims`) are left alone, and after the `first` sync
    /// those of another IP until it has been unclaimed for the grace.
    ///
    /// An automatically picked backend that holds neither a rule of this sidecar nor the
    /// kubelet's canary chain is picked again first: the host may have moved its rules to the
    /// other backend since (a kubelet that started later, a node switched over).
    pub async fn sync(
        &mut self,
        wanted: &[Rule],
        first: bool,
        claims: &Claims,
    ) -> Result<Plan, FirewallError> {
        let mut verified = self.verified.clone().lock_owned().await;
        let generation = match self.backend {
            Backend::Nft => verified.generation().await,
            Backend::Legacy => None,
        };
        if let (Some(now), Some((at, commented, spared))) = (generation, &verified.at)
            && !first
            && now == *at
            && claims.kept_elsewhere(commented.clone(), Look::Later) == *spared
        {
            // Nothing changed since the rules were last found exact: no process at all.
            return Ok(Plan::default());
        }
        verified.at = None;
        if first {
            return self.ensure_locked(wanted, claims, Look::First).await;
        }
        let current = self.read().await?;
        if self.auto && unconfirmed(&current, wanted) {
            let (backend, why) = Self::detect_backend(self.ip).await?;
            if backend != self.backend {
                info!(from = %self.backend, to = %backend, found = %why,
                      "the host's rules are in the other iptables backend now: switching to it");
                self.backend = backend;
                return self.ensure_locked(wanted, claims, Look::Later).await;
            }
        }
        // The IPs spared are judged once, for the plan and for the state it verifies: judged
        // again, a grace ending in between would be recorded as seen and never acted on.
        let spared_now = spared(&current, claims, Look::Later);
        if !Plan::ensure(&current, wanted, &spared_now).is_empty() {
            // Planned again under the lock: another instance may have repaired the rules
            // meanwhile.
            return self.ensure_locked(wanted, claims, Look::Later).await;
        }
        if let Some(generation) = generation {
            // Exact as of `generation` (read before the dump): any later change has a later one.
            verified.at = Some((generation, current.commented_ips(), spared_now));
        }
        Ok(Plan::default())
    }

    /// Whether an nf_tables transaction may have touched this firewall's rules: one in a table
    /// the sidecar writes, of its family, with the nft backend (legacy sends no notifications).
    pub fn concerns(&self, transaction: &Transaction) -> bool {
        let family = match self.family {
            "ip6tables" => Family::IPv6,
            _ => Family::IPv4,
        };
        self.backend == Backend::Nft
            && TABLES
                .iter()
                .any(|table| transaction.touches(family, table))
    }

    /// Makes each wanted rule present exactly once, under the lock: reads the rules once under
    /// it, plans and applies. The rules of IPs that other live instances keep (`claims`) are
    /// left alone, and at a [`Look::Later`] those of another IP waiting out its grace.
    /// Returns what was changed.
    async fn ensure_locked(
        &self,
        wanted: &[Rule],
        claims: &Claims,
        look: Look,
    ) -> Result<Plan, FirewallError> {
        self.change(|current| Plan::ensure(current, wanted, &spared(current, claims, look)))
            .await
    }

    /// Removes every copy of the wanted rules, but not those of IPs that other live instances
    /// keep (judged as `look` says). Returns what was removed.
    pub async fn remove(
        &self,
        wanted: &[Rule],
        claims: &Claims,
        look: Look,
    ) -> Result<Plan, FirewallError> {
        self.change(|current| Plan::remove(current, wanted, &spared(current, claims, look)))
            .await
    }

    /// Under the host's lock: reads the rules, plans from them and carries the plan out in one
    /// atomic restore. Returns the plan.
    async fn change(&self, plan_for: impl FnOnce(&Ruleset) -> Plan) -> Result<Plan, FirewallError> {
        let _lock = self.lock().await?;
        let plan = plan_for(&self.read_within(self.locked_bound()).await?);
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

/// The IPs of the sidecar's rules in `current` that other live instances keep, or (at a
/// [`Look::Later`]) that wait out their grace.
fn spared(current: &Ruleset, claims: &Claims, look: Look) -> Vec<IpAddr> {
    claims.kept_elsewhere(current.commented_ips(), look)
}

/// The backend to use, from what each backend's `iptables-save` gave: the choice of
/// [`choose_backend`] among those that answered. A missing binary only leaves its backend
/// out; any other failure makes the choice impossible, as does having no backend at all.
pub fn pick_backend(
    probes: Vec<(Backend, Result<String, FirewallError>)>,
) -> Result<(Backend, String), FirewallError> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    let mut failed = Vec::new();
    for (backend, result) in probes {
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
    Ok(choose_backend(&found))
}

/// Whether an executable of that name is on the PATH.
fn in_path(binary: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(binary).is_file()))
}

/// Runs an iptables binary, feeding `stdin`, and returns its standard output. A child still
/// running after `bound` is killed with its process group and reaped before this returns; if
/// this future is dropped first (at shutdown), the group is killed as well.
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
        .process_group(0)
        .kill_on_drop(true);
    if let Some(path) = child_lock {
        command.env("XTABLES_LOCKFILE", path);
    }
    let mut child = command
        .spawn()
        .map_err(|source| spawn_error(binary, source, in_path))?;
    let mut group = Group(child.id());
    let finished = tokio::time::timeout(bound, finish(&mut child, stdin))
        .await
        .ok();
    if finished.is_none() {
        // SIGKILL the group and reap the child now, not whenever the runtime gets to it.
        group.kill();
        let _ = child.kill().await;
    }
    // Finished: what is left of the group (a wrapper's stray child) is not ours to kill.
    group.0 = None;
    outcome(binary, bound, finished)
}

/// The process group of a running child (its id is the child's), killed when dropped.
struct Group(Option<u32>);

impl Group {
    fn kill(&mut self) {
        if let Some(id) = self.0.take().and_then(|id| i32::try_from(id).ok()) {
            // Gone already is fine: a group whose members all exited has nothing left to kill.
            let _ = killpg(Pid::from_raw(id), Signal::SIGKILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Feeds the child its input, reads its output and waits for it to exit.
async fn finish(child: &mut Child, stdin: Option<String>) -> io::Result<Output> {
    let (stdin_pipe, stdout, stderr) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let feed = async {
        if let (Some(input), Some(mut pipe)) = (stdin, stdin_pipe) {
            // A failed write shows up as the command's own error below.
            let _ = pipe.write_all(input.as_bytes()).await;
        }
    };
    let (_, stdout, stderr, status) =
        tokio::join!(feed, read_all(stdout), read_all(stderr), child.wait());
    Ok(Output {
        status: status?,
        stdout,
        stderr,
    })
}

/// Why a binary could not be started. `NotFound` can also mean a missing /dev/null or
/// interpreter: the binary is only blamed when `in_path` finds it on no PATH entry.
fn spawn_error(
    binary: &str,
    source: io::Error,
    in_path: impl FnOnce(&str) -> bool,
) -> FirewallError {
    match source.kind() {
        io::ErrorKind::NotFound if !in_path(binary) => FirewallError::BinaryMissing {
            binary: binary.to_string(),
        },
        _ => FirewallError::Spawn {
            binary: binary.to_string(),
            source,
        },
    }
}

/// What a run of `binary` comes to: its standard output when it succeeded, else why not.
/// `finished` is `None` when the child was still running after `bound` (and was killed).
fn outcome(
    binary: &str,
    bound: Duration,
    finished: Option<io::Result<Output>>,
) -> Result<String, FirewallError> {
    let output = match finished {
        None => {
            return Err(FirewallError::Hung {
                binary: binary.to_string(),
                bound,
            });
        }
        Some(output) => output.map_err(|source| FirewallError::Spawn {
            binary: binary.to_string(),
            source,
        })?,
    };
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let hint = hint_for(&stderr);
    Err(FirewallError::Failed {
        binary: binary.to_string(),
        status: output.status.to_string(),
        stderr,
        hint,
    })
}

/// What an iptables error message suggests to check.
fn hint_for(stderr: &str) -> &'static str {
    if stderr.contains("Permission denied") || stderr.contains("Operation not permitted") {
        " (the sidecar needs CAP_NET_ADMIN)"
    } else if stderr.contains("Table does not exist") || stderr.contains("can't initialize") {
        " (is the kernel's iptables support for this backend loaded?)"
    } else {
        ""
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(chains: &[&str], rules: usize) -> Ruleset {
        let mut text = String::from("*filter\n");
        for chain in chains {
            text.push_str(&format!(":{chain} - [0:0]\n"));
        }
        for i in 0..rules {
            text.push_str(&format!("-A INPUT -s 10.0.0.{i}/32 -j ACCEPT\n"));
        }
        text.push_str("COMMIT\n");
        Ruleset::parse(&text)
    }

    #[test]
    fn the_backend_holding_the_hosts_rules_is_chosen() {
        use Backend::{Legacy, Nft};
        type Case = (&'static str, Vec<(Backend, Ruleset)>, Backend);
        let cases: &[Case] = &[
            ("only nft answers", vec![(Nft, dump(&[], 0))], Nft),
            ("only legacy answers", vec![(Legacy, dump(&[], 3))], Legacy),
            (
                "empty tie: nft",
                vec![(Nft, dump(&[], 0)), (Legacy, dump(&[], 0))],
                Nft,
            ),
            (
                "count tie: nft",
                vec![(Nft, dump(&[], 2)), (Legacy, dump(&[], 2))],
                Nft,
            ),
            (
                "more rules",
                vec![(Nft, dump(&[], 1)), (Legacy, dump(&[], 4))],
                Legacy,
            ),
            (
                "canary beats count",
                vec![
                    (Nft, dump(&["KUBE-KUBELET-CANARY"], 0)),
                    (Legacy, dump(&[], 9)),
                ],
                Nft,
            ),
            (
                "hint chain counts as canary",
                vec![
                    (Nft, dump(&[], 9)),
                    (Legacy, dump(&["KUBE-IPTABLES-HINT"], 0)),
                ],
                Legacy,
            ),
            (
                "both canaries: more rules",
                vec![
                    (Nft, dump(&["KUBE-KUBELET-CANARY"], 5)),
                    (Legacy, dump(&["KUBE-IPTABLES-HINT"], 1)),
                ],
                Nft,
            ),
        ];
        for (name, found, want) in cases {
            assert_eq!(choose_backend(found).0, *want, "{name}");
        }
        let (_, why) = choose_backend(&[
            (Nft, dump(&["KUBE-KUBELET-CANARY"], 2)),
            (Legacy, dump(&[], 0)),
        ]);
        assert_eq!(why, "nft: 2 rules, kubelet canary; legacy: 0 rules");
    }

    #[test]
    fn every_table_the_sidecar_writes_is_read() {
        for ip in [IpAddr::from([10, 96, 0, 2]), "fd00::2".parse().expect("ip")] {
            for rule in crate::rules::wanted_rules(ip, 443) {
                assert!(TABLES.contains(&rule.table), "{rule}");
            }
        }
    }

    #[test]
    fn a_backend_without_our_rules_or_the_kubelets_is_picked_again() {
        let wanted = crate::rules::wanted_rules(IpAddr::from([10, 96, 0, 2]), 443);
        let one_of_ours = |rule: &Rule| format!("*{}\n{}\nCOMMIT\n", rule.table, rule.saved());
        let ours: String = wanted.iter().map(one_of_ours).collect();
        let bare = format!("*raw\n-A PREROUTING {}\nCOMMIT\n", wanted[0].bare.join(" "));
        let stale = one_of_ours(&crate::rules::wanted_rules(IpAddr::from([10, 96, 0, 9]), 443)[3]);
        // name, the dump, whether the choice is open
        let cases = [
            ("empty", String::new(), true),
            (
                "foreign rules only",
                "*filter\n-A INPUT -s 10.0.0.1/32 -j ACCEPT\nCOMMIT\n".into(),
                true,
            ),
            ("all of ours", ours, false),
            ("one of ours", one_of_ours(&wanted[4]), false),
            ("the Go original's", bare, false),
            ("ours for an earlier IP", stale, false),
            (
                "kubelet canary",
                "*filter\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n".into(),
                false,
            ),
            (
                "kubelet hint",
                "*filter\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n".into(),
                false,
            ),
        ];
        for (name, dump, open) in cases {
            assert_eq!(
                unconfirmed(&Ruleset::parse(&dump), &wanted),
                open,
                "{name}: {dump}"
            );
        }
    }

    #[test]
    fn only_transactions_in_the_tables_of_its_family_concern_an_nft_backend() {
        let v4 = IpAddr::from([10, 96, 0, 2]);
        let v6: IpAddr = "fd00::2".parse().expect("ip");
        let firewall = |ip, backend| Firewall::new(ip, backend, "/run/x".into(), Duration::ZERO);
        let touching = |tables: &[(Family, &str)], unknown| Transaction {
            tables: tables
                .iter()
                .map(|(family, table)| (u8::from(*family), table.to_string()))
                .collect(),
            unknown,
            ..Transaction::default()
        };
        use Backend::{Legacy, Nft};
        // name, the firewall's address, backend, what the transaction touched, concerned
        let cases = [
            (
                "raw",
                v4,
                Nft,
                touching(&[(Family::IPv4, "raw")], false),
                true,
            ),
            (
                "filter",
                v4,
                Nft,
                touching(&[(Family::IPv4, "filter")], false),
                true,
            ),
            (
                "nat only",
                v4,
                Nft,
                touching(&[(Family::IPv4, "nat")], false),
                false,
            ),
            (
                "mangle and raw",
                v4,
                Nft,
                touching(&[(Family::IPv4, "mangle"), (Family::IPv4, "raw")], false),
                true,
            ),
            (
                "the other family",
                v4,
                Nft,
                touching(&[(Family::IPv6, "raw")], false),
                false,
            ),
            (
                "ip6tables",
                v6,
                Nft,
                touching(&[(Family::IPv6, "filter")], false),
                true,
            ),
            (
                "an inet table",
                v4,
                Nft,
                touching(&[(Family::Inet, "filter")], false),
                false,
            ),
            ("unknown", v4, Nft, touching(&[], true), true),
            (
                "legacy",
                v4,
                Legacy,
                touching(&[(Family::IPv4, "raw")], true),
                false,
            ),
        ];
        for (name, ip, backend, transaction, want) in cases {
            assert_eq!(firewall(ip, backend).concerns(&transaction), want, "{name}");
        }
    }

    #[test]
    fn error_hints() {
        let cases = [
            (
                "iptables-restore v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)",
                " (the sidecar needs CAP_NET_ADMIN)",
            ),
            (
                "iptables v1.8.9 (legacy): can't initialize iptables table `raw': Operation not permitted",
                " (the sidecar needs CAP_NET_ADMIN)",
            ),
            (
                "iptables v1.8.9 (legacy): can't initialize iptables table `raw': Table does not exist (do you need to insmod?)",
                " (is the kernel's iptables support for this backend loaded?)",
            ),
            ("iptables-restore: line 3 failed", ""),
            ("", ""),
        ];
        for (stderr, hint) in cases {
            assert_eq!(hint_for(stderr), hint, "{stderr}");
        }
    }

    fn shown(result: Result<String, FirewallError>) -> Result<String, String> {
        result.map_err(|error| crate::error_chain(&error))
    }

    #[test]
    fn what_a_run_comes_to() {
        use std::os::unix::process::ExitStatusExt;
        let exited = |code: i32, stdout: &str, stderr: &str| {
            Some(Ok(Output {
                status: std::process::ExitStatus::from_raw(code << 8),
                stdout: stdout.into(),
                stderr: stderr.into(),
            }))
        };
        let binary = "iptables-nft-save";
        // name, how the child finished (`None`: still running at the bound), the outcome
        type Case = (
            &'static str,
            Option<io::Result<Output>>,
            Result<&'static str, &'static str>,
        );
        let cases: Vec<Case> = vec![
            ("success", exited(0, "*raw\n", "warning"), Ok("*raw\n")),
            (
                "hung",
                None,
                Err("iptables-nft-save did not finish within 2s and was killed"),
            ),
            (
                "wait failed",
                Some(Err(io::Error::other("gone"))),
                Err("cannot run iptables-nft-save: gone"),
            ),
            (
                "failed, with a hint",
                exited(4, "", "iptables: Permission denied (you must be root)\n"),
                Err(
                    "iptables-nft-save failed (exit status: 4): iptables: Permission denied (you must be root) (the sidecar needs CAP_NET_ADMIN)",
                ),
            ),
            (
                "failed, no hint",
                exited(1, "partial", " line 3 failed "),
                Err("iptables-nft-save failed (exit status: 1): line 3 failed"),
            ),
        ];
        for (name, finished, want) in cases {
            let got = shown(outcome(binary, Duration::from_secs(2), finished));
            assert_eq!(got.as_deref().map_err(String::as_str), want, "{name}");
        }
    }

    #[test]
    fn a_binary_is_blamed_only_when_no_path_entry_has_it() {
        use io::ErrorKind::{NotFound, PermissionDenied};
        // kind of the spawn error, whether the binary is on the PATH, the message
        let cases = [
            (
                NotFound,
                false,
                "iptables-legacy-save not found: install iptables (both the nft and legacy variants)",
            ),
            (
                NotFound,
                true,
                "cannot run iptables-legacy-save: entity not found",
            ),
            (
                PermissionDenied,
                false,
                "cannot run iptables-legacy-save: permission denied",
            ),
        ];
        for (kind, on_path, want) in cases {
            let error = spawn_error("iptables-legacy-save", io::Error::from(kind), |_| on_path);
            assert_eq!(
                crate::error_chain(&error),
                want,
                "{kind:?}, on the PATH: {on_path}"
            );
        }
    }

    #[test]
    fn a_backend_is_picked_only_when_every_installed_one_answers() {
        use Backend::{Legacy, Nft};
        let missing = |binary: &str| {
            Err(FirewallError::BinaryMissing {
                binary: binary.into(),
            })
        };
        let hung = |binary: &str| {
            Err(FirewallError::Hung {
                binary: binary.into(),
                bound: READ_TIMEOUT,
            })
        };
        let rules = |count: usize| {
            let mut text = String::from("*filter\n");
            for i in 0..count {
                text.push_str(&format!("-A INPUT -s 10.0.0.{i}/32 -j ACCEPT\n"));
            }
            Ok(text + "COMMIT\n")
        };
        // name, what each backend's iptables-save gave, the pick or the errors named
        type Case = (
            &'static str,
            Vec<(Backend, Result<String, FirewallError>)>,
            Result<Backend, Vec<&'static str>>,
        );
        let cases: Vec<Case> = vec![
            (
                "both answer",
                vec![(Nft, rules(0)), (Legacy, rules(2))],
                Ok(Legacy),
            ),
            (
                "legacy missing",
                vec![(Nft, rules(0)), (Legacy, missing("iptables-legacy-save"))],
                Ok(Nft),
            ),
            (
                "nft missing",
                vec![(Nft, missing("iptables-nft-save")), (Legacy, rules(0))],
                Ok(Legacy),
            ),
            (
                "both missing",
                vec![
                    (Nft, missing("iptables-nft-save")),
                    (Legacy, missing("iptables-legacy-save")),
                ],
                Err(vec!["iptables-nft-save", "iptables-legacy-save"]),
            ),
            (
                "one hangs: the other may not hold the host's rules",
                vec![(Nft, hung("iptables-nft-save")), (Legacy, rules(5))],
                Err(vec!["iptables-nft-save"]),
            ),
            (
                "one hangs, the other is missing: the failure first",
                vec![
                    (Nft, missing("iptables-nft-save")),
                    (Legacy, hung("iptables-legacy-save")),
                ],
                Err(vec!["iptables-legacy-save", "iptables-nft-save"]),
            ),
        ];
        for (name, probes, want) in cases {
            match (pick_backend(probes), want) {
                (Ok((got, _)), Ok(want)) => assert_eq!(got, want, "{name}"),
                (Err(FirewallError::NoBackend(errors)), Err(binaries)) => {
                    let named: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    assert_eq!(named.len(), binaries.len(), "{name}: {named:?}");
                    for (shown, binary) in named.iter().zip(binaries) {
                        assert!(shown.starts_with(binary), "{name}: {named:?}");
                    }
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn binaries_are_named_by_family_backend_and_tool() {
        let v4 = Firewall::new(
            IpAddr::from([10, 96, 0, 2]),
            Backend::Legacy,
            "/run/x".into(),
            Duration::from_secs(1),
        );
        assert_eq!(
            Firewall::binary(v4.family, v4.backend, "-restore"),
            "iptables-legacy-restore"
        );
        let v6 = Firewall::new(
            "fd00::2".parse().expect("ip"),
            Backend::Nft,
            "/run/x".into(),
            Duration::from_secs(1),
        );
        assert_eq!(
            Firewall::binary(v6.family, v6.backend, "-save"),
            "ip6tables-nft-save"
        );
        assert_eq!(
            child_lock_path(Path::new("/run/xtables.lock")),
            Path::new("/run/apiserver-proxy-sidecar.xtables.lock")
        );
    }
}
