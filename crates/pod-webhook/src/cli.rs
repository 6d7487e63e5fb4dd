// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Command-line flags, identical in name and default to the original Go webhook's and parsed as
//! its pflag parsed them, and their translation into a [`Config`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use common::goflag;
use common::klog::Verbosity;
use common::logging::LogFormat;

use crate::config::{Config, Limits, Listen, TlsFiles, TlsMinVersion};
use crate::mutate::MutateOptions;

/// A mutating admission webhook that sets KUBERNETES_SERVICE_HOST to the kube-apiserver's FQDN in
/// every container of every new pod.
#[derive(Debug, Parser)]
#[command(name = "apiserver-proxy-pod-webhook", version = crate::VERSION, args_override_self = true,
          mut_arg(Verbosity::ID, |v| v.help(VERBOSITY_HELP)))]
pub struct Cli {
    /// Fully qualified domain name of the kube-apiserver, e.g. example.com.
    #[arg(long, value_name = "FQDN", value_parser = parse_fqdn)]
    pub apiserver_fqdn: String,

    /// Directory that holds the server certificate and key.
    #[arg(long, value_name = "DIR")]
    pub cert_dir: PathBuf,

    /// File name of the server certificate (PEM, leaf first) in --cert-dir.
    #[arg(long, value_name = "NAME", default_value = "tls.crt")]
    pub cert_name: String,

    /// File name of the server private key (PEM) in --cert-dir.
    #[arg(long, value_name = "NAME", default_value = "tls.key")]
    pub key_name: String,

    /// File name of a CA certificate in --cert-dir; when set, reviews need a client certificate
    /// signed by it (the probes and /metrics do not). Empty: client certificates are not asked
    /// for.
    #[arg(long, value_name = "NAME", default_value = "")]
    pub client_ca_name: String,

    /// Address to listen on; empty: all addresses, IPv4 and IPv6.
    #[arg(long, value_name = "HOST", default_value = "")]
    pub host: String,

    /// Port to listen on.
    #[arg(long, value_name = "PORT", default_value_t = 9443)]
    pub port: u16,

    /// Lowest TLS version accepted.
    #[arg(long, value_name = "VERSION", default_value = "1.2",
          value_parser = PossibleValuesParser::new(["1.2", "1.3"]).map(|name| tls_min_version(&name)))]
    pub tls_min_version: TlsMinVersion,

    /// Leave containers that use envFrom alone: an env entry would override a value they take
    /// from a ConfigMap or Secret.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_parser = goflag::parse_bool,
          action = ArgAction::Set)]
    pub skip_env_from: bool,

    /// Offer HTTP/2 by ALPN besides HTTP/1.1.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true", value_parser = goflag::parse_bool,
          action = ArgAction::Set)]
    pub enable_http2: bool,

    /// Most connections served at once; further clients wait in the listen backlog.
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT.max_connections, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Close connections idle this long; keep it above the client's idle keep-alive (90s for
    /// kube-apiserver) so the client closes first; 1s to 1440m.
    #[arg(long, value_name = "DURATION", default_value = IDLE_TIMEOUT_DEFAULT.as_str(),
          value_parser = duration_between(IDLE_TIMEOUT))]
    pub idle_timeout: Duration,

    /// After SIGTERM: how long to keep serving, not ready, before closing connections; 0s to
    /// 60m.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration_between(SHUTDOWN_DELAY))]
    pub shutdown_delay: Duration,

    /// After the delay: how long in-flight requests get to finish; 0s to 60m.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration_between(SHUTDOWN_TIMEOUT))]
    pub shutdown_timeout: Duration,

    /// Log format: json (one object per line, as controller-runtime writes them) or text
    /// (klog's).
    // Possible values hidden: their doc comments would switch --help to its long format.
    #[arg(long = "logging-format", value_name = "FORMAT", value_enum,
          default_value_t = LogFormat::Json, hide_possible_values = true)]
    pub logging_format: LogFormat,

    #[command(flatten)]
    pub verbosity: Verbosity,

    /// Positional arguments: ignored, as Go's flag parsing ignores them.
    #[arg(hide = true, value_name = "IGNORED")]
    pub positional: Vec<String>,
}

