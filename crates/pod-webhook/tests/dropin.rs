// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! A drop-in for the Go webhook: the binary run over argument vectors as manifests written for
//! the Go binary invoke it (the original README's example, a Gardener-style deployment,
//! overlays that repeat flags, positional arguments, bad values, `--help`), each checked for
//! its exit code and its effect: whether it serves, on which address and port, with which
//! certificate and FQDN, and where its logs went in which format (JSON lines parsed back, klog
//! text lines matched field by field).
//!
//! Where a row's outcome differs from Go's on purpose, its note says so; README's "Differences
//! from the Go original" gives the reasons.

use test_support::webhook as common;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{TempDir, decoded_patch, free_port, temp_dir, testdata};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_apiserver-proxy-pod-webhook");

/// The log format a serving row must write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Text,
}

/// What a serving row must show.
#[derive(Debug, Clone, Copy)]
struct Serve {
    /// The FQDN the patch must carry.
    fqdn: &'static str,
    format: Format,
    /// Reviews need a client certificate (`--client-ca-name`); the probes do not.
    mtls: bool,
    /// HTTP/2 offered by ALPN.
    http2: bool,
    /// Containers with envFrom are left alone.
    skip_env_from: bool,
    /// Debug lines are logged (a line per mutation).
    debug: bool,
    /// The positional arguments the warning must name.
    ignored: Option<&'static str>,
    /// Served on all addresses, port 9443 (the README's example); otherwise 127.0.0.1:{PORT}.
    default_listen: bool,
}

const SERVE: Serve = Serve {
    fqdn: "foo.bar.",
    format: Format::Json,
    mtls: false,
    http2: false,
    skip_env_from: false,
    debug: false,
    ignored: None,
    default_listen: false,
};

