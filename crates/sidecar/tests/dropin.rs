// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The sidecar as a drop-in for the Go binary: argument vectors the Go binary is really run with
//! (its README, Gardener's DaemonSet before and after it moved the IP to a dummy link, klog
//! flags, repeated flags, positional arguments, bad values), each run in a fresh network
//! namespace, checked for the exit code and the effect: the address and on which interface, the
//! rules, where the logs went and in which format. Each row is what the Go binary does, except
//! where a row's note names a difference the README lists on purpose.

use test_support::netns as support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use regex::Regex;
use support::{Netns, sidecar_binary, wait_for};

const IP: &str = "10.96.0.2";
const DUMMY: &str = "apiserver-proxy";

/// The shape log lines must have.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fmt {
    /// klog's header, then the quoted message.
    Klog,
    /// `--skip_headers`: the quoted message first.
    Bare,
    /// `--add_dir_header`: klog's header with the source file's directory.
    KlogDir,
    /// One JSON object per line.
    Json,
}

/// Where the lines of a run must be (and nowhere else).
#[derive(Debug, Clone, Copy)]
struct Logs {
    stderr: Option<Fmt>,
    /// `{dir}/x.log` (`--log_file`).
    file: Option<Fmt>,
    /// klog's INFO file in `{dir}/logs` (`--log_dir`).
    dir: Option<Fmt>,
    /// Whether log files start with klog's file header.
    file_header: bool,
}

const fn stderr(fmt: Fmt) -> Logs {
    Logs {
        stderr: Some(fmt),
        file: None,
        dir: None,
        file_header: true,
    }
}
const fn file(fmt: Fmt) -> Logs {
    Logs {
        stderr: None,
        file: Some(fmt),
        dir: None,
        file_header: true,
    }
}
const fn both(fmt: Fmt) -> Logs {
    Logs {
        stderr: Some(fmt),
        file: Some(fmt),
        dir: None,
        file_header: true,
    }
}
const fn dir(fmt: Fmt) -> Logs {
    Logs {
        stderr: None,
        file: None,
        dir: Some(fmt),
        file_header: true,
    }
}
const NOWHERE: Logs = Logs {
    stderr: None,
    file: None,
    dir: None,
    file_header: true,
};

/// What a run must print.
#[derive(Debug, Clone, Copy)]
enum Out {
    /// Log lines, there.
    Logs(Logs),
    /// A usage error with the usage hint on stderr.
    Usage,
    /// Help or version on stdout.
    Help,
}

/// How the run goes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Runs to its end.
    Once,
    /// Keeps running: the effect is checked while it runs, then SIGTERM.
    Daemon,
    /// Keeps running and cleans up on SIGTERM: the address must be gone afterwards.
    DaemonCleanup,
}

struct Row {
    args: &'static [&'static str],
    mode: Mode,
    code: i32,
    /// The IP and interface the address must be on at the end of a one-shot run or while the
    /// daemon runs; `None`: the address is nowhere.
    address: Option<(&'static str, &'static str)>,
    /// The port of the five rules that must be in place; `None`: no rule with the IP.
    rules: Option<u16>,
    out: Out,
    /// Text that must appear in the log.
    needle: &'static str,
    /// A check of its own, given the test's directory and stderr.
    extra: Option<fn(&Path, &str)>,
    /// Where Go differs, and why (the README's "Differences from the Go original").
    note: &'static str,
}

const fn once(
    args: &'static [&'static str],
    address: Option<(&'static str, &'static str)>,
    rules: Option<u16>,
    out: Out,
) -> Row {
    Row {
        args,
        mode: Mode::Once,
        code: 0,
        address,
        rules,
        out,
        needle: "",
        extra: None,
        note: "",
    }
}

const fn usage(args: &'static [&'static str]) -> Row {
    Row {
        args,
        mode: Mode::Once,
        code: 2,
        address: None,
        rules: None,
        out: Out::Usage,
        needle: "",
        extra: None,
        note: "",
    }
}

