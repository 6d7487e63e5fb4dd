// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Command-line flags, parsed as the Go binary's pflag and klog parse them, and their validation
//! into a [`Config`].

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser, ValueEnum};

use common::goflag;
use common::klog::{self, KlogArgs};
use common::logging::LogFormat;

use crate::address;

/// Longest interface name the kernel accepts (IFNAMSIZ minus the terminating NUL).
pub const MAX_INTERFACE_NAME_LEN: usize = 15;

/// Shortest `--sync-interval`: a steady tick spawns one `iptables-save` (about 2 ms of CPU), so
/// anything shorter turns the sidecar into a busy loop.
pub const MIN_SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// Longest `--sync-interval`: beyond a day, repairs the kernel does not announce wait too long.
pub const MAX_SYNC_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
/// Shortest `--xtables-lock-timeout`: kube-proxy may hold the lock that long for a normal restore.
pub const MIN_LOCK_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest `--xtables-lock-timeout`: a sync stuck longer only delays reporting the busy lock.
pub const MAX_LOCK_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Keeps the apiserver-proxy IP address on a local interface of this node, and optionally the
/// iptables rules that let traffic to it bypass connection tracking.
#[derive(Debug, Parser)]
#[command(name = "apiserver-proxy-sidecar", version = crate::VERSION, max_term_width = 100,
          args_override_self = true)]
pub struct Args {
    /// ip-address on which the proxy is listening (IPv4 or IPv6); a comma-separated list for
    /// dual-stack, e.g. 10.96.0.2,fd00:10:96::2.
    #[arg(long, value_name = "IP[,IP...]")]
    pub ip_address: Option<String>,

    /// [optional] addresses to remove from every interface (full-length prefix only), e.g. the
    /// Go original's under an earlier IP, which carry no mark.
    #[arg(long, value_name = "IP[,IP...]")]
    pub remove_ip_address: Option<String>,

    /// [optional] name of the interface to add address to; created as a dummy link when missing.
    #[arg(long, value_name = "NAME", default_value = "lo")]
    pub interface: String,

    /// [optional] port on which the proxy is listening.
    #[arg(long, value_name = "PORT", default_value = "443")]
    pub port: String,

    /// [optional] indicates whether iptables rules should be setup.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_parser = goflag::parse_bool,
          action = ArgAction::Set)]
    pub setup_iptables: bool,

    /// [optional] interval to check for iptables rules (Go duration: 1m, 90s, 1.5m, 300ms;
    /// 100ms to 24h).
    #[arg(long, value_name = "DURATION", default_value = "1m0s", value_parser = parse_sync_interval)]
    pub sync_interval: Duration,

    /// [optional] indicates if the sidecar should run as a daemon.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true", value_parser = goflag::parse_bool,
          action = ArgAction::Set)]
    pub daemon: bool,

    /// [optional] indicates whether created interface and iptables should be removed on exit.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_parser = goflag::parse_bool,
          action = ArgAction::Set)]
    pub cleanup: bool,

    /// [optional] own the interface: bring it up when it is down, and with --cleanup delete it
    /// on exit even when an earlier run created it (only ever a dummy link, never lo).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_parser = goflag::parse_bool,
          action = ArgAction::Set)]
    pub manage_interface: bool,

    /// [optional] iptables backend: auto picks the one that already holds the host's rules
    /// (kubelet's canary chains first, then the larger rule count; nft on a tie).
    #[arg(long, value_name = "BACKEND", value_enum, default_value_t = BackendChoice::Auto)]
    pub iptables_backend: BackendChoice,

    /// [optional] how --setup-iptables keeps the rules: iptables (the five rules, through the
    /// host's iptables) or nftables (the three notrack rules in tables of the sidecar's own,
    /// over netlink; the host's firewall must accept untracked packets to the proxy).
    #[arg(long, value_name = "MODE", value_enum, default_value_t = FirewallChoice::Iptables)]
    pub firewall: FirewallChoice,

    /// [optional] the host's xtables lock, shared with every other iptables user on the node.
    #[arg(long, value_name = "PATH", default_value = "/run/xtables.lock")]
    pub xtables_lock: PathBuf,

    /// [optional] longest wait for the xtables lock before a sync gives up and retries later
    /// (100ms to 5m).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_lock_timeout)]
    pub xtables_lock_timeout: Duration,

    /// [optional] address for /healthz, /readyz and /metrics, e.g. 127.0.0.1:16910; off when
    /// empty.
    #[arg(long, value_name = "HOST:PORT", default_value = "")]
    pub metrics_bind_address: String,

    /// [optional] react to the kernel's address and link notifications at once instead of
    /// waiting for the next sync; turn off to rely on --sync-interval alone.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "true", default_missing_value = "true", value_parser = goflag::parse_bool,
          action = ArgAction::Set)]
    pub watch_kernel_events: bool,

    /// Sets the log format: text (klog's) or json (one object per line).
    #[arg(long = "logging-format", value_name = "FORMAT", value_enum,
          default_value_t = LogFormat::Text)]
    pub logging_format: LogFormat,

    #[command(flatten)]
    pub klog: KlogArgs,

    /// Positional arguments: ignored, as Go's flag parsing ignores them.
    #[arg(hide = true, value_name = "IGNORED")]
    pub positional: Vec<String>,
}