/// A row's expected outcome.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Serves as described, then exits 0 on SIGTERM.
    Serves(Serve),
    /// A usage error: exit 2, the message and the usage hint on stderr, nothing logged.
    Usage(&'static str),
    /// A start-up failure: exit 1, an error log line (JSON unless `Format::Text`) with the text.
    Fails(&'static str, Format),
    /// Help or version on stdout, exit 0.
    Prints(&'static str),
}

/// One row: the argument vector (with `{DATA}` the test certificates, `{ALT}` a directory whose
/// `tls.crt`/`tls.key` are garbage and whose `serving.crt`/`serving.key` are the good pair,
/// `{PORT}` the port to serve on, `{PORT2}` another free port, `{BUSY}` a port in use) and how
/// it must end. The note says where Go differs.
struct Row {
    args: &'static str,
    want: Want,
    note: &'static str,
}

const fn serves(args: &'static str, serve: Serve) -> Row {
    Row {
        args,
        want: Want::Serves(serve),
        note: "",
    }
}

const fn usage(args: &'static str, message: &'static str) -> Row {
    Row {
        args,
        want: Want::Usage(message),
        note: "",
    }
}

const fn fails(args: &'static str, message: &'static str) -> Row {
    Row {
        args,
        want: Want::Fails(message, Format::Json),
        note: "",
    }
}

impl Row {
    const fn differs(self, note: &'static str) -> Row {
        Row { note, ..self }
    }
}

/// The flags every other serving row shares: the test certificates, loopback, its own port,
/// no shutdown delay.
macro_rules! base {
    ($($extra:literal)*) => {
        concat!("--apiserver-fqdn=foo.bar. --cert-dir={DATA} --host=127.0.0.1 --port={PORT} --shutdown-delay=0s" $(, " ", $extra)*)
    };
}

fn rows() -> Vec<Row> {
    let text = Serve {
        format: Format::Text,
        ..SERVE
    };
    let debug = Serve {
        debug: true,
        ..SERVE
    };
    let h2 = Serve {
        http2: true,
        ..SERVE
    };
    let mtls = Serve {
        mtls: true,
        ..SERVE
    };
    let skip = Serve {
        skip_env_from: true,
        ..SERVE
    };
    vec![
        // The original README's example, as written: all addresses, port 9443, default delay.
        serves(
            "--apiserver-fqdn=foo.bar. --cert-dir {DATA}",
            Serve {
                default_listen: true,
                ..SERVE
            },
        ),
        serves(
            "--apiserver-fqdn=foo.bar. --cert-dir={DATA} --host=127.0.0.1 --port={PORT}",
            SERVE,
        ),
        // Gardener-style deployments: every value after `=`, or as the next argument.
        serves(
            "--apiserver-fqdn=api.example.com --cert-dir={DATA} --cert-name=tls.crt --key-name=tls.key --port={PORT} --host=127.0.0.1 --shutdown-delay=0s",
            Serve {
                fqdn: "api.example.com",
                ..SERVE
            },
        ),
        serves(
            "--apiserver-fqdn api.my-shoot.garden-dev.internal.example.com --cert-dir {DATA} --port {PORT} --host 127.0.0.1 --shutdown-delay 0s",
            Serve {
                fqdn: "api.my-shoot.garden-dev.internal.example.com",
                ..SERVE
            },
        ),
        serves(
            "--apiserver-fqdn=api.shoot.example.com. --cert-dir={DATA} --host=127.0.0.1 --port={PORT} --shutdown-delay=0s",
            Serve {
                fqdn: "api.shoot.example.com.",
                ..SERVE
            },
        ),
        serves(
            "--apiserver-fqdn=foo.bar. --cert-dir={DATA}/ --host=127.0.0.1 --port={PORT} --shutdown-delay=0s",
            SERVE,
        ),
        serves(
            "--apiserver-fqdn=foo.bar. --cert-dir={DATA}/./ --host=127.0.0.1 --port={PORT} --shutdown-delay=0s",
            SERVE,
        ),
        // Which certificate: {ALT}'s default names hold garbage, so serving proves the names.
        serves(
            "--apiserver-fqdn=foo.bar. --cert-dir={ALT} --cert-name=serving.crt --key-name=serving.key --host=127.0.0.1 --port={PORT} --shutdown-delay=0s",
            SERVE,
        ),
        serves(base!("--client-ca-name=ca.crt"), mtls),
        // Repeated flags: the last one wins, for every flag.
        serves(
            "--apiserver-fqdn=old.example.com --cert-dir={DATA} --host=127.0.0.1 --port={PORT} --shutdown-delay=0s --apiserver-fqdn=new.example.com",
            Serve {
                fqdn: "new.example.com",
                ..SERVE
            },
        ),
        serves(base!("--port={PORT2}" "--port={PORT}"), SERVE),
        serves(base!("--host=256.0.0.1" "--host=127.0.0.1"), SERVE),
        serves(
            "--apiserver-fqdn=foo.bar. --cert-dir=/nonexistent --cert-dir={DATA} --host=127.0.0.1 --port={PORT} --shutdown-delay=0s",
            SERVE,
        ),
        serves(
            "--apiserver-fqdn=foo.bar. --cert-dir={ALT} --cert-name=tls.crt --key-name=serving.key --cert-name=serving.crt --host=127.0.0.1 --port={PORT} --shutdown-delay=0s",
            SERVE,
        ),
        serves(
            "--apiserver-fqdn=foo.bar. --cert-dir={ALT} --cert-name=serving.crt --key-name=missing.key --key-name=serving.key --host=127.0.0.1 --port={PORT} --shutdown-delay=0s",
            SERVE,
        ),
        serves(
            base!("--client-ca-name=nope.crt" "--client-ca-name=ca.crt"),
            mtls,
        ),
        serves(base!("--client-ca-name=ca.crt" "--client-ca-name="), SERVE),
        serves(
            base!("--shutdown-delay=10m" "--shutdown-delay=0s"),
            SERVE,
        ),
        serves(
            base!("--idle-timeout=1s" "--idle-timeout=90s" "--max-connections=1" "--max-connections=64"),
            SERVE,
        ),
        serves(
            base!("--logging-format=text" "--logging-format=json"),
            SERVE,
        ),
        serves(
            base!("--logging-format=json" "--logging-format=text"),
            text,
        ),
        // Positional arguments: ignored with a warning, wherever they stand.
        serves(
            base!("extra"),
            Serve {
                ignored: Some("extra"),
                ..SERVE
            },
        ),
        serves(
            "serve --apiserver-fqdn=foo.bar. --cert-dir={DATA} --host=127.0.0.1 --port={PORT} --shutdown-delay=0s",
            Serve {
                ignored: Some("serve"),
                ..SERVE
            },
        ),
        serves(
            "--apiserver-fqdn=foo.bar. webhook --cert-dir={DATA} --host=127.0.0.1 --port={PORT} --shutdown-delay=0s",
            Serve {
                ignored: Some("webhook"),
                ..SERVE
            },
        ),
        serves(
            base!("a" "b" "c"),
            Serve {
                ignored: Some("a b c"),
                ..SERVE
            },
        ),
        serves(
            base!("--" "--port={PORT2}"),
            Serve {
                ignored: Some("--port={PORT2}"),
                ..SERVE
            },
        ),
        serves(
            base!("--host=127.0.0.1" "false"),
            Serve {
                ignored: Some("false"),
                ..SERVE
            },
        ),
        serves(
            base!("--enable-http2=false" "true"),
            Serve {
                ignored: Some("true"),
                ..SERVE
            },
        ),
        serves(
            base!("--logging-format=text" "extra"),
            Serve {
                ignored: Some("extra"),
                ..text
            },
        ),
        // Log format and verbosity.
        serves(base!("--logging-format=text"), text),
        serves(base!("--logging-format" "text"), text),
        serves(base!("--logging-format=json"), SERVE),
        serves(base!("-v=4"), debug),
        serves(base!("-v" "2"), debug),
        serves(base!("--v=4" "--logging-format=text"), Serve { debug: true, ..text }),
        serves(base!("-v=5"), debug),
        serves(base!("-v=0"), SERVE),
        serves(base!("-v=4" "-v=0"), SERVE),
        serves(base!("-v=-1"), SERVE),
        // Bool flags in every pflag form; the last one wins.
        serves(base!("--enable-http2"), h2),
        serves(base!("--enable-http2=true"), h2),
        serves(base!("--enable-http2=1"), h2),
        serves(base!("--enable-http2=false"), SERVE),
        serves(base!("--enable-http2" "--enable-http2=F"), SERVE),
        serves(base!("--skip-env-from"), skip),
        serves(base!("--skip-env-from=T"), skip),
        serves(base!("--skip-env-from=false"), SERVE),
        serves(base!("--skip-env-from=0" "--skip-env-from=True"), skip),
        serves(base!("--tls-min-version=1.3"), SERVE),
        serves(
            base!("--max-connections=10" "--idle-timeout=90s" "--shutdown-timeout=1s"),
            SERVE,
        ),
        // Usage errors: exit 2 with the usage hint.
        usage(base!("--no-such-flag"), "unexpected argument '--no-such-flag'"),
        usage(base!("--zap-log-level=debug"), "'--zap-log-level'"),
        usage(base!("--Port=9443"), "'--Port'"),
        usage(base!("-x"), "'-x'"),
        usage(
            "-apiserver-fqdn=foo.bar. --cert-dir={DATA}",
            "unexpected argument '-a'",
        ),
        usage(base!("--port=abc"), "invalid value 'abc' for '--port <PORT>'"),
        usage(base!("--port=9443.0"), "invalid value '9443.0'"),
        usage(base!("--port=70000"), "invalid value '70000'")
            .differs("Go's int flag took it and failed to bind: exit 1"),
        usage(base!("--port=-1"), "invalid value '-1'")
            .differs("Go's controller-runtime served on 9443 for a port <= 0"),
        usage(base!("--port"), "a value is required for '--port <PORT>'"),
        usage(
            "--cert-dir={DATA} --apiserver-fqdn",
            "a value is required for '--apiserver-fqdn <FQDN>'",
        ),
        usage(
            base!("--enable-http2" "false"),
            "\"false\" after --enable-http2 is not its value: Go would set --enable-http2 to true and ignore \"false\"; write --enable-http2=false",
        )
        .differs("Go set --enable-http2 to true and ignored \"false\""),
        usage(
            base!("--skip-env-from" "true"),
            "write --skip-env-from=true",
        )
        .differs("Go set --skip-env-from and ignored \"true\""),
        usage(base!("--enable-http2" "0"), "write --enable-http2=0")
            .differs("Go set --enable-http2 to true and ignored \"0\""),
        usage(base!("--enable-http2=maybe"), "invalid boolean \"maybe\""),
        usage(base!("--logging-format=yaml"), "invalid value 'yaml' for '--logging-format <FORMAT>'"),
        usage(base!("-v=abc"), "invalid value 'abc' for '--v <LEVEL>'"),
        usage(base!("--tls-min-version=1.1"), "invalid value '1.1'"),
        usage(base!("--idle-timeout=0s"), "must be between 1s and 1440m"),
        usage(base!("--shutdown-delay=5d"), "unknown unit \"d\""),
        usage(base!("--max-connections=0"), "'--max-connections <N>'"),
        usage(
            "--apiserver-fqdn=localhost --cert-dir={DATA}",
            "at least two segments",
        )
        .differs("Go exited 1 for an invalid --apiserver-fqdn"),
        usage(
            "--apiserver-fqdn=Foo.bar --cert-dir={DATA}",
            "label \"Foo\" must consist of lower case",
        )
        .differs("Go exited 1 for an invalid --apiserver-fqdn"),
        usage(
            "--apiserver-fqdn= --cert-dir={DATA}",
            "must not be empty",
        )
        .differs("Go exited 1 for an invalid --apiserver-fqdn"),
        usage("--cert-dir={DATA}", "--apiserver-fqdn <FQDN>")
            .differs("Go exited 1: \"\" is not a FQDN"),
        usage("--apiserver-fqdn=foo.bar.", "--cert-dir <DIR>")
            .differs("Go exited 1: --cert-dir is required"),
        usage(
            "--apiserver-fqdn=foo.bar. --cert-dir=",
            "a value is required for '--cert-dir <DIR>'",
        )
        .differs("Go exited 1: --cert-dir is required"),
        usage("", "--apiserver-fqdn <FQDN>").differs("Go exited 1: \"\" is not a FQDN"),
        // Start-up failures: exit 1, logged.
        fails(
            base!("--cert-name=missing.crt"),
            "cannot read certificate {DATA}/missing.crt",
        ),
        fails(base!("--key-name=missing.key"), "cannot read key {DATA}/missing.key"),
        fails(
            base!("--client-ca-name=nope.crt"),
            "cannot read client CA {DATA}/nope.crt",
        ),
        fails(
            "--apiserver-fqdn=foo.bar. --cert-dir=/nonexistent --host=127.0.0.1 --port={PORT}",
            "cannot read certificate /nonexistent/tls.crt",
        ),
        fails(
            "--apiserver-fqdn=foo.bar. --cert-dir={ALT} --host=127.0.0.1 --port={PORT}",
            "{ALT}/tls.crt holds no certificate",
        ),
        fails(
            base!("--cert-dir=/nonexistent"),
            "cannot read certificate /nonexistent/tls.crt",
        ),
        fails(
            "--apiserver-fqdn=foo.bar. --cert-dir={DATA} --host=127.0.0.1 --port={BUSY}",
            "cannot listen on 127.0.0.1:{BUSY}",
        ),
        fails(base!("--host=256.0.0.1"), "cannot listen on 256.0.0.1:{PORT}"),
        Row {
            args: base!("--cert-dir=/nonexistent" "--logging-format=text"),
            want: Want::Fails("cannot read certificate /nonexistent/tls.crt", Format::Text),
            note: "",
        },
        // Help and version.
        Row {
            args: "--help",
            want: Want::Prints("Usage: apiserver-proxy-pod-webhook [OPTIONS]"),
            note: "pflag printed help to stderr and exited 2",
        },
        Row {
            args: "-h",
            want: Want::Prints("Usage: apiserver-proxy-pod-webhook [OPTIONS]"),
            note: "pflag printed help to stderr and exited 2",
        },
        Row {
            args: "--apiserver-fqdn=foo.bar. --cert-dir={DATA} --help",
            want: Want::Prints("--logging-format <FORMAT>"),
            note: "pflag printed help to stderr and exited 2",
        },
        Row {
            args: "--version",
            want: Want::Prints("apiserver-proxy-pod-webhook "),
            note: "the Go binary had no --version",
        },
    ]
}

/// The directories and ports a row's placeholders stand for.
struct Places {
    data: PathBuf,
    alt: TempDir,
    busy: std::net::TcpListener,
}

impl Places {
    fn new() -> Places {
        let data = testdata();
        let alt = temp_dir();
        for (from, to) in [
            ("tls.crt", "serving.crt"),
            ("tls.key", "serving.key"),
            ("ca.crt", "ca.crt"),
        ] {
            std::fs::copy(data.join(from), alt.path().join(to)).expect("copy a certificate");
        }
        std::fs::write(alt.path().join("tls.crt"), "not a certificate\n").expect("write");
        std::fs::write(alt.path().join("tls.key"), "not a key\n").expect("write");
        let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
        Places { data, alt, busy }
    }

    /// `text` with its placeholders filled in.
    fn fill(&self, text: &str, port: u16, port2: u16) -> String {
        let busy = self.busy.local_addr().expect("address").port();
        text.replace("{DATA}", &show(&self.data))
            .replace("{ALT}", &show(self.alt.path()))
            .replace("{PORT}", &port.to_string())
            .replace("{PORT2}", &port2.to_string())
            .replace("{BUSY}", &busy.to_string())
    }
}

fn show(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// What a finished run left: exit code, stdout, stderr.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn command(args: &[String]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn run_to_end(args: &[String]) -> Run {
    let out = command(args).output().expect("run the binary");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A log line read back.
#[derive(Debug)]
struct Line {
    level: String,
    msg: String,
    /// The fields: JSON values, or klog's `key=value` text.
    fields: Value,
}

/// Parses a JSON log line in controller-runtime's schema: `level`, `ts`, `logger`, `msg` first.
fn parse_json(line: &str) -> Result<Line, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let object = value.as_object().ok_or("not an object")?;
    let keys: Vec<&str> = object.keys().take(4).map(String::as_str).collect();
    if !line.starts_with("{\"level\":\"") || keys.len() < 4 {
        return Err("does not start with level, ts, logger, msg".into());
    }
    let ts = object["ts"].as_str().ok_or("ts is not a string")?;
    if !is_rfc3339_utc(ts) {
        return Err(format!("ts {ts:?} is not RFC 3339 UTC"));
    }
    let level = object["level"].as_str().ok_or("level is not a string")?;
    if !["error", "warn", "info", "debug", "trace"].contains(&level) {
        return Err(format!("level {level:?}"));
    }
    object["logger"].as_str().ok_or("logger is not a string")?;
    let msg = object["msg"].as_str().ok_or("msg is not a string")?;
    Ok(Line {
        level: level.to_owned(),
        msg: msg.to_owned(),
        fields: value.clone(),
    })
}

/// `2026-11-30T14:39:27.273949Z`.
fn is_rfc3339_utc(ts: &str) -> bool {
    let b = ts.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    b.len() == 27
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..26)
        && b[26] == b'Z'
}

/// Parses a klog text line, `I1130 14:39:27.273949   25085 server.rs:193] "msg" key=value`,
/// as the regex `^([IWEF])(\d{4}) (\d\d:\d\d:\d\d\.\d{6}) +(\d+) ([^ :]+):(\d+)\] "(.*)"(.*)$`
/// would.
fn parse_klog(line: &str) -> Result<Line, String> {
    let level = match line.chars().next() {
        Some('I') => "info",
        Some('W') => "warn",
        Some('E') => "error",
        Some('F') => "fatal",
        _ => return Err("no severity letter".into()),
    };
    let rest = &line[1..];
    let (date, rest) = rest.split_once(' ').ok_or("no date")?;
    if date.len() != 4 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("date {date:?}"));
    }
    let (time, rest) = rest.split_once(' ').ok_or("no time")?;
    let t = time.as_bytes();
    let time_ok = t.len() == 15
        && [2, 5].iter().all(|&i| t[i] == b':')
        && t[8] == b'.'
        && t.iter()
            .enumerate()
            .all(|(i, c)| [2, 5, 8].contains(&i) || c.is_ascii_digit());
    if !time_ok {
        return Err(format!("time {time:?}"));
    }
    let rest = rest.trim_start_matches(' ');
    let (pid, rest) = rest.split_once(' ').ok_or("no pid")?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("pid {pid:?}"));
    }
    let (source, rest) = rest.split_once("] ").ok_or("no ] after the source")?;
    let (file, line_no) = source.rsplit_once(':').ok_or("no file:line")?;
    if file.is_empty() || file.contains(' ') || line_no.parse::<u32>().is_err() {
        return Err(format!("source {source:?}"));
    }
    let quoted = rest.strip_prefix('"').ok_or("message not quoted")?;
    // The message ends at the first unescaped quote.
    let mut end = None;
    let mut escaped = false;
    for (i, c) in quoted.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => {
                end = Some(i);
                break;
            }
            _ => escaped = false,
        }
    }
    let end = end.ok_or("message not closed")?;
    Ok(Line {
        level: level.to_owned(),
        msg: quoted[..end].to_owned(),
        fields: Value::String(quoted[end + 1..].to_owned()),
    })
}

