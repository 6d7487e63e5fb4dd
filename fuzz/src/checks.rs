// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! The invariants the fuzz targets check, shared with the pod webhook's normal tests
//! (`crates/pod-webhook/tests/fuzz_corpus.rs` includes this file), so every corpus input and
//! every crash found becomes a regression test on stable Rust too.
//!
//! Each check panics when an invariant breaks; that is what the fuzzer reports as a crash.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Parser as _;
use pod_webhook::cli::{Cli, parse_duration, parse_fqdn};
use pod_webhook::mutate::{ENV_NAME, INJECT_LABEL, MutateOptions, is_opt_out};
use pod_webhook::review;
use serde_json::{Value, json};

/// The FQDN the review checks use.
pub const FQDN: &str = "foo.bar.";

/// Raw bytes through the whole pure request path, with both settings of `--skip-env-from`.
pub fn check_review(data: &[u8]) {
    for skip_env_from in [false, true] {
        let opts = MutateOptions {
            apiserver_fqdn: FQDN.into(),
            skip_env_from,
        };
        check_review_with(data, &opts);
    }
}

fn check_review_with(data: &[u8], opts: &MutateOptions) {
    // Never panics; an error is a 400 with a message.
    let answer = match review::review(data, opts) {
        Ok(answer) => answer,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an error names its problem");
            return;
        }
    };
    let out: Value = serde_json::from_slice(&answer.body).expect("the answer is JSON");
    // A successful review was a JSON object; serde_json's Value may still refuse it (numbers out
    // of f64 range are skipped by the review, refused by Value): nothing more to compare then.
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let uid = input["request"]["uid"]
        .as_str()
        .expect("a served request has a string uid");
    assert!(!uid.is_empty());
    assert_eq!(answer.uid, uid);
    assert_eq!(out["response"]["uid"], uid, "the uid is echoed");
    assert_eq!(out["response"]["allowed"], true);
    assert_eq!(out["kind"], "AdmissionReview");
    assert_eq!(
        out["apiVersion"], input["apiVersion"],
        "the apiVersion is echoed"
    );
    let response = out["response"].as_object().expect("response object");

    let request = &input["request"];
    let pod = &request["object"];
    let expected = expected_pod(pod, opts);
    match response.get("patch") {
        Some(patch) => {
            assert_eq!(response.get("patchType"), Some(&json!("JSONPatch")));
            assert!(applicable(request), "only a Pod CREATE gets a patch");
            let bytes = BASE64
                .decode(patch.as_str().expect("patch is a string"))
                .expect("patch is base64");
            let patch: json_patch::Patch =
                serde_json::from_slice(&bytes).expect("patch is a JSON Patch");
            let mut patched = pod.clone();
            json_patch::patch(&mut patched, &patch).expect("the patch applies to the pod");
            assert_eq!(
                patched, expected,
                "the patched pod gains exactly one {ENV_NAME} where it lacked one, nothing else"
            );
            let expected_ops = count_missing(pod, opts);
            assert_eq!(patch.0.len(), expected_ops, "one operation per container");
        }
        None => {
            assert!(response.get("patchType").is_none());
            if applicable(request) {
                assert_eq!(&expected, pod, "no patch only when nothing is missing");
            }
        }
    }
}

/// Whether the review is a Pod CREATE (by kind or resource, no subresource).
pub fn applicable(request: &Value) -> bool {
    let group_is_core = |v: &Value| v.get("group").is_none_or(|g| g == "");
    let by_kind = request["kind"].is_object()
        && group_is_core(&request["kind"])
        && request["kind"]["kind"] == "Pod";
    let by_resource = request["resource"].is_object()
        && group_is_core(&request["resource"])
        && request["resource"]["resource"] == "pods";
    let subresource = request["subResource"]
        .as_str()
        .is_some_and(|s| !s.is_empty());
    (by_kind || by_resource) && !subresource && request["operation"] == "CREATE"
}

fn opted_out(pod: &Value) -> bool {
    pod["metadata"]["labels"][INJECT_LABEL]
        .as_str()
        .is_some_and(is_opt_out)
}