/// The command line, parsed.
#[derive(Debug)]
pub struct Parsed {
    pub args: Args,
    /// klog flags the command line set that have no effect here.
    pub without_effect: Vec<&'static str>,
}

impl Args {
    /// Parses the command line as pflag does: the last of a repeated flag wins, positional
    /// arguments are kept to be ignored, except for Go's trap of a bool literal after a bool
    /// flag (`--daemon false` would run a daemon), which is refused with a hint.
    pub fn parse_argv(argv: &[OsString]) -> Result<Parsed, clap::Error> {
        let mut command = Args::command();
        goflag::refuse_bool_literal_after_bool_flag(&mut command, argv)?;
        let matches = command.try_get_matches_from_mut(argv)?;
        let args = Args::from_arg_matches(&matches)?;
        Ok(Parsed {
            args,
            without_effect: klog::without_effect(&matches),
        })
    }

    /// A usage error about a flag's value, with the usage hint (exit code 2).
    pub fn usage_error(message: impl std::fmt::Display) -> clap::Error {
        Args::command().error(ErrorKind::ValueValidation, message)
    }
}

fn parse_sync_interval(text: &str) -> Result<Duration, String> {
    goflag::parse_duration_within(text, MIN_SYNC_INTERVAL, MAX_SYNC_INTERVAL)
}

fn parse_lock_timeout(text: &str) -> Result<Duration, String> {
    goflag::parse_duration_within(text, MIN_LOCK_TIMEOUT, MAX_LOCK_TIMEOUT)
}

/// Which iptables implementation writes the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// Pick the backend that already holds the host's rules.
    Auto,
    /// iptables-nft (nf_tables kernel API).
    Nft,
    /// iptables-legacy (x_tables kernel API).
    Legacy,
}

/// How the rules are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FirewallChoice {
    /// The five rules through the host's iptables.
    Iptables,
    /// The notrack rules in nf_tables tables of the sidecar's own, over netlink.
    Nftables,
}

/// What the sidecar is asked to do, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The proxy's addresses, at least one, no two alike.
    pub ips: Vec<IpAddr>,
    /// Addresses to remove wherever they are (`--remove-ip-address`), none of `ips`.
    pub remove_ips: Vec<IpAddr>,
    pub interface: String,
    pub port: u16,
    pub setup_iptables: bool,
    pub sync_interval: Duration,
    pub daemon: bool,
    pub cleanup: bool,
    pub manage_interface: bool,
    pub iptables_backend: BackendChoice,
    pub firewall: FirewallChoice,
    pub xtables_lock: PathBuf,
    pub xtables_lock_timeout: Duration,
    pub metrics_bind_address: Option<SocketAddr>,
    pub watch_kernel_events: bool,
}

impl Config {
    /// The proxy's addresses as `--ip-address` lists them, for logs: `10.96.0.2,fd00::2`.
    pub fn ip_list(&self) -> String {
        let shown: Vec<String> = self.ips.iter().map(ToString::to_string).collect();
        shown.join(",")
    }
}