fn parse_lines(stderr: &str, format: Format) -> Result<Vec<Line>, String> {
    stderr
        .lines()
        .map(|line| {
            match format {
                Format::Json => parse_json(line),
                Format::Text => parse_klog(line),
            }
            .map_err(|why| format!("{format:?} log line {line:?}: {why}"))
        })
        .collect()
}

/// A curl call against the webhook; returns (curl's exit code, body, HTTP version).
fn curl(
    places: &Places,
    port: u16,
    path: &str,
    body: Option<&Value>,
    serve: &Serve,
    client_cert: bool,
) -> (i32, String, String) {
    let data = &places.data;
    let mut command = Command::new("curl");
    command
        .args(["--silent", "--show-error", "--max-time", "5"])
        .arg("--cacert")
        .arg(data.join("ca.crt"))
        .args(["--write-out", "\n%{http_version}"]);
    if client_cert {
        command
            .arg("--cert")
            .arg(data.join("client.crt"))
            .arg("--key")
            .arg(data.join("client.key"));
    }
    if serve.http2 || path != "/readyz" {
        command.arg("--http2");
    }
    if let Some(body) = body {
        command
            .args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(body.to_string());
    }
    let host = if serve.default_listen {
        "localhost"
    } else {
        "127.0.0.1"
    };
    command.arg(format!("https://{host}:{port}{path}"));
    let out = command.output().expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (body, version) = stdout.rsplit_once('\n').unwrap_or((&stdout, ""));
    (
        out.status.code().unwrap_or(-1),
        body.to_owned(),
        version.to_owned(),
    )
}