/// Containers (init first) that the webhook must give the variable, as (field, index).
fn missing(pod: &Value, opts: &MutateOptions) -> Vec<(&'static str, usize)> {
    if opted_out(pod) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for field in ["initContainers", "containers"] {
        let Some(containers) = pod["spec"][field].as_array() else {
            continue;
        };
        for (i, c) in containers.iter().enumerate() {
            // A container that is not an object is an invalid pod: the webhook either refuses
            // it or leaves it alone, never patches it.
            if !c.is_object() {
                continue;
            }
            let uses_env_from = c["envFrom"].as_array().is_some_and(|a| !a.is_empty());
            if opts.skip_env_from && uses_env_from {
                continue;
            }
            let has = c["env"]
                .as_array()
                .is_some_and(|env| env.iter().any(|e| e["name"] == ENV_NAME));
            if !has {
                out.push((field, i));
            }
        }
    }
    out
}

fn count_missing(pod: &Value, opts: &MutateOptions) -> usize {
    missing(pod, opts).len()
}

/// The pod as it must be after the patch, built without the webhook's code.
pub fn expected_pod(pod: &Value, opts: &MutateOptions) -> Value {
    let mut out = pod.clone();
    let entry = json!({"name": ENV_NAME, "value": opts.apiserver_fqdn});
    for (field, i) in missing(pod, opts) {
        let container = &mut out["spec"][field][i];
        match container.get_mut("env").and_then(Value::as_array_mut) {
            Some(env) => env.push(entry.clone()),
            None => container["env"] = json!([entry.clone()]),
        }
    }
    out
}

/// Flag values: the FQDN check agrees with an independent reading of Kubernetes'
/// `IsFullyQualifiedDomainName`, durations parse without panicking, and a whole command line
/// made of the input never panics.
pub fn check_flags(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let want = fqdn_oracle(&text);
    let got = parse_fqdn(&text);
    assert_eq!(got.is_ok(), want, "parse_fqdn({text:?}) = {got:?}");
    if let Ok(v) = got {
        assert_eq!(v, text, "a valid FQDN is kept as given");
    } else if let Err(why) = got {
        assert!(!why.is_empty());
    }
    // Go's grammar (`time.ParseDuration`): a sign, then numbers with units, or a lone "0".
    if let Ok(d) = parse_duration(&text) {
        assert!(
            text.chars().any(|c| c.is_ascii_digit()),
            "{text:?} parsed to {d:?} without a number"
        );
        assert!(
            !text.starts_with('-') || d.is_zero(),
            "{text:?} is negative but parsed to {d:?}"
        );
        let body = text.trim_start_matches(['+', '-']);
        assert!(
            body == "0"
                || body.ends_with(|c: char| c.is_ascii_alphabetic() || c == 'µ' || c == 'μ'),
            "{text:?} parsed to {d:?} without a unit"
        );
    }
    // The input as command-line arguments, split on NUL (which no argument can contain).
    let args = std::iter::once("apiserver-proxy-pod-webhook")
        .chain(text.split('\0'))
        .collect::<Vec<_>>();
    if let Ok(cli) = Cli::try_parse_from(&args) {
        let fqdn = cli.apiserver_fqdn.clone();
        assert!(fqdn_oracle(&fqdn), "accepted --apiserver-fqdn {fqdn:?}");
        let config = cli.into_config();
        assert_eq!(config.mutate.apiserver_fqdn, fqdn);
        assert!(config.limits.max_connections >= 1);
    }
}

/// `IsFullyQualifiedDomainName` written out plainly: one optional trailing dot; then at most
/// 253 characters; at least two labels; each label 1–63 of `[a-z0-9-]`, alphanumeric at both
/// ends.
fn fqdn_oracle(value: &str) -> bool {
    let name = value.strip_suffix('.').unwrap_or(value);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = name.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
            (1..=63).contains(&label.len())
                && label.chars().all(|c| ok(c) || c == '-')
                && label.starts_with(ok)
                && label.ends_with(ok)
        })
}