/// A flag value that cannot work, with the flag's name in the message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--ip-address is required, e.g. --ip-address=10.96.0.2")]
    MissingIp,
    #[error("{0}={1:?} is not an IPv4 or IPv6 address")]
    InvalidIp(&'static str, String),
    #[error("{0}={1} cannot be used: {2}")]
    UnusableIp(&'static str, IpAddr, &'static str),
    #[error("{0}={1:?} has an empty element")]
    EmptyIpElement(&'static str, String),
    #[error("{0}: {1:?} is given twice (as {2})")]
    DuplicateIp(&'static str, String, IpAddr),
    #[error("--remove-ip-address: {0} is also in --ip-address")]
    RemoveWanted(IpAddr),
    #[error("--interface={0:?} is not a valid interface name: {1}")]
    InvalidInterface(String, String),
    #[error("--port={0:?} is not a port number: use 1 to 65535")]
    InvalidPort(String),
    #[error("--metrics-bind-address={0:?} is not HOST:PORT, e.g. 127.0.0.1:16910 or [::1]:16910")]
    InvalidMetricsAddress(String),
}

impl Args {
    /// Validates the flags into a [`Config`].
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let ip_text = self.ip_address.ok_or(ConfigError::MissingIp)?;
        let ips = parse_ip_list(IP_FLAG, &ip_text)?;
        let remove_ips = match self.remove_ip_address {
            Some(text) => parse_ip_list(REMOVE_FLAG, &text)?,
            None => Vec::new(),
        };
        if let Some(ip) = remove_ips.iter().find(|ip| ips.contains(ip)) {
            return Err(ConfigError::RemoveWanted(*ip));
        }
        validate_interface_name(&self.interface)?;
        let port = parse_port(&self.port)?;
        let metrics_bind_address = match self.metrics_bind_address.trim() {
            "" => None,
            text => Some(
                text.parse()
                    .map_err(|_| ConfigError::InvalidMetricsAddress(text.to_string()))?,
            ),
        };
        Ok(Config {
            ips,
            remove_ips,
            interface: self.interface,
            port,
            setup_iptables: self.setup_iptables,
            sync_interval: self.sync_interval,
            daemon: self.daemon,
            cleanup: self.cleanup,
            manage_interface: self.manage_interface,
            iptables_backend: self.iptables_backend,
            firewall: self.firewall,
            xtables_lock: self.xtables_lock,
            xtables_lock_timeout: self.xtables_lock_timeout,
            metrics_bind_address,
            watch_kernel_events: self.watch_kernel_events,
        })
    }
}

const IP_FLAG: &str = "--ip-address";
const REMOVE_FLAG: &str = "--remove-ip-address";

/// Parses a comma-separated list of addresses (node-local-dns's `-localip` form), each as
/// [`parse_ip`] does. An empty element or an address given twice (compared parsed, so
/// `fd00::2,fd00:0::2` is one twice) is refused, naming it.
pub fn parse_ip_list(flag: &'static str, text: &str) -> Result<Vec<IpAddr>, ConfigError> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for element in text.split(',') {
        if element.trim().is_empty() {
            return Err(ConfigError::EmptyIpElement(flag, text.to_string()));
        }
        let ip = parse_ip_of(flag, element)?;
        if ips.contains(&ip) {
            return Err(ConfigError::DuplicateIp(
                flag,
                element.trim().to_string(),
                ip,
            ));
        }
        ips.push(ip);
    }
    Ok(ips)
}

/// Parses the proxy's address; an IPv4-mapped IPv6 address counts as IPv4, as in Go. Addresses
/// that cannot keep global scope or cannot be reached by pods are refused.
pub fn parse_ip(text: &str) -> Result<IpAddr, ConfigError> {
    parse_ip_of(IP_FLAG, text)
}

fn parse_ip_of(flag: &'static str, text: &str) -> Result<IpAddr, ConfigError> {
    let ip: IpAddr = text
        .trim()
        .parse()
        .map_err(|_| ConfigError::InvalidIp(flag, text.to_string()))?;
    let ip = ip.to_canonical();
    match address::unusable_reason(ip) {
        Some(reason) => Err(ConfigError::UnusableIp(flag, ip, reason)),
        None => Ok(ip),
    }
}