/// The pod of the original README's example, or one whose container uses envFrom.
fn review(env_from: bool) -> Value {
    let mut review: Value = serde_json::from_str(
        &std::fs::read_to_string(testdata().join("admission.json")).expect("admission.json"),
    )
    .expect("admission.json is JSON");
    if env_from {
        review["request"]["object"]["spec"] = json!({
            "containers": [{"name": "app", "envFrom": [{"configMapRef": {"name": "x"}}]}]
        });
    }
    review
}

/// Runs a serving row; returns what is wrong with it, if anything.
fn check_serving(
    places: &Places,
    args: &[String],
    port: u16,
    port2: u16,
    serve: &Serve,
) -> Result<(), String> {
    let mut child = command(args)
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let stdout_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let outcome = exercise(places, port, port2, serve);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = stderr_reader.join().unwrap_or_default();
    let stdout = stdout_reader.join().unwrap_or_default();
    let with_log = |why: String| format!("{why}\nstderr:\n{stderr}");
    outcome.map_err(with_log)?;
    match status.map(|s| s.code()) {
        Some(Some(0)) => {}
        other => return Err(with_log(format!("after SIGTERM: exit {other:?}, want 0"))),
    }
    if !stdout.is_empty() {
        return Err(format!("logs went to stdout: {stdout}"));
    }
    let lines = parse_lines(&stderr, serve.format).map_err(with_log)?;
    let serving = lines
        .iter()
        .find(|l| l.msg == "serving")
        .ok_or_else(|| with_log("no \"serving\" line".into()))?;
    let want_addr = if serve.default_listen {
        format!("[::]:{port}")
    } else {
        format!("127.0.0.1:{port}")
    };
    let shown = match serve.format {
        Format::Json => serving.fields["addr"] == want_addr,
        Format::Text => serving
            .fields
            .as_str()
            .is_some_and(|f| f.contains(&format!("addr=\"{want_addr}\""))),
    };
    if !shown {
        return Err(with_log(format!(
            "\"serving\" line does not name {want_addr}"
        )));
    }
    let has_debug = lines.iter().any(|l| l.level == "debug");
    let mutated = lines.iter().any(|l| l.msg == "pod mutated");
    if serve.format == Format::Json && has_debug != serve.debug {
        return Err(with_log(format!(
            "debug lines: {has_debug}, want {}",
            serve.debug
        )));
    }
    if mutated != (serve.debug && !serve.skip_env_from) {
        return Err(with_log(format!("\"pod mutated\" logged: {mutated}")));
    }
    let warning = lines
        .iter()
        .find(|l| l.msg.starts_with("ignoring positional arguments"));
    match (serve.ignored, warning) {
        (None, None) => {}
        (Some(want), Some(line)) => {
            let want = places.fill(want, port, port2);
            let named = match serve.format {
                Format::Json => line.fields["arguments"] == want.as_str(),
                Format::Text => line
                    .fields
                    .as_str()
                    .is_some_and(|f| f.contains(&format!("arguments={want:?}"))),
            };
            if line.level != "warn" || !named {
                return Err(with_log(format!("the warning does not name {want:?}")));
            }
        }
        (want, got) => {
            return Err(with_log(format!(
                "positional warning: {got:?}, want {want:?}"
            )));
        }
    }
    Ok(())
}