impl Row {
    const fn daemon(mut self, mode: Mode) -> Row {
        self.mode = mode;
        self
    }
    const fn code(mut self, code: i32) -> Row {
        self.code = code;
        self
    }
    const fn needle(mut self, needle: &'static str) -> Row {
        self.needle = needle;
        self
    }
    const fn extra(mut self, check: fn(&Path, &str)) -> Row {
        self.extra = Some(check);
        self
    }
    const fn note(mut self, note: &'static str) -> Row {
        self.note = note;
        self
    }
}

const LO: Option<(&str, &str)> = Some((IP, "lo"));
const ON_DUMMY: Option<(&str, &str)> = Some((IP, DUMMY));
const KLOG: Out = Out::Logs(stderr(Fmt::Klog));

fn rows() -> Vec<Row> {
    use Mode::*;
    vec![
        // --- The Go README and Gardener's DaemonSet -----------------------------------------
        once(&["--ip-address=10.96.0.2", "--daemon=false"], LO, None, KLOG),
        once(&["--ip-address=10.96.0.2", "--setup-iptables", "--daemon=false"], LO, Some(443), KLOG),
        once(&["--ip-address", "10.96.0.2", "--daemon=false"], LO, None, KLOG),
        // Gardener's init container after the move to a dummy link.
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--interface=apiserver-proxy"], ON_DUMMY, None, KLOG),
        // Gardener's sidecar after the move, and before it (on lo).
        once(&["--ip-address=10.96.0.2", "--interface=apiserver-proxy", "--setup-iptables=false"], ON_DUMMY, None, KLOG).daemon(Daemon),
        once(&["--ip-address=10.96.0.2", "--setup-iptables=false", "--interface=lo"], LO, None, KLOG).daemon(Daemon),
        once(&["--ip-address=10.96.0.2", "--setup-iptables"], LO, Some(443), KLOG).daemon(Daemon),
        once(&["--ip-address=10.96.0.2", "--setup-iptables", "--cleanup"], LO, Some(443), KLOG).daemon(DaemonCleanup).needle("cleaned up"),
        once(&["--ip-address=10.96.0.2", "--cleanup", "--sync-interval=30s"], LO, None, KLOG).daemon(DaemonCleanup),
        // One-shot "remove the IP" jobs: set up, then torn down at exit.
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--cleanup"], None, None, KLOG).needle("removed address"),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--cleanup=true", "--setup-iptables"], None, None, KLOG).needle("removed iptables rule"),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--port=6443", "--setup-iptables"], LO, Some(6443), KLOG),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--port", "8443", "--setup-iptables=true"], LO, Some(8443), KLOG),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--sync-interval=1m0s"], LO, None, KLOG),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--sync-interval=1.5m"], LO, None, KLOG),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--sync-interval", "300ms"], LO, None, KLOG),
        once(&["--ip-address=fd00:10::2", "--daemon=false", "--setup-iptables"], Some(("fd00:10::2", "lo")), Some(443), KLOG)
            .note("IPv6 rules are written with ip6tables; Go wrote them with iptables, which refuses them"),
        once(&["--ip-address=10.96.0.2", "--daemon=0", "--setup-iptables=T"], LO, Some(443), KLOG),
        once(&["--ip-address=10.96.0.2", "--daemon=F", "--cleanup=FALSE"], LO, None, KLOG),
        // --- A repeated flag: the last value wins -----------------------------------------
        once(&["--ip-address=10.96.0.3", "--ip-address=10.96.0.2", "--daemon=false"], LO, None, KLOG),
        once(&["--ip-address=10.96.0.2", "--daemon", "--cleanup", "--daemon=false"], None, None, KLOG).needle("cleaned up"),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--daemon=true"], LO, None, KLOG).daemon(Daemon),
        once(&["--ip-address=10.96.0.2", "--setup-iptables", "--setup-iptables=false", "--daemon=false"], LO, None, KLOG),
        once(&["--ip-address=10.96.0.2", "--interface=lo", "--interface=apiserver-proxy", "--daemon=false"], ON_DUMMY, None, KLOG),
        once(&["--ip-address=10.96.0.2", "--port=443", "--port=9443", "--setup-iptables", "--daemon=false"], LO, Some(9443), KLOG),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--logtostderr=false", "--log_file={dir}/x.log", "--logtostderr=true"], LO, None, KLOG),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--log_file=/nonexistent/y.log", "--log_file={dir}/x.log", "--logtostderr=false"], LO, None, Out::Logs(file(Fmt::Klog))),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--logging-format=json", "--logging-format=text"], LO, None, KLOG),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--v=5", "-v=0"], LO, None, KLOG),
        // --- Positional arguments: ignored, except Go's bool trap --------------------------
        once(&["--ip-address=10.96.0.2", "--daemon=false", "extra"], LO, None, KLOG).needle("ignoring positional arguments"),
        once(&["run", "--ip-address=10.96.0.2", "--daemon=false"], LO, None, KLOG).needle("ignoring positional arguments"),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--", "--setup-iptables"], LO, None, KLOG).needle("--setup-iptables"),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--cleanup", "no"], None, None, KLOG).needle("removed address"),
        usage(&["--ip-address=10.96.0.2", "--daemon", "false"]).note("Go runs a daemon and ignores \"false\"; refused with a hint"),
        usage(&["--ip-address=10.96.0.2", "--daemon=false", "--setup-iptables", "false"]).note("Go installs the rules; refused"),
        usage(&["--ip-address=10.96.0.2", "--daemon=false", "--cleanup", "true"]).note("Go's result is the same here, but the trap is refused everywhere"),
        usage(&["--ip-address=10.96.0.2", "--daemon", "0"]).note("Go runs a daemon; refused"),
        // --- Usage errors: exit 2 with the usage hint, nothing touched --------------------
        usage(&["--ip-address=10.96.0.2", "--daemon=false", "--bogus"]),
        usage(&["--ip-address=10.96.0.2", "--daemon=no"]),
        usage(&["--ip-address=10.96.0.2", "--daemon=false", "--sync-interval=90"]),
        usage(&["--ip-address=10.96.0.2", "--daemon=false", "--sync-interval=1d"]),
        usage(&["--ip-address=10.96.0.2", "--daemon=false", "--setup-iptables=yes"]),
        usage(&["--ip-address=10.96.0.2", "--daemon=false", "--v=loud"]),
        usage(&["--ip-address=10.96.0.2", "--daemon=false", "--stderrthreshold=LOUD"]),
        usage(&["--ip-address=10.96.0.2", "--daemon=false", "--vmodule=foo"]),
        usage(&["--ip-address=10.96.0.2", "--daemon=false", "--log_backtrace_at=main.go"]),
        usage(&["--ip-address=10.96.0.2", "--daemon=false", "--log_file_max_size=big"]),
        usage(&["--ip-address=10.96.0.2", "--daemon=false", "--logging-format=yaml"]),
        usage(&["--ip-address=10.96.0.2", "--daemon=false", "-daemon=false"]),
        usage(&["--daemon=false"]).note("Go failed at run time without an address; a usage error here"),
        usage(&["--ip-address=10.96.0.300", "--daemon=false"]).note("Go failed at run time; a usage error here"),
        usage(&["--ip-address=10.96.0.2", "--port=70000", "--daemon=false"]).note("Go accepted any string and wrote no rule; refused"),
        usage(&["--ip-address=10.96.0.2", "--interface=interface-name-16", "--daemon=false"]).note("the kernel refuses the name; refused before anything is touched"),
        usage(&["--ip-address=127.0.0.5", "--daemon=false"]).note("an address that cannot work is refused (Go added it at host scope)"),
        usage(&["--ip-address=10.96.0.2", "--daemon=false", "--sync-interval=0s"]).note("Go accepted zero, a busy loop; refused"),
        // --- klog: where logs go and their format ----------------------------------------
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--log_file={dir}/x.log"], LO, None, KLOG),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--log_dir={dir}/logs"], LO, None, KLOG),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--logtostderr=false", "--log_file={dir}/x.log"], LO, None, Out::Logs(file(Fmt::Klog))),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--logtostderr=false", "--log_file={dir}/x.log", "--alsologtostderr"], LO, None, Out::Logs(both(Fmt::Klog))),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--logtostderr=false", "--log_dir={dir}/logs"], LO, None, Out::Logs(dir(Fmt::Klog))),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--logtostderr=false", "--log_dir={dir}/logs", "--one_output"], LO, None, Out::Logs(dir(Fmt::Klog))),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--logtostderr=false", "--log_dir={dir}/logs", "--alsologtostderr"], LO, None, Out::Logs(Logs { stderr: Some(Fmt::Klog), ..dir(Fmt::Klog) })),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--logtostderr=false", "--log_file={dir}/x.log", "--stderrthreshold=INFO"], LO, None, Out::Logs(both(Fmt::Klog))),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--logtostderr=false", "--log_file={dir}/x.log", "--stderrthreshold=0"], LO, None, Out::Logs(both(Fmt::Klog))),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--logtostderr=false", "--log_file={dir}/x.log", "--stderrthreshold=5"], LO, None, Out::Logs(file(Fmt::Klog))),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--stderrthreshold=FATAL"], LO, None, KLOG),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--stderrthreshold=ERROR", "--legacy_stderr_threshold_behavior=false"], LO, None, Out::Logs(NOWHERE)),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--stderrthreshold=INFO", "--legacy_stderr_threshold_behavior=false"], LO, None, KLOG),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--logtostderr=false", "--log_file={dir}/x.log", "--alsologtostderr", "--alsologtostderrthreshold=ERROR", "--legacy_stderr_threshold_behavior=false"], LO, None, Out::Logs(file(Fmt::Klog))),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--skip_headers"], LO, None, Out::Logs(stderr(Fmt::Bare))),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--add_dir_header"], LO, None, Out::Logs(stderr(Fmt::KlogDir))),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--logtostderr=false", "--log_file={dir}/x.log", "--skip_log_headers"], LO, None, Out::Logs(Logs { file_header: false, ..file(Fmt::Klog) })),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--logging-format=json"], LO, None, Out::Logs(stderr(Fmt::Json))),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--logging-format", "json", "--logtostderr=false", "--log_file={dir}/x.log"], LO, None, Out::Logs(Logs { file_header: false, ..file(Fmt::Json) })),
        once(&["--ip-address=10.96.0.2", "--logging-format=json", "--setup-iptables"], LO, Some(443), Out::Logs(stderr(Fmt::Json))).daemon(Daemon),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "-v=2"], LO, None, KLOG),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "-v", "4"], LO, None, KLOG),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--v=-1"], LO, None, KLOG),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--vmodule=foo=3,bar*=1", "--log_file_max_size=10", "--log_backtrace_at=main.go:12"], LO, None, KLOG),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--logtostderr", "--alsologtostderr", "--skip_log_headers=false", "--add_dir_header=false"], LO, None, KLOG),
        // --- Help, version, runtime failures -------------------------------------------
        once(&["--help"], None, None, Out::Help)
            .note("pflag prints help to stderr and exits 2 (ExitOnError makes no exception for help); exit 0 here"),
        once(&["-h", "--ip-address=10.96.0.2"], None, None, Out::Help)
            .note("pflag prints help to stderr and exits 2; exit 0 here"),
        once(&["--version"], None, None, Out::Help),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--logtostderr=false", "--log_dir={dir}/logs", "extra"], LO, None, Out::Logs(dir(Fmt::Klog)))
            .extra(warning_in_warning_and_info_files),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--logtostderr=false", "--log_dir={dir}/logs", "--one_output", "extra"], LO, None, Out::Logs(dir(Fmt::Klog)))
            .extra(warning_in_its_own_file_only),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--setup-iptables", "--xtables-lock=/nonexistent/dir/lock", "--logtostderr=false", "--log_file={dir}/x.log"], LO, None, Out::Logs(file(Fmt::Klog)))
            .code(1)
            .extra(error_lines_on_stderr),
        once(&["--ip-address=10.96.0.2", "--daemon=false", "--logtostderr=false", "--log_file=/nonexistent/dir/x.log"], None, None, Out::Logs(NOWHERE))
            .code(1)
            .extra(log_file_refused)
            .note("klog exits 2 when it cannot create its file; a runtime failure (1) here"),
    ]
}