/// `-v`'s help here: the webhook has none of klog's other flags, and RUST_LOG says more.
const VERBOSITY_HELP: &str = "Log verbosity: 0 info, 1-3 debug, 4 debug with the TLS and HTTP \
     libraries' lines, 5+ trace; RUST_LOG, when set, takes precedence";

/// The version a `--tls-min-version` value names; the parser lets only "1.2" and "1.3" through.
fn tls_min_version(name: &str) -> TlsMinVersion {
    match name {
        "1.3" => TlsMinVersion::Tls13,
        _ => TlsMinVersion::Tls12,
    }
}

/// `--idle-timeout`'s default, as the flag shows it: [`Limits::DEFAULT`]'s, in seconds.
static IDLE_TIMEOUT_DEFAULT: LazyLock<String> =
    LazyLock::new(|| format!("{}s", Limits::DEFAULT.idle_timeout.as_secs()));

impl Cli {
    /// Parses the command line as pflag does: the last of a repeated flag wins, positional
    /// arguments are kept to be ignored, except for Go's trap of a bool literal after a bool
    /// flag (`--enable-http2 false` is `--enable-http2` and an ignored `false`), which is
    /// refused with a hint.
    pub fn parse_argv(argv: &[OsString]) -> Result<Cli, clap::Error> {
        let mut command = Cli::command();
        goflag::refuse_bool_literal_after_bool_flag(&mut command, argv)?;
        let matches = command.try_get_matches_from_mut(argv)?;
        Cli::from_arg_matches(&matches)
    }

    /// The configuration these flags describe.
    pub fn into_config(self) -> Config {
        let in_dir = |name: &str| self.cert_dir.join(name);
        let tls = TlsFiles {
            cert: in_dir(&self.cert_name),
            key: in_dir(&self.key_name),
            client_ca: (!self.client_ca_name.is_empty()).then(|| in_dir(&self.client_ca_name)),
        };
        Config {
            mutate: MutateOptions {
                apiserver_fqdn: self.apiserver_fqdn,
                skip_env_from: self.skip_env_from,
            },
            listen: Listen {
                host: self.host,
                port: self.port,
            },
            tls,
            tls_min_version: self.tls_min_version,
            enable_http2: self.enable_http2,
            limits: Limits {
                max_connections: self.max_connections,
                idle_timeout: self.idle_timeout,
                ..Limits::default()
            },
            shutdown_delay: self.shutdown_delay,
            shutdown_timeout: self.shutdown_timeout,
            cert_reload_interval: Config::CERT_RELOAD_INTERVAL,
        }
    }
}

/// Validates a FQDN the way Kubernetes' `IsFullyQualifiedDomainName` does: one optional trailing
/// dot, then an RFC 1123 subdomain of at most 253 characters with at least two labels.
pub fn parse_fqdn(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    let name = value.strip_suffix('.').unwrap_or(value);
    if name.len() > 253 {
        return Err(format!(
            "must be no more than 253 characters (without the trailing dot), got {}",
            name.len()
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err("should be a domain with at least two segments separated by dots".into());
    }
    for label in labels {
        check_dns1123_label(label).map_err(|why| format!("label {label:?} {why}"))?;
    }
    Ok(value.to_owned())
}

fn check_dns1123_label(label: &str) -> Result<(), &'static str> {
    let bytes = label.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() {
        return Err("must not be empty");
    }
    if bytes.len() > 63 {
        return Err("must be no more than 63 characters");
    }
    let inner_ok = bytes.iter().all(|b| alnum(b) || *b == b'-');
    let ends_ok = bytes.first().is_some_and(alnum) && bytes.last().is_some_and(alnum);
    if inner_ok && ends_ok {
        Ok(())
    } else {
        Err(
            "must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
        )
    }
}

/// The values `--idle-timeout` accepts: at least a second (shorter closes connections between
/// a client's requests), at most a day.
pub const IDLE_TIMEOUT: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(24 * 3600));