/// Waits until the webhook is ready, then sends the README's review and checks the patch.
fn exercise(places: &Places, port: u16, port2: u16, serve: &Serve) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, body, _) = curl(places, port, "/readyz", None, serve, serve.mtls);
        if code == 0 && body == "ok" {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("not ready on port {port}: curl {code} {body:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let request = review(serve.skip_env_from);
    let (code, body, version) = curl(
        places,
        port,
        "/webhook/pod-apiserver-env",
        Some(&request),
        serve,
        serve.mtls,
    );
    if code != 0 {
        return Err(format!("review: curl {code} {body:?}"));
    }
    let want_version = if serve.http2 { "2" } else { "1.1" };
    if version != want_version {
        return Err(format!("HTTP version {version:?}, want {want_version}"));
    }
    let answer: Value = serde_json::from_str(&body).map_err(|e| format!("answer {body:?}: {e}"))?;
    if answer["response"]["uid"] != request["request"]["uid"]
        || answer["response"]["allowed"] != true
    {
        return Err(format!("answer {answer}"));
    }
    let env = json!([{"name": "KUBERNETES_SERVICE_HOST", "value": serve.fqdn}]);
    let want_patch = if serve.skip_env_from {
        None
    } else {
        Some(json!([
            {"op": "add", "path": "/spec/initContainers/0/env", "value": env},
            {"op": "add", "path": "/spec/containers/0/env", "value": env},
        ]))
    };
    let patch = decoded_patch(&answer);
    if patch != want_patch {
        return Err(format!("patch {patch:?}, want {want_patch:?}"));
    }
    if serve.mtls {
        // Without a client certificate the probe is answered and the review refused.
        let (code, body, _) = curl(places, port, "/readyz", None, serve, false);
        if code != 0 || body != "ok" {
            return Err(format!(
                "/readyz without a client certificate: curl {code} {body:?}, want \"ok\""
            ));
        }
        let path = "/webhook/pod-apiserver-env";
        let (code, body, _) = curl(places, port, path, Some(&request), serve, false);
        if code != 0 || !body.contains("no client certificate") {
            return Err(format!(
                "a review without a client certificate: curl {code} {body:?}, want a refusal"
            ));
        }
    }
    // The port a repeated --port gave up (`port2`) is held by the test for the row: serving
    // at all shows the webhook did not try to bind it.
    let _ = port2;
    Ok(())
}

/// Runs a one-shot row; returns what is wrong with it, if anything.
fn check_one_shot(places: &Places, args: &[String], port: u16, want: &Want) -> Result<(), String> {
    let run = run_to_end(args);
    let shown = format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        run.code, run.stdout, run.stderr
    );
    match *want {
        Want::Usage(message) => {
            let ok = run.code == Some(2)
                && run.stdout.is_empty()
                && run.stderr.starts_with("error: ")
                && run.stderr.contains(message)
                && run.stderr.contains("try '--help'");
            ok.then_some(())
                .ok_or_else(|| format!("want exit 2 with {message:?} and the usage hint; {shown}"))
        }
        Want::Fails(message, format) => {
            let message = places.fill(message, port, 0);
            let lines =
                parse_lines(&run.stderr, format).map_err(|why| format!("{why}; {shown}"))?;
            let logged = lines
                .iter()
                .any(|l| l.level == "error" && l.msg.contains(&message));
            (run.code == Some(1) && logged && run.stdout.is_empty())
                .then_some(())
                .ok_or_else(|| format!("want exit 1 with an error line {message:?}; {shown}"))
        }
        Want::Prints(text) => {
            (run.code == Some(0) && run.stdout.contains(text) && run.stderr.is_empty())
                .then_some(())
                .ok_or_else(|| format!("want exit 0 printing {text:?}; {shown}"))
        }
        Want::Serves(_) => unreachable!("serving rows are run by check_serving"),
    }
}