fn klog_header() -> Regex {
    Regex::new(r#"^[IWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d{6}\s+\d+ [^:]+:\d+\] ""#).expect("regex")
}

/// Checks that every line of `text` has the shape `fmt` says; returns the lines' messages and
/// fields as one text to search.
fn check_lines(what: &str, text: &str, fmt: Fmt, header: &Regex) {
    assert!(!text.trim().is_empty(), "{what}: no log lines");
    for line in text.lines() {
        match fmt {
            Fmt::Klog | Fmt::KlogDir => {
                assert!(header.is_match(line), "{what}: not a klog line: {line}");
                let file = line.split("] ").next().unwrap_or_default();
                let has_dir = file.rsplit(' ').next().unwrap_or_default().contains('/');
                assert_eq!(has_dir, fmt == Fmt::KlogDir, "{what}: file column: {line}");
            }
            Fmt::Bare => {
                assert!(line.starts_with('"'), "{what}: a header left: {line}");
            }
            Fmt::Json => {
                let value: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|error| panic!("{what}: not JSON ({error}): {line}"));
                for key in ["level", "ts", "logger", "msg"] {
                    assert!(value[key].is_string(), "{what}: no {key}: {line}");
                }
            }
        }
    }
}

/// klog's file header, four lines, unless `--skip_log_headers`.
fn strip_file_header<'a>(what: &str, text: &'a str, expected: bool) -> &'a str {
    let has = text.starts_with("Log file created at: ");
    assert_eq!(has, expected, "{what}: file header: {text}");
    if !has {
        return text;
    }
    let mut rest = text;
    for prefix in [
        "Log file created at: ",
        "Running on machine: ",
        "Binary: ",
        "Log line format: ",
    ] {
        assert!(
            rest.starts_with(prefix),
            "{what}: header line {prefix:?}: {text}"
        );
        rest = rest.split_once('\n').map_or("", |(_, after)| after);
    }
    rest
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn rules(ns: &Netns, ip: &str) -> Vec<String> {
    let save = if ip.contains(':') {
        "ip6tables-nft-save"
    } else {
        "iptables-nft-save"
    };
    ns.rules_with(save, ip)
}