/// Checks a name the way the kernel's `dev_valid_name` does, and refuses `%`, which the kernel
/// expands (`a%d` becomes `a0`, then `a1`, ...): the link would never be found by its name again.
pub fn validate_interface_name(name: &str) -> Result<(), ConfigError> {
    let invalid = |why: String| Err(ConfigError::InvalidInterface(name.to_string(), why));
    if name.is_empty() {
        return invalid("it is empty".into());
    }
    if name.len() > MAX_INTERFACE_NAME_LEN {
        return invalid(format!(
            "it is {} bytes long, the kernel allows at most {MAX_INTERFACE_NAME_LEN}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return invalid("\".\" and \"..\" are reserved".into());
    }
    if name.contains('%') {
        return invalid("it contains '%', which the kernel expands into a number".into());
    }
    // The kernel checks bytes, and its isspace() counts 0xa0 (a byte of UTF-8 "à", for one).
    if let Some(byte) = name
        .bytes()
        .find(|b| matches!(b, b'/' | b':' | b'\0' | b'\t'..=b'\r' | b' ' | 0xa0))
    {
        let shown = match byte {
            b' '..=b'~' => format!("{:?}", char::from(byte)),
            _ => format!("the byte {byte:#04x}"),
        };
        return invalid(format!("it contains {shown}"));
    }
    Ok(())
}

/// Parses `--port`, a string flag in the original binary.
pub fn parse_port(text: &str) -> Result<u16, ConfigError> {
    match text.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(ConfigError::InvalidPort(text.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let argv = std::iter::once("apiserver-proxy-sidecar").chain(args.iter().copied());
        Args::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .into_config()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_the_original() {
        let config = parse(&["--ip-address=10.96.0.2"]).unwrap();
        assert_eq!(config.ips, [IpAddr::from([10, 96, 0, 2])]);
        assert!(config.remove_ips.is_empty());
        assert_eq!(config.interface, "lo");
        assert_eq!(config.port, 443);
        assert!(!config.setup_iptables);
        assert_eq!(config.sync_interval, Duration::from_secs(60));
        assert!(config.daemon);
        assert!(!config.cleanup);
        assert!(!config.manage_interface);
        assert_eq!(config.iptables_backend, BackendChoice::Auto);
        assert_eq!(config.metrics_bind_address, None);
    }

    #[test]
    fn booleans_take_every_pflag_form() {
        let config = parse(&[
            "--ip-address",
            "10.96.0.2",
            "--cleanup",
            "--setup-iptables=true",
            "--daemon=false",
            "--manage-interface=T",
        ])
        .unwrap();
        assert!(config.cleanup && config.setup_iptables && config.manage_interface);
        assert!(!config.daemon);
        let config = parse(&["--ip-address=10.96.0.2", "--daemon=0", "--cleanup=False"]).unwrap();
        assert!(!config.daemon && !config.cleanup);
    }

    #[test]
    fn values_in_go_syntax() {
        let config = parse(&[
            "--ip-address=fd00::10",
            "--port=6443",
            "--sync-interval=1.5m",
            "--interface=apiserver-proxy",
            "--iptables-backend=legacy",
            "--metrics-bind-address=[::1]:16910",
            "-v=4",
        ])
        .unwrap();
        assert_eq!(config.ips, ["fd00::10".parse::<IpAddr>().unwrap()]);
        assert_eq!(config.port, 6443);
        assert_eq!(config.sync_interval, Duration::from_secs(90));
        assert_eq!(config.interface, "apiserver-proxy");
        assert_eq!(config.iptables_backend, BackendChoice::Legacy);
        assert_eq!(
            config.metrics_bind_address,
            Some("[::1]:16910".parse().unwrap())
        );
    }

    #[test]
    fn interface_names_the_kernel_accepts() {
        for name in [
            "lo",
            "apiserver-proxy",
            "a",
            "eth0.100",
            "br_0",
            "abcdefghijklmno",
            "dummy+x",
            "wg@1",
            "ünï",
        ] {
            assert_eq!(validate_interface_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn bounds_of_the_durations() {
        let parse_interval = |text: &str| parse(&["--ip-address=10.96.0.2", text]);
        for (flag, get) in [
            (
                "--sync-interval",
                (|c: &Config| c.sync_interval) as fn(&Config) -> Duration,
            ),
            ("--xtables-lock-timeout", |c: &Config| {
                c.xtables_lock_timeout
            }),
        ] {
            let min = parse_interval(&format!("{flag}=100ms")).map(|c| get(&c));
            assert_eq!(min, Ok(Duration::from_millis(100)), "{flag}");
        }
        assert_eq!(
            parse_interval("--sync-interval=24h").map(|c| c.sync_interval),
            Ok(MAX_SYNC_INTERVAL)
        );
        assert_eq!(
            parse_interval("--xtables-lock-timeout=5m").map(|c| c.xtables_lock_timeout),
            Ok(MAX_LOCK_TIMEOUT)
        );
    }

    #[test]
    fn ipv4_mapped_address_counts_as_ipv4() {
        assert_eq!(
            parse_ip("::ffff:10.96.0.2"),
            Ok(IpAddr::from([10, 96, 0, 2]))
        );
    }

    fn parse_argv(args: &[&str]) -> Result<Parsed, clap::Error> {
        Args::parse_argv(&goflag::argv("apiserver-proxy-sidecar", args))
    }

    #[test]
    fn klog_flags_are_accepted() {
        let parsed = parse_argv(&[
            "--ip-address=10.96.0.2",
            "--v=2",
            "--vmodule=foo=3",
            "--logtostderr=true",
            "--alsologtostderr",
            "--alsologtostderrthreshold=WARNING",
            "--log_dir=/tmp",
            "--log_file=/tmp/x.log",
            "--log_file_max_size=10",
            "--skip_headers",
            "--skip_log_headers=false",
            "--stderrthreshold=WARNING",
            "--legacy_stderr_threshold_behavior=false",
            "--one_output",
            "--add_dir_header",
            "--log_backtrace_at=main.go:12",
        ])
        .unwrap();
        assert_eq!(parsed.args.klog.verbosity.v, 2);
        assert_eq!(parsed.args.klog.log_file, "/tmp/x.log");
        assert!(parsed.args.klog.one_output && !parsed.args.klog.legacy_stderr_threshold_behavior);
        // Given on the command line counts, whatever the value (even the default's).
        assert_eq!(
            parsed.without_effect,
            ["--vmodule", "--log_file_max_size", "--log_backtrace_at"]
        );
        let parsed = parse_argv(&["--ip-address=10.96.0.2"]).unwrap();
        assert!(parsed.without_effect.is_empty());
        assert_eq!(parsed.args.logging_format, LogFormat::Text);
    }

    #[test]
    fn parsed_as_pflag_parses() {
        // The last of a repeated flag wins.
        let parsed = parse_argv(&[
            "--ip-address=10.96.0.2",
            "--ip-address=10.96.0.3",
            "--daemon",
            "--cleanup",
            "--daemon=false",
            "--v=1",
            "-v=3",
            "--logging-format=json",
            "--logging-format=text",
        ])
        .unwrap();
        let (klog_v, format) = (parsed.args.klog.verbosity.v, parsed.args.logging_format);
        let config = parsed.args.into_config().unwrap();
        assert_eq!(config.ips, [IpAddr::from([10, 96, 0, 3])]);
        assert!(!config.daemon && config.cleanup);
        assert_eq!((klog_v, format), (3, LogFormat::Text));
        // Positional arguments are kept, to be ignored.
        let parsed =
            parse_argv(&["run", "--ip-address=10.96.0.2", "extra", "--", "--daemon"]).unwrap();
        assert_eq!(parsed.args.positional, ["run", "extra", "--daemon"]);
        assert!(parsed.args.daemon);
        // Go's trap is refused with a hint, as a usage error.
        for args in [
            &["--ip-address=10.96.0.2", "--daemon", "false"][..],
            &["--setup-iptables", "0", "--ip-address=10.96.0.2"],
            &["--ip-address=10.96.0.2", "--cleanup", "true"],
        ] {
            let err = parse_argv(args).expect_err(&format!("{args:?}"));
            assert_eq!(err.exit_code(), 2, "{args:?}");
            assert!(err.to_string().contains("Go would set"), "{err}");
        }
        // Not a bool literal: an ignored positional argument, as in Go.
        let parsed = parse_argv(&["--ip-address=10.96.0.2", "--daemon", "no"]).unwrap();
        assert!(parsed.args.daemon);
        assert_eq!(parsed.args.positional, ["no"]);
    }

    #[test]
    fn usage_errors_exit_2_help_exits_0() {
        for args in [
            &["--bogus"][..],
            &["--daemon=no"],
            &["--sync-interval=90"],
            &["--v=loud"],
            &["--logging-format=yaml"],
        ] {
            let err = parse_argv(args).expect_err(&format!("{args:?}"));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
        assert_eq!(Args::usage_error("--port=\"0\"").exit_code(), 2);
        for args in [["--help"], ["-h"], ["--version"]] {
            assert_eq!(parse_argv(&args).expect_err("help").exit_code(), 0);
        }
    }

    #[test]
    fn address_lists() {
        let ips = |list: &[&str]| -> Vec<IpAddr> {
            list.iter()
                .map(|text| text.parse().expect("a test address"))
                .collect()
        };
        // flags, wanted addresses, addresses to remove
        type Case = (
            &'static [&'static str],
            &'static [&'static str],
            &'static [&'static str],
        );
        let cases: &[Case] = &[
            (&["--ip-address=10.96.0.2"], &["10.96.0.2"], &[]),
            (
                &["--ip-address=10.96.0.2,fd00:10:96::2"],
                &["10.96.0.2", "fd00:10:96::2"],
                &[],
            ),
            (
                &["--ip-address= fd00::2 , 10.96.0.2"],
                &["fd00::2", "10.96.0.2"],
                &[],
            ),
            (
                &["--ip-address=10.96.0.2,10.96.0.3"],
                &["10.96.0.2", "10.96.0.3"],
                &[],
            ),
            (
                &[
                    "--ip-address=10.96.0.2",
                    "--remove-ip-address=10.96.0.9,fd00::9",
                ],
                &["10.96.0.2"],
                &["10.96.0.9", "fd00::9"],
            ),
            // The last of a repeated flag wins.
            (
                &[
                    "--ip-address=10.96.0.2",
                    "--remove-ip-address=10.96.0.2",
                    "--remove-ip-address=10.96.0.9",
                ],
                &["10.96.0.2"],
                &["10.96.0.9"],
            ),
        ];
        for (flags, want, remove) in cases {
            let config = parse(flags).expect("valid flags");
            assert_eq!(config.ips, ips(want), "{flags:?}");
            assert_eq!(config.remove_ips, ips(remove), "{flags:?}");
        }
    }

    #[test]
    fn every_bad_value_names_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "--ip-address is required"),
            (
                &["--ip-address=10.96.0"],
                "--ip-address=\"10.96.0\" is not an IPv4 or IPv6",
            ),
            (&["--ip-address=example.com"], "is not an IPv4 or IPv6"),
            (&["--ip-address=0.0.0.0"], "unspecified"),
            (&["--ip-address=::"], "unspecified"),
            (&["--ip-address=224.0.0.1"], "multicast"),
            (&["--ip-address=255.255.255.255"], "broadcast"),
            (
                &["--ip-address=::1"],
                "--ip-address=::1 cannot be used: it is the IPv6 loopback address",
            ),
            (
                &["--ip-address=::ffff:127.0.0.1"],
                "--ip-address=127.0.0.1 cannot be used: it is an IPv4 loopback address",
            ),
            (&["--ip-address=fe80::1"], "link-local"),
            (
                &["--ip-address=10.96.0.2", "--port=0"],
                "--port=\"0\" is not a port number",
            ),
            (
                &["--ip-address=10.96.0.2", "--port=65536"],
                "--port=\"65536\"",
            ),
            (
                &["--ip-address=10.96.0.2", "--port=https"],
                "--port=\"https\"",
            ),
            (
                &["--ip-address=10.96.0.2", "--interface=a-very-long-name0"],
                "at most 15",
            ),
            (&["--ip-address=10.96.0.2", "--interface="], "it is empty"),
            (
                &["--ip-address=10.96.0.2", "--interface=a/b"],
                "contains '/'",
            ),
            (
                &["--ip-address=10.96.0.2", "--interface=a b"],
                "contains ' '",
            ),
            (
                &["--ip-address=10.96.0.2", "--interface=a%d"],
                "--interface=\"a%d\" is not a valid interface name: it contains '%'",
            ),
            (
                &["--ip-address=10.96.0.2", "--interface=a:1"],
                "contains ':'",
            ),
            (
                &["--ip-address=10.96.0.2", "--interface=a\tb"],
                "contains the byte 0x09",
            ),
            (
                &["--ip-address=10.96.0.2", "--interface=là"],
                "contains the byte 0xa0",
            ),
            (&["--ip-address=10.96.0.2", "--interface=.."], "reserved"),
            (
                &["--ip-address=10.96.0.2", "--sync-interval=1ns"],
                "'--sync-interval <DURATION>': duration \"1ns\" is below the minimum of 100ms",
            ),
            (
                &["--ip-address=10.96.0.2", "--sync-interval=25h"],
                "above the maximum of 24h",
            ),
            (
                &[
                    "--ip-address=10.96.0.2",
                    "--sync-interval=9223372036854775808ns",
                ],
                "too large",
            ),
            (
                &["--ip-address=10.96.0.2", "--xtables-lock-timeout=1ms"],
                "'--xtables-lock-timeout <DURATION>': duration \"1ms\" is below the minimum of 100ms",
            ),
            (
                &["--ip-address=10.96.0.2", "--xtables-lock-timeout=292y"],
                "unknown unit",
            ),
            (
                &["--ip-address=10.96.0.2", "--xtables-lock-timeout=6m"],
                "above the maximum of 5m",
            ),
            (
                &["--ip-address=10.96.0.2", "--sync-interval=0s"],
                "greater than zero",
            ),
            (
                &["--ip-address=10.96.0.2", "--sync-interval=-1m"],
                "greater than zero",
            ),
            (
                &["--ip-address=10.96.0.2", "--sync-interval=60"],
                "missing unit",
            ),
            (
                &["--ip-address=10.96.0.2", "--sync-interval=1d"],
                "unknown unit",
            ),
            (
                &["--ip-address=10.96.0.2", "--daemon=maybe"],
                "invalid boolean",
            ),
            (
                &["--ip-address=10.96.0.2", "--iptables-backend=ebpf"],
                "--iptables-backend",
            ),
            (
                &["--ip-address=10.96.0.2", "--metrics-bind-address=:x"],
                "--metrics-bind-address",
            ),
            (&["--ip-address=10.96.0.2", "--v=loud"], "--v"),
            (
                &["--ip-address=10.96.0.2", "--stderrthreshold=LOUD"],
                "invalid severity",
            ),
            (
                &["--ip-address=10.96.0.2", "--no-such-flag"],
                "--no-such-flag",
            ),
            (
                &["--ip-address=10.96.0.2,"],
                "--ip-address=\"10.96.0.2,\" has an empty element",
            ),
            (&["--ip-address=,fd00::2"], "has an empty element"),
            (&["--ip-address=10.96.0.2,,fd00::2"], "has an empty element"),
            (
                &["--ip-address=fd00::2,fd00:0::2"],
                "--ip-address: \"fd00:0::2\" is given twice (as fd00::2)",
            ),
            (
                &["--ip-address=10.96.0.2,::ffff:10.96.0.2"],
                "\"::ffff:10.96.0.2\" is given twice (as 10.96.0.2)",
            ),
            (
                &["--ip-address=10.96.0.2,fd00::x"],
                "--ip-address=\"fd00::x\" is not an IPv4 or IPv6 address",
            ),
            (
                &["--ip-address=10.96.0.2,fe80::1"],
                "--ip-address=fe80::1 cannot be used: it is an IPv6 link-local",
            ),
            (
                &[
                    "--ip-address=10.96.0.2",
                    "--remove-ip-address=10.96.0.9,bad",
                ],
                "--remove-ip-address=\"bad\" is not an IPv4 or IPv6 address",
            ),
            (
                &[
                    "--ip-address=10.96.0.2",
                    "--remove-ip-address=10.96.0.9,10.96.0.9",
                ],
                "--remove-ip-address: \"10.96.0.9\" is given twice",
            ),
            (
                &[
                    "--ip-address=10.96.0.2,fd00::2",
                    "--remove-ip-address=10.96.0.9,fd00:0::2",
                ],
                "--remove-ip-address: fd00::2 is also in --ip-address",
            ),
        ];
        for (args, needle) in cases {
            let err = parse(args).expect_err(&format!("{args:?} should fail"));
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }
}