#[test]
fn argument_vectors_as_manifests_for_the_go_binary_write_them() {
    let rows = rows();
    assert!(rows.len() >= 60, "{} rows", rows.len());
    let places = Places::new();
    // The README's example listens on all addresses, port 9443; it needs that port.
    assert!(
        std::net::TcpListener::bind("0.0.0.0:9443").is_ok(),
        "port 9443 is taken: the original README's example cannot be run"
    );
    let failures = Mutex::new(Vec::new());
    let next = Mutex::new(rows.iter().enumerate());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                loop {
                    let Some((index, row)) = next.lock().expect("queue").next() else {
                        return;
                    };
                    let port = match row.want {
                        Want::Serves(Serve {
                            default_listen: true,
                            ..
                        }) => 9443,
                        _ => free_port(),
                    };
                    // Held for the row: no other row is handed it, and a webhook that took the
                    // port a repeated --port gave up could not bind it and would fail.
                    let reserved = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
                    let port2 = reserved.local_addr().expect("its port").port();
                    let args: Vec<String> = places
                        .fill(row.args, port, port2)
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect();
                    let result = match &row.want {
                        Want::Serves(serve) => check_serving(&places, &args, port, port2, serve),
                        want => check_one_shot(&places, &args, port, want),
                    };
                    if let Err(why) = result {
                        let note = if row.note.is_empty() {
                            String::new()
                        } else {
                            format!(" (differs from Go: {})", row.note)
                        };
                        failures
                            .lock()
                            .expect("failures")
                            .push(format!("row {index}: {args:?}{note}: {why}"));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("failures");
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n\n")
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the table took {:?}",
        started.elapsed()
    );
}