/// Whether this kernel can make dummy links; where it cannot, rows on `apiserver-proxy` find it
/// made beforehand (a bridge), as a node where the link exists already.
fn dummy_supported() -> bool {
    let ns = Netns::new("dummy-probe");
    ns.try_sh("ip", &["link", "add", "probe", "type", "dummy"])
}

fn run_row(number: usize, row: &Row, header: &Regex, dummy: bool) {
    let what = match row.note {
        "" => format!("row {number} {:?}", row.args),
        note => format!("row {number} {:?} ({note})", row.args),
    };
    let ns = Netns::new("dropin");
    std::fs::create_dir(ns.dir().join("logs")).expect("log dir");
    let uses_dummy = row.args.iter().any(|arg| arg.ends_with(DUMMY));
    if uses_dummy && !dummy {
        ns.sh("ip", &["link", "add", DUMMY, "type", "bridge"]);
        ns.sh("ip", &["link", "set", DUMMY, "up"]);
    }
    let dir = ns.dir().display().to_string();
    let args: Vec<String> = row
        .args
        .iter()
        .map(|arg| arg.replace("{dir}", &dir))
        .collect();
    let stderr_path = ns.dir().join("stderr");
    let stdout_path = ns.dir().join("stdout");
    let mut command = ns.command(sidecar_binary());
    command
        .arg(format!("--xtables-lock={}", ns.lock_path().display()))
        .args(&args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr"));
    let mut child = command.spawn().expect("start the sidecar");
    let address_in_place = |ns: &Netns| match row.address {
        Some((ip, interface)) => ns
            .addresses_of(ip)
            .iter()
            .any(|line| line.ends_with(&format!(" {interface}"))),
        None => false,
    };
    let effect = |ns: &Netns| {
        // Nothing but the expected address, on its interface, with global scope.
        for ip in [IP, "10.96.0.3", "fd00:10::2", "127.0.0.5"] {
            let found = ns.addresses_of(ip);
            match row.address {
                Some((want, interface)) if want == ip => {
                    assert_eq!(found.len(), 1, "{what}: {found:?}");
                    assert!(
                        found[0].contains("scope global")
                            && found[0].ends_with(&format!(" {interface}")),
                        "{what}: {found:?}"
                    );
                }
                _ => assert!(
                    found.is_empty(),
                    "{what}: {ip} should not be there: {found:?}"
                ),
            }
        }
        let ip = row.address.map_or(IP, |(ip, _)| ip);
        let found = rules(ns, ip);
        match row.rules {
            Some(port) => {
                assert_eq!(found.len(), 5, "{what}: {found:?}");
                assert!(
                    found
                        .iter()
                        .all(|rule| rule.contains(&format!("port {port} "))),
                    "{what}: {found:?}"
                );
            }
            None => assert!(found.is_empty(), "{what}: rules: {found:?}"),
        }
    };
    let code = if row.mode == Mode::Once {
        let status = wait_child(&mut child, Duration::from_secs(20), &what);
        effect(&ns);
        status
    } else {
        let up = wait_for(Duration::from_secs(10), || {
            address_in_place(&ns) && (row.rules.is_none() || rules(&ns, IP).len() == 5)
        });
        assert!(
            up.is_some(),
            "{what}: not in place: {}",
            read(&stderr_path).unwrap_or_default()
        );
        // Let the daemon log its first sync, then check and stop it.
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            matches!(child.try_wait(), Ok(None)),
            "{what}: the daemon exited"
        );
        effect(&ns);
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let status = wait_child(&mut child, Duration::from_secs(10), &what);
        let left = ns.addresses_of(IP);
        if row.mode == Mode::DaemonCleanup {
            assert!(left.is_empty(), "{what}: left after the cleanup: {left:?}");
            assert!(
                rules(&ns, IP).is_empty(),
                "{what}: rules left after the cleanup"
            );
        } else {
            assert_eq!(left.len(), 1, "{what}: the address must stay: {left:?}");
        }
        status
    };
    let err = read(&stderr_path).unwrap_or_default();
    let out = read(&stdout_path).unwrap_or_default();
    assert_eq!(code, Some(row.code), "{what}: exit code; stderr: {err}");
    match row.out {
        Out::Help => {
            assert!(
                out.contains("Usage:") || out.starts_with("apiserver-proxy-sidecar "),
                "{what}: {out}"
            );
            assert!(err.is_empty(), "{what}: {err}");
        }
        Out::Usage => {
            assert!(err.starts_with("error: "), "{what}: {err}");
            // The usage hint, as pflag prints one.
            assert!(
                err.contains("For more information, try '--help'."),
                "{what}: {err}"
            );
            assert!(!err.contains("\"starting\""), "{what}: it started: {err}");
        }
        Out::Logs(logs) => {
            let log_file = ns.dir().join("x.log");
            let info_file = ns.dir().join("logs").join("apiserver-proxy-sidecar.INFO");
            let places: [(&str, Option<Fmt>, Option<String>, bool); 3] = [
                ("stderr", logs.stderr, Some(err.clone()), false),
                ("--log_file", logs.file, read(&log_file), true),
                ("--log_dir", logs.dir, read(&info_file), true),
            ];
            let mut all = String::new();
            for (place, fmt, text, is_file) in places {
                let text = text.unwrap_or_default();
                let where_ = format!("{what} {place}");
                match fmt {
                    Some(fmt) => {
                        let body = if is_file {
                            strip_file_header(&where_, &text, logs.file_header)
                        } else {
                            &text
                        };
                        check_lines(&where_, body, fmt, header);
                        assert!(body.contains("starting"), "{where_}: {body}");
                        all.push_str(body);
                    }
                    None => assert!(!text.contains("starting"), "{where_}: lines here: {text}"),
                }
            }
            assert!(
                all.contains(row.needle),
                "{what}: no {:?} in {all}",
                row.needle
            );
        }
    }
    if let Some(check) = row.extra {
        check(ns.dir(), &err);
    }
}

