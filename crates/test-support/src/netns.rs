// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Network namespaces for tests: each test gets its own, made with `ip netns add` and deleted on
//! drop, so nothing ever touches the host's own namespace. Creating one needs root; when that is
//! impossible the test fails with the reason instead of passing silently.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::{KillOnDrop, cargo_bin};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The sidecar binary under test.
pub fn sidecar_binary() -> PathBuf {
    cargo_bin("apiserver-proxy-sidecar")
}

/// Where `ip` lives on this machine.
fn ip_binary() -> &'static Path {
    static IP: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    IP.get_or_init(|| which("ip"))
}

/// A network namespace owned by one test.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
    dir: tempfile::TempDir,
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Netns {
    /// Creates a fresh namespace with `lo` down, as the kernel makes it.
    pub fn new(test: &str) -> Netns {
        let name = format!(
            "apxt-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            &test[..test.len().min(20)]
        );
        let output = run(Command::new("ip").args(["netns", "add", &name]));
        assert!(
            output.status.success(),
            "cannot create network namespace {name} (the sidecar tests need root and iproute2; \
             run them as root, e.g. `sudo make test`): {}",
            text(&output.stderr)
        );
        Netns {
            name,
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// A per-test xtables lock, so tests never hold the host's `/run/xtables.lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.dir.path().join("xtables.lock")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        // `ip` by its full path, so a test may give the command a PATH of its own.
        let mut command = Command::new(ip_binary());
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs a command in the namespace and returns its stdout; panics when it fails.
    pub fn sh(&self, program: &str, args: &[&str]) -> String {
        let output = run(self.command(program).args(args));
        assert!(
            output.status.success(),
            "{program} {args:?} failed in {}: {}",
            self.name,
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    /// `GET url` with curl inside the namespace, 2 s at most: the body of a successful answer.
    pub fn http_get(&self, url: &str) -> Option<String> {
        let output = self
            .command("curl")
            .args(["-sS", "--max-time", "2", url])
            .output()
            .ok()?;
        output.status.success().then(|| text(&output.stdout))
    }

    /// Runs a command in the namespace and returns whether it succeeded.
    pub fn try_sh(&self, program: &str, args: &[&str]) -> bool {
        run(self.command(program).args(args)).status.success()
    }

    /// The sidecar with the per-test lock; more flags follow.
    pub fn sidecar(&self, args: &[&str]) -> Command {
        let mut command = self.command(sidecar_binary());
        command
            .arg(format!("--xtables-lock={}", self.lock_path().display()))
            .args(args)
            .env("RUST_LOG", "debug");
        command
    }

    /// The sidecar in the namespace with CAP_NET_ADMIN dropped from its bounding set (root keeps
    /// every other capability); callers add the flags.
    pub fn sidecar_without_net_admin(&self) -> Command {
        let mut command = self.command("setpriv");
        command
            .args(["--bounding-set=-net_admin", "--inh-caps=-net_admin", "--"])
            .arg(sidecar_binary());
        command
    }

    /// Runs the sidecar to completion.
    pub fn sidecar_once(&self, args: &[&str]) -> Output {
        run(&mut self.sidecar(args))
    }

    /// Runs the sidecar to completion, checks that it succeeded and returns its stderr.
    #[track_caller]
    pub fn sidecar_ok(&self, args: &[&str]) -> String {
        let output = self.sidecar_once(args);
        let said = stderr(&output);
        assert!(output.status.success(), "{args:?}: {said}");
        said
    }

    /// Adds the veth pair `name` and `peer`, both down.
    pub fn veth(&self, name: &str, peer: &str) {
        self.sh(
            "ip",
            &["link", "add", name, "type", "veth", "peer", "name", peer],
        );
    }

    /// Runs the sidecar once with `args` and checks that they are refused as pflag refuses a bad
    /// command line: exit code 2 and a message that contains `needle`.
    pub fn expect_usage_error(&self, args: &[&str], needle: &str) {
        let output = self.sidecar_once(args);
        let said = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {said}");
        assert!(said.contains(needle), "{args:?}: {said}");
    }

    /// Starts the sidecar as a daemon, logging to a file in the test's directory.
    pub fn spawn_sidecar(&self, args: &[&str]) -> Daemon {
        self.spawn_logged(self.sidecar(args))
    }

    /// Starts a command (e.g. [`Netns::sidecar`] with more settings) as a daemon whose stderr
    /// goes to a log file in the test's directory.
    pub fn spawn_logged(&self, mut command: Command) -> Daemon {
        let log = self.dir.path().join(format!(
            "sidecar-{}.log",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&log).expect("log file");
        let child = command
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
        Daemon {
            child: KillOnDrop(child),
            log,
        }
    }

    /// `ip -o addr show` lines that carry `ip`, e.g. `inet 10.96.0.2/32 scope global lo`.
    pub fn addresses_of(&self, ip: &str) -> Vec<String> {
        self.sh("ip", &["-o", "addr", "show"])
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let position = fields
                    .iter()
                    .position(|field| field.split('/').next() == Some(ip))?;
                let scope = fields
                    .iter()
                    .position(|field| *field == "scope")
                    .and_then(|at| fields.get(at + 1))
                    .copied()
                    .unwrap_or("?");
                Some(format!(
                    "{} {} scope {} {}",
                    fields[2], fields[position], scope, fields[1]
                ))
            })
            .collect()
    }

    /// The rules `tool` (e.g. `iptables-nft-save`) shows that mention `needle`.
    pub fn rules_with(&self, tool: &str, needle: &str) -> Vec<String> {
        self.sh(tool, &[])
            .lines()
            .filter(|line| line.starts_with("-A ") && line.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// A directory `bin` in the test's directory of stand-ins for programs: each of `scripts`
    /// (a name and its shell script) made executable, each of `real` a link to the program on
    /// the PATH. Put it first in a PATH with [`path_with`].
    pub fn stand_ins(&self, scripts: &[(&str, String)], real: &[&str]) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.dir().join("bin");
        std::fs::create_dir_all(&dir).expect("bin directory");
        for (name, script) in scripts {
            let path = dir.join(name);
            std::fs::write(&path, script).expect("script");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        for name in real {
            std::os::unix::fs::symlink(which(name), dir.join(name)).expect("symlink");
        }
        dir
    }

    /// Whether a link of that name exists.
    pub fn has_link(&self, name: &str) -> bool {
        self.try_sh("ip", &["link", "show", "dev", name])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// A running sidecar (or another daemon) logging to a file; killed on drop.
#[derive(Debug)]
pub struct Daemon {
    pub child: KillOnDrop,
    pub log: PathBuf,
}

impl Daemon {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code and how long it took.
    pub fn terminate(&mut self) -> (Option<i32>, Duration) {
        let started = Instant::now();
        self.child.signal("TERM");
        let status = self.child.wait().expect("wait for the sidecar");
        (status.code(), started.elapsed())
    }

    /// Terminates the daemon as [`Daemon::terminate`] does and checks that it exited with 0;
    /// returns how long that took.
    #[track_caller]
    pub fn stop(&mut self) -> Duration {
        let (code, took) = self.terminate();
        assert_eq!(code, Some(0), "{}", self.log());
        took
    }

    /// Waits for `check` as [`wait_for`] does; panics with the daemon's log when `limit` passes.
    #[track_caller]
    pub fn expect_within(&self, limit: Duration, check: impl FnMut() -> bool) -> Duration {
        wait_for(limit, check)
            .unwrap_or_else(|| panic!("not within {limit:?}; the daemon's log:\n{}", self.log()))
    }

    /// Checks that the log says `what` exactly `times` times.
    #[track_caller]
    pub fn assert_logged(&self, what: &str, times: usize) {
        let log = self.log();
        assert_eq!(log.matches(what).count(), times, "{what:?} in:\n{log}");
    }

    /// Whether the daemon is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Where a program is on the PATH.
pub fn which(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{name} is needed (scripts/install-test-deps.sh)"))
}

/// A PATH with `first` before this process's own.
pub fn path_with(first: &Path) -> String {
    format!(
        "{}:{}",
        first.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Polls `check` every 2 ms until it holds or `limit` passes; returns the time it took.
pub fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// The five rules for `ip/prefix` and `port`.
fn wanted_rules(host: &str, port: u16) -> [sidecar::rules::Rule; 5] {
    let ip = host
        .split('/')
        .next()
        .and_then(|ip| ip.parse().ok())
        .expect("IP/PREFIX");
    sidecar::rules::wanted_rules(ip, port)
        .try_into()
        .unwrap_or_else(|rules: Vec<_>| panic!("{} rules, not five", rules.len()))
}

/// The five rules' lines in `iptables-save` form (with their comments) for `ip/prefix` and
/// `port`, by table.
pub fn expected_rules(host: &str, port: u16) -> [(String, String); 5] {
    wanted_rules(host, port).map(|rule| (rule.table.to_string(), rule.saved()))
}

/// The same lines as the Go original wrote them, without comments.
pub fn bare_rules(host: &str, port: u16) -> [(String, String); 5] {
    wanted_rules(host, port).map(|rule| {
        (
            rule.table.to_string(),
            format!("-A {} {}", rule.chain, rule.bare.join(" ")),
        )
    })
}

/// A finished command's stderr, as text.
pub fn stderr(output: &Output) -> String {
    text(&output.stderr)
}

impl Netns {
    /// How many times each of the five rules appears, in the order of [`expected_rules`].
    pub fn rule_counts(&self, save_tool: &str, host: &str, port: u16) -> Vec<usize> {
        expected_rules(host, port)
            .iter()
            .map(|(table, line)| {
                self.sh(save_tool, &["-t", table])
                    .lines()
                    .filter(|saved| saved.trim() == line)
                    .count()
            })
            .collect()
    }
}

/// Runs `body` inside a fresh namespace: the test binary runs the one test `test` again there
/// with the environment variable `inside` set to the namespace's xtables lock, which `body` is
/// given; the outer run checks that the inner one passed.
pub fn in_namespace(test: &str, inside: &str, body: impl FnOnce(&str)) {
    if let Ok(lock) = std::env::var(inside) {
        return body(&lock);
    }
    let ns = Netns::new(test);
    let exe = std::env::current_exe().expect("the test binary");
    let output = ns
        .command(&exe)
        .args([
            "--exact",
            test,
            "--include-ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(inside, ns.lock_path())
        .output()
        .expect("run the test inside the namespace");
    assert!(
        output.status.success(),
        "inside {}:\n{}\n{}",
        ns.name,
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// Runs `work` to completion on a single-threaded runtime of its own.
pub fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(work)
}

/// `iptables-nft` arguments for a rule of another program's: no tracking for 10.0.0.1.
pub const FOREIGN_NOTRACK: [&str; 9] = [
    "-t",
    "raw",
    "-A",
    "PREROUTING",
    "-d",
    "10.0.0.1",
    "-j",
    "CT",
    "--notrack",
];

/// Holds the xtables lock at `lock` for `seconds` (as `sleep` reads them) and returns once it is
/// held: the holder says so, where probing with `flock -n` could catch a sidecar's own iptables
/// run holding it for a moment. Its stderr goes nowhere: the test's own would stay open until
/// `sleep` ends.
pub fn hold_lock(lock: &Path, seconds: &str) -> std::process::Child {
    let mut holder = Command::new("flock")
        .arg(lock)
        .args(["sh", "-c", "echo held; exec sleep \"$0\"", seconds])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("flock");
    let mut said = String::new();
    let stdout = holder.stdout.take().expect("piped stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut said)
        .expect("flock's output");
    assert_eq!(said, "held\n", "flock never took {}", lock.display());
    holder
}