/// The values `--shutdown-delay` accepts.
pub const SHUTDOWN_DELAY: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(3600));

/// The values `--shutdown-timeout` accepts.
pub const SHUTDOWN_TIMEOUT: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(3600));

/// A parser of durations within `(min, max)`, both included; the error names both.
pub fn duration_between(
    (min, max): (Duration, Duration),
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |value| {
        let duration = parse_duration(value)?;
        if (min..=max).contains(&duration) {
            Ok(duration)
        } else {
            Err(format!(
                "{value:?} is out of range: must be between {} and {}",
                show_duration(min),
                show_duration(max)
            ))
        }
    }
}

/// A duration in the largest of ms, s and m that shows it whole, as the flags take it.
fn show_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Parses a duration in Go's syntax, as the sidecar's flags and the Go original do
/// (`time.ParseDuration`: `500ms`, `5s`, `1.5m`, `1m30s`, `2h`); not negative.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let nanos = goflag::parse_duration_nanos(value)?;
    let nanos = u64::try_from(nanos).map_err(|_| format!("{value:?} is negative"))?;
    Ok(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqdn_like_kubernetes() {
        let long_label = "a".repeat(63);
        let ok = [
            "foo.bar.",
            "foo.bar",
            "a.b",
            "api.my-cluster.example.com",
            "1.2",
            &format!("{long_label}.{long_label}.{long_label}.{}", "a".repeat(61)),
        ];
        for v in ok {
            assert_eq!(parse_fqdn(v).as_deref(), Ok(v), "{v}");
        }
        let too_long = format!("{long_label}.{long_label}.{long_label}.{}", "a".repeat(62));
        let bad = [
            "",
            ".",
            "localhost",
            "localhost.",
            "Foo.bar",
            "foo.bar..",
            "foo..bar",
            ".foo.bar",
            "-foo.bar",
            "foo-.bar",
            "foo_bar.baz",
            "foo.bar/",
            &format!("{}a.b", "a".repeat(63)),
            &too_long,
        ];
        for v in bad {
            assert!(parse_fqdn(v).is_err(), "{v:?} must be rejected");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        // Go's grammar, as every duration flag of both binaries takes it.
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "5", "s", "5d", "-1s", "1.5.s", "9223372036854775808ns"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn duration_bounds() {
        let idle = duration_between(IDLE_TIMEOUT);
        let cases: &[(&str, Result<Duration, &str>)] = &[
            ("1s", Ok(Duration::from_secs(1))),
            ("1000ms", Ok(Duration::from_secs(1))),
            ("120s", Ok(Duration::from_secs(120))),
            ("1440m", Ok(Duration::from_secs(86_400))),
            (
                "0s",
                Err("\"0s\" is out of range: must be between 1s and 1440m"),
            ),
            ("999ms", Err("must be between 1s and 1440m")),
            ("1441m", Err("must be between 1s and 1440m")),
            ("2562047h", Err("must be between 1s and 1440m")),
            // Beyond Go's durations: refused as Go refuses them.
            ("9223372036854775807s", Err("is too large")),
            ("18446744073709551616s", Err("is too large")),
        ];
        for (value, want) in cases {
            match (idle(value), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{value}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{value}: {got}"),
                (got, want) => panic!("{value}: {got:?}, want {want:?}"),
            }
        }
        let delay = duration_between(SHUTDOWN_DELAY);
        assert_eq!(delay("0s"), Ok(Duration::ZERO));
        assert_eq!(
            delay("61m"),
            Err("\"61m\" is out of range: must be between 0s and 60m".to_owned())
        );
        assert_eq!(show_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn defaults_match_the_original() {
        let cli = Cli::try_parse_from([
            "apiserver-proxy-pod-webhook",
            "--apiserver-fqdn=foo.bar.",
            "--cert-dir",
            "/certs",
        ])
        .expect("parses");
        let config = cli.into_config();
        assert_eq!(config.tls.cert, PathBuf::from("/certs/tls.crt"));
        assert_eq!(config.tls.key, PathBuf::from("/certs/tls.key"));
        assert_eq!(config.tls.client_ca, None);
        assert_eq!(config.listen.host, "");
        assert_eq!(config.listen.port, 9443);
        assert_eq!(config.tls_min_version, TlsMinVersion::Tls12);
        assert!(!config.enable_http2);
        assert!(!config.mutate.skip_env_from);
        assert_eq!(config.limits.idle_timeout, Duration::from_secs(120));
    }

    fn parse_argv(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::parse_argv(&goflag::argv("apiserver-proxy-pod-webhook", args))
    }

    #[test]
    fn the_last_of_a_repeated_flag_wins() {
        let cli = parse_argv(&[
            "--apiserver-fqdn=a.b",
            "--cert-dir=/a",
            "--port=1",
            "--enable-http2",
            "--logging-format=text",
            "--apiserver-fqdn=c.d",
            "--cert-dir",
            "/b",
            "--port=2",
            "--enable-http2=false",
            "--logging-format=json",
            "-v=3",
            "-v=1",
        ])
        .expect("parses");
        assert_eq!(cli.apiserver_fqdn, "c.d");
        assert_eq!(cli.cert_dir, PathBuf::from("/b"));
        assert_eq!(cli.port, 2);
        assert!(!cli.enable_http2);
        assert_eq!(cli.logging_format, LogFormat::Json);
        assert_eq!(cli.verbosity.v, 1);
    }

    #[test]
    fn positional_arguments_are_kept_to_be_ignored() {
        let cli = parse_argv(&[
            "serve",
            "--apiserver-fqdn=a.b",
            "--cert-dir=/c",
            "--skip-env-from=true",
            "false",
            "--",
            "--port=1",
        ])
        .expect("parses");
        assert_eq!(cli.positional, ["serve", "false", "--port=1"]);
        assert!(cli.skip_env_from);
        assert_eq!(cli.port, 9443);
    }

    #[test]
    fn a_bool_literal_after_a_bool_flag_is_refused() {
        for (args, hint) in [
            (
                &["--enable-http2", "false"][..],
                "write --enable-http2=false",
            ),
            (&["--skip-env-from", "true"], "write --skip-env-from=true"),
            (&["--enable-http2", "0"], "write --enable-http2=0"),
        ] {
            let all: Vec<&str> = ["--apiserver-fqdn=a.b", "--cert-dir=/c"]
                .into_iter()
                .chain(args.iter().copied())
                .collect();
            let error = parse_argv(&all).expect_err("refused");
            assert_eq!(error.exit_code(), 2, "{args:?}");
            assert!(error.to_string().contains(hint), "{args:?}: {error}");
        }
    }

    #[test]
    fn usage_errors_exit_2() {
        for args in [
            &["--cert-dir=/c"][..],
            &["--apiserver-fqdn=a.b"],
            &["--apiserver-fqdn=a.b", "--cert-dir=/c", "--nope"],
            &["--apiserver-fqdn=a.b", "--cert-dir=/c", "--port=x"],
            &[
                "--apiserver-fqdn=a.b",
                "--cert-dir=/c",
                "--enable-http2=maybe",
            ],
            &[
                "--apiserver-fqdn=a.b",
                "--cert-dir=/c",
                "--logging-format=yaml",
            ],
        ] {
            let error = parse_argv(args).expect_err("refused");
            assert_eq!(error.exit_code(), 2, "{args:?}: {error}");
        }
        let help = parse_argv(&["--help"]).expect_err("help");
        assert_eq!(help.exit_code(), 0);
    }

    #[test]
    fn client_ca_in_cert_dir() {
        let cli = Cli::try_parse_from([
            "x",
            "--apiserver-fqdn=foo.bar.",
            "--cert-dir=/c",
            "--client-ca-name=ca.crt",
            "--tls-min-version=1.3",
        ])
        .expect("parses");
        let config = cli.into_config();
        assert_eq!(config.tls.client_ca, Some(PathBuf::from("/c/ca.crt")));
        assert_eq!(config.tls_min_version, TlsMinVersion::Tls13);
    }
}