/// A runtime failure: exit 1, and the reason on stderr (klog's stderr threshold is ERROR) as
/// klog error lines only, while the info lines went to the file alone.
fn error_lines_on_stderr(dir: &Path, err: &str) {
    let header = klog_header();
    assert!(!err.is_empty(), "no error on stderr");
    for line in err.lines() {
        assert!(line.starts_with('E') && header.is_match(line), "{line}");
    }
    assert!(err.contains("cannot open the xtables lock"), "{err}");
    let file = read(&dir.join("x.log")).unwrap_or_default();
    assert!(
        file.contains("\"starting\"") && file.contains("cannot open the xtables lock"),
        "{file}"
    );
}

/// The start failed: the reason on stderr, plain, as klog's own failure is.
fn log_file_refused(_: &Path, err: &str) {
    assert!(
        err.contains("cannot open log file /nonexistent/dir/x.log"),
        "{err}"
    );
}

fn per_severity(dir: &Path, severity: &str) -> String {
    read(
        &dir.join("logs")
            .join(format!("apiserver-proxy-sidecar.{severity}")),
    )
    .unwrap_or_default()
}

/// klog's per-severity files: a warning is in the WARNING file and, as every line of a higher
/// severity, in the INFO file too.
fn warning_in_warning_and_info_files(dir: &Path, _: &str) {
    let warnings = per_severity(dir, "WARNING");
    assert!(
        warnings
            .lines()
            .any(|line| line.starts_with('W') && line.contains("ignoring positional")),
        "{warnings}"
    );
    assert!(!warnings.contains("\"starting\""), "{warnings}");
    assert!(per_severity(dir, "INFO").contains("ignoring positional"));
    assert!(
        !dir.join("logs")
            .join("apiserver-proxy-sidecar.ERROR")
            .exists()
    );
}

/// `--one_output`: the warning in the WARNING file only.
fn warning_in_its_own_file_only(dir: &Path, _: &str) {
    assert!(per_severity(dir, "WARNING").contains("ignoring positional"));
    assert!(!per_severity(dir, "INFO").contains("ignoring positional"));
}

fn wait_child(child: &mut std::process::Child, limit: Duration, what: &str) -> Option<i32> {
    let mut status = None;
    let done = wait_for(limit, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    if done.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what}: did not exit within {limit:?}");
    }
    status.and_then(|status| status.code())
}

#[test]
#[ignore = "needs root: network namespaces (make test runs it)"]
fn argument_vectors_of_the_go_binary() {
    let rows = rows();
    assert!(rows.len() >= 60, "only {} rows", rows.len());
    let header = klog_header();
    let dummy = dummy_supported();
    for (number, row) in rows.iter().enumerate() {
        run_row(number, row, &header, dummy);
    }
}
