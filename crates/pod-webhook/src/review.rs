// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! AdmissionReview in, AdmissionReview out (`admission.k8s.io/v1` and `v1beta1`). Pure, no I/O.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::mutate::{self, MapOnly, MutateOptions, Mutation, PodView, SkipReason};

/// The AdmissionReview API versions the webhook speaks.
pub const API_VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

/// Why a request body is not a review the webhook can answer; every variant is a 400.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The body is not JSON, or a field has the wrong type.
    #[error("body is not a valid AdmissionReview: {0}")]
    Malformed(String),
    /// The answer could not be encoded: the webhook's fault, not the request's.
    #[error("cannot encode the answer: {0}")]
    Encode(String),
    /// `apiVersion` is missing or not one the webhook speaks.
    #[error(
        "{}: expected \"admission.k8s.io/v1\" or \"admission.k8s.io/v1beta1\"",
        if .0.is_empty() { "apiVersion is missing".to_owned() } else { format!("unsupported apiVersion {:?}", .0) }
    )]
    ApiVersion(String),
    /// `kind` is not `AdmissionReview`.
    #[error("unsupported kind {0:?}: expected \"AdmissionReview\"")]
    Kind(String),
    /// The review has no `request`.
    #[error("AdmissionReview has no request")]
    MissingRequest,
    /// The request has no `uid`, or an empty one.
    #[error("request.uid is missing or empty")]
    MissingUid,
    /// A Pod CREATE without the pod.
    #[error("request.object is missing for a Pod CREATE")]
    MissingObject,
    /// The pod has a field of the wrong type.
    #[error("request.object is not a valid Pod: {0}")]
    InvalidPod(String),
}

/// The incoming review; `O` is how `request.object` is read: as a pod view (one pass) or as
/// raw JSON (the slower path that tells a non-pod object from a broken pod).
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "O: Deserialize<'de>"))]
struct ReviewIn<'a, O> {
    #[serde(default, borrow, rename = "apiVersion")]
    api_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    request: Option<MapOnly<RequestIn<'a, O>>>,
}

#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "O: Deserialize<'de>"))]
struct RequestIn<'a, O> {
    #[serde(default, borrow)]
    uid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    kind: Option<MapOnly<GroupKind<'a>>>,
    #[serde(default, borrow)]
    resource: Option<MapOnly<GroupResource<'a>>>,
    #[serde(default, borrow, rename = "subResource")]
    sub_resource: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    operation: Option<Cow<'a, str>>,
    #[serde(default)]
    object: Option<O>,
}

#[derive(Debug, Deserialize)]
struct GroupKind<'a> {
    #[serde(default, borrow)]
    group: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
struct GroupResource<'a> {
    #[serde(default, borrow)]
    group: Cow<'a, str>,
    #[serde(default, borrow)]
    resource: Cow<'a, str>,
}

#[derive(Debug, Serialize)]
struct ReviewOut<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Debug, Serialize)]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(rename = "patchType", skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<Box<RawValue>>,
}

/// What the webhook did with a review, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A Pod CREATE that got a patch of this many operations.
    Mutated {
        /// Number of containers (init and regular) that got the variable.
        containers: usize,
    },
    /// A Pod CREATE left unchanged.
    Skipped(SkipReason),
    /// Not a Pod CREATE: allowed unchanged.
    NotApplicable,
}

/// A review's answer: the response body and what happened.
#[derive(Debug)]
pub struct Answer {
    /// The AdmissionReview response, JSON.
    pub body: Vec<u8>,
    /// What the webhook did.
    pub outcome: Outcome,
    /// The request's uid, for logs.
    pub uid: String,
}

/// The answer without its uid and patch, with the longer apiVersion.
const ENVELOPE: &str = r#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","response":{"uid":"","allowed":true,"patchType":"JSONPatch","patch":""}}"#;

/// One patch operation without its list name, index and FQDN. `add .../env` with a one-entry
/// array and `add .../env/-` with the entry alone are the same length (`[`, `]` against `/-`).
const OP: &str =
    r#"{"op":"add","path":"/spec///env","value":[{"name":"KUBERNETES_SERVICE_HOST","value":""}]}"#;

/// The most bytes by which an answer can be larger than its request's body, for a pod with at
/// most `containers` init containers and `containers` containers and an FQDN of at most
/// `fqdn_bytes` (which needs no JSON escape). Exact for a pod whose every container is patched:
/// such an answer is this long plus its uid. The uid is echoed from the request, never longer
/// than it was there (serde_json escapes only what JSON requires escaped), so the request's body
/// pays for it.
pub const fn answer_growth_bound(containers: usize, fqdn_bytes: usize) -> usize {
    // `[`, the operations with a comma after each but the last, `]`.
    let mut patch = 2;
    let lists = ["initContainers".len(), "containers".len()];
    let mut l = 0;
    while l < lists.len() {
        let mut index = 0;
        while index < containers {
            patch += OP.len() + lists[l] + decimal_digits(index) + fqdn_bytes + 1;
            index += 1;
        }
        l += 1;
    }
    if containers > 0 {
        patch -= 1;
    }
    ENVELOPE.len() + 4 * patch.div_ceil(3)
}

const fn decimal_digits(mut n: usize) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

/// The patch as the JSON string of its base64 encoding, kept raw: base64 needs no escaping,
/// which spares serde_json a byte-by-byte escape scan of the largest part of a response.
fn encode_patch(ops: &[mutate::PatchOp<'_>]) -> Result<Box<RawValue>, ReviewError> {
    let cannot = |e: &dyn std::fmt::Display| ReviewError::Encode(format!("the patch: {e}"));
    let json = serde_json::to_vec(ops).map_err(|e| cannot(&e))?;
    let mut literal = String::with_capacity(json.len().div_ceil(3) * 4 + 2);
    literal.push('"');
    BASE64.encode_string(json, &mut literal);
    literal.push('"');
    RawValue::from_string(literal).map_err(|e| cannot(&e))
}

fn malformed(body: &[u8]) -> ReviewError {
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, ReviewIn<'_, &RawValue>>(&mut de) {
        Err(e) if e.path().to_string() == "." => ReviewError::Malformed(e.inner().to_string()),
        Err(e) => ReviewError::Malformed(e.to_string()),
        // The fast parse failed, so this does too; keep a sensible message regardless.
        Ok(_) => ReviewError::Malformed("unparsable body".into()),
    }
}

fn is_pod<O>(request: &RequestIn<'_, O>) -> bool {
    let by_kind = request
        .kind
        .as_ref()
        .is_some_and(|MapOnly(k)| k.group.is_empty() && k.kind == "Pod");
    let by_resource = request
        .resource
        .as_ref()
        .is_some_and(|MapOnly(r)| r.group.is_empty() && r.resource == "pods");
    let subresource = request
        .sub_resource
        .as_deref()
        .is_some_and(|s| !s.is_empty());
    (by_kind || by_resource) && !subresource
}

impl ReviewError {
    /// Whether the request is at fault (a 4xx), rather than the webhook (a 5xx).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, ReviewError::Encode(_))
    }
}

/// Answers one AdmissionReview body.
pub fn review(body: &[u8], opts: &MutateOptions) -> Result<Answer, ReviewError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Err(e) => ReviewError::Malformed(e.to_string()),
                Ok(_) => ReviewError::Malformed("expected a JSON object".into()),
            },
        );
    }
    // One pass: the pod is read along with the review. Should that fail (a malformed body, or
    // an object that is not a pod), a second pass finds out which, and names the field.
    // Checking UTF-8 once up front (fast) spares the parser checking every string.
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(malformed(body));
    };
    if let Ok(input) = serde_json::from_str::<ReviewIn<'_, MapOnly<PodView<'_>>>>(text) {
        return answer(input, opts, |pod| Ok(pod.0));
    }
    let input: ReviewIn<'_, &RawValue> = serde_json::from_str(text).map_err(|_| malformed(body))?;
    answer(input, opts, |raw| {
        mutate::parse_pod(raw.get()).map_err(|e| ReviewError::InvalidPod(e.to_string()))
    })
}

fn answer<'a, O>(
    input: ReviewIn<'a, O>,
    opts: &MutateOptions,
    pod_of: impl FnOnce(O) -> Result<PodView<'a>, ReviewError>,
) -> Result<Answer, ReviewError> {
    let api_version = input.api_version.as_deref().unwrap_or_default();
    let Some(&api_version) = API_VERSIONS.iter().find(|v| **v == api_version) else {
        return Err(ReviewError::ApiVersion(api_version.to_owned()));
    };
    let kind = input.kind.as_deref().unwrap_or_default();
    if kind != "AdmissionReview" {
        return Err(ReviewError::Kind(kind.to_owned()));
    }
    let MapOnly(request) = input.request.ok_or(ReviewError::MissingRequest)?;
    let uid = match request.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid,
        _ => return Err(ReviewError::MissingUid),
    };

    let applicable = is_pod(&request) && request.operation.as_deref() == Some("CREATE");
    let (outcome, patch) = if applicable {
        let pod = pod_of(request.object.ok_or(ReviewError::MissingObject)?)?;
        match mutate::mutate(&pod, opts) {
            Mutation::Patch(ops) => (
                Outcome::Mutated {
                    containers: ops.len(),
                },
                Some(encode_patch(&ops)?),
            ),
            Mutation::Unchanged(reason) => (Outcome::Skipped(reason), None),
        }
    } else {
        (Outcome::NotApplicable, None)
    };

    let out = ReviewOut {
        api_version,
        kind: "AdmissionReview",
        response: ResponseOut {
            uid,
            allowed: true,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
        },
    };
    let body =
        serde_json::to_vec(&out).map_err(|e| ReviewError::Encode(format!("the response: {e}")))?;
    Ok(Answer {
        body,
        outcome,
        uid: uid.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use test_support::webhook as support;

    fn opts() -> MutateOptions {
        MutateOptions {
            apiserver_fqdn: "foo.bar.".into(),
            skip_env_from: false,
        }
    }

    fn request(api_version: &str, operation: &str, kind: &str, object: Value) -> Vec<u8> {
        json!({
            "apiVersion": api_version,
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "", "version": "v1", "kind": kind},
                "resource": {"group": "", "version": "v1", "resource": if kind == "Pod" {"pods"} else {"configmaps"}},
                "operation": operation,
                "object": object,
            }
        })
        .to_string()
        .into_bytes()
    }

    fn pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "a"}]}})
    }

    fn answer(body: &[u8]) -> (Value, Outcome) {
        let a = review(body, &opts()).expect("answers");
        (serde_json::from_slice(&a.body).expect("json"), a.outcome)
    }

    #[test]
    fn same_api_version_uid_and_patch() {
        for version in API_VERSIONS {
            let (out, outcome) = answer(&request(version, "CREATE", "Pod", pod()));
            assert_eq!(out["apiVersion"], version);
            assert_eq!(out["kind"], "AdmissionReview");
            assert_eq!(out["response"]["uid"], "u-1");
            assert_eq!(out["response"]["allowed"], true);
            assert_eq!(out["response"]["patchType"], "JSONPatch");
            let patch = BASE64
                .decode(out["response"]["patch"].as_str().expect("patch string"))
                .expect("base64");
            let patch: Value = serde_json::from_slice(&patch).expect("patch json");
            assert_eq!(
                patch,
                json!([{"op": "add", "path": "/spec/containers/0/env",
                        "value": [{"name": "KUBERNETES_SERVICE_HOST", "value": "foo.bar."}]}])
            );
            assert_eq!(outcome, Outcome::Mutated { containers: 1 });
        }
    }

    #[test]
    fn not_applicable_has_no_patch() {
        let cases = [
            request(API_VERSIONS[0], "UPDATE", "Pod", pod()),
            request(API_VERSIONS[0], "DELETE", "Pod", Value::Null),
            request(API_VERSIONS[0], "CREATE", "ConfigMap", json!({"data": {}})),
        ];
        for body in cases {
            let (out, outcome) = answer(&body);
            assert_eq!(outcome, Outcome::NotApplicable);
            assert_eq!(
                out["response"],
                json!({"uid": "u-1", "allowed": true}),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    /// The bound is exact for a pod whose every container is patched: its answer is the bound
    /// plus the uid, for short and long FQDNs, one-, two- and three-digit indexes, and both
    /// `add .../env` and `add .../env/-`.
    #[test]
    fn answer_growth_bound_is_exact() {
        let cases = [
            (1, 8, false),
            (1, 8, true),
            (9, 30, false),
            (10, 30, true),
            (11, 100, false),
            (100, 254, false),
            (100, 254, true),
            (mutate::MAX_CONTAINERS, mutate::MAX_FQDN_BYTES, false),
        ];
        for (containers, fqdn_bytes, with_env) in cases {
            let fqdn = support::fqdn(fqdn_bytes);
            assert_eq!(fqdn.len(), fqdn_bytes);
            let container = if with_env {
                json!({"env": [{"name": "A", "value": "b"}]})
            } else {
                json!({})
            };
            let list = vec![container; containers];
            let pod = json!({"spec": {"initContainers": list, "containers": list}});
            let body = request(API_VERSIONS[1], "CREATE", "Pod", pod);
            let opts = MutateOptions {
                apiserver_fqdn: fqdn,
                skip_env_from: false,
            };
            let a = review(&body, &opts).expect("answers");
            assert_eq!(
                a.outcome,
                Outcome::Mutated {
                    containers: 2 * containers
                }
            );
            assert_eq!(
                a.body.len(),
                answer_growth_bound(containers, fqdn_bytes) + "u-1".len(),
                "{containers} containers, FQDN of {fqdn_bytes} bytes, env {with_env}"
            );
        }
    }

    /// The arithmetic itself, against figures worked out by hand: the envelope (138 bytes) and
    /// the base64 of `[` + operations + `]`, each operation 89 bytes plus its list name, index
    /// and FQDN.
    #[test]
    fn answer_growth_bound_figures() {
        let cases = [
            // No container: the envelope and the base64 of "[]".
            (0, 8, 138 + 4),
            // [op(init,0),op(containers,0)]: 2 + (89+14+1+8) + 1 + (89+10+1+8) = 223 → 300.
            (1, 8, 138 + 300),
            (mutate::MAX_CONTAINERS, mutate::MAX_FQDN_BYTES, 95_582),
            (1000, mutate::MAX_FQDN_BYTES, 957_182),
        ];
        for (containers, fqdn_bytes, want) in cases {
            assert_eq!(
                answer_growth_bound(containers, fqdn_bytes),
                want,
                "{containers} containers, FQDN of {fqdn_bytes} bytes"
            );
        }
    }

    /// The server's default allowance is the bound at the container limit with the longest FQDN
    /// `--apiserver-fqdn` accepts, so no pod the container limit lets through is refused for
    /// the size of its answer.
    #[test]
    fn the_default_allowance_fits_the_container_limit() {
        let longest = support::fqdn(mutate::MAX_FQDN_BYTES);
        assert_eq!(crate::cli::parse_fqdn(&longest).as_deref(), Ok(&*longest));
        let longer = format!("a{longest}");
        assert!(crate::cli::parse_fqdn(&longer).is_err(), "{longer}");
        assert_eq!(
            crate::config::Limits::DEFAULT.answer_unbudgeted_bytes,
            answer_growth_bound(mutate::MAX_CONTAINERS, mutate::MAX_FQDN_BYTES)
        );
    }

    #[test]
    fn subresource_is_not_applicable() {
        let mut body: Value =
            serde_json::from_slice(&request(API_VERSIONS[0], "CREATE", "Pod", pod()))
                .expect("json");
        body["request"]["subResource"] = json!("binding");
        let (_, outcome) = answer(body.to_string().as_bytes());
        assert_eq!(outcome, Outcome::NotApplicable);
    }

    #[test]
    fn only_an_answer_that_cannot_be_encoded_is_the_webhooks_fault() {
        let cases = [
            (ReviewError::Malformed("x".into()), true),
            (ReviewError::ApiVersion("x".into()), true),
            (ReviewError::Kind("x".into()), true),
            (ReviewError::MissingRequest, true),
            (ReviewError::MissingUid, true),
            (ReviewError::MissingObject, true),
            (ReviewError::InvalidPod("x".into()), true),
            (ReviewError::Encode("the response: x".into()), false),
        ];
        for (error, client) in cases {
            assert_eq!(error.is_client_error(), client, "{error}");
        }
    }

    #[test]
    fn bad_reviews_are_named() {
        let mut cases: Vec<(Vec<u8>, &str)> = vec![
            (b"{".to_vec(), "body is not a valid AdmissionReview: EOF"),
            (b"[]".to_vec(), "body is not a valid AdmissionReview: expected a JSON object"),
            (b"".to_vec(), "body is not a valid AdmissionReview: EOF while parsing"),
            (b"{}".to_vec(), "apiVersion is missing"),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}"#.to_vec(),
                "request.uid: invalid type: integer",
            ),
            (
                br#"{"apiVersion":"v1","kind":"AdmissionReview","request":{"uid":"x"}}"#.to_vec(),
                "unsupported apiVersion \"v1\"",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod","request":{"uid":"x"}}"#.to_vec(),
                "unsupported kind \"Pod\"",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
                "AdmissionReview has no request",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":""}}"#.to_vec(),
                "request.uid is missing or empty",
            ),
            (
                request(API_VERSIONS[0], "CREATE", "Pod", Value::Null),
                "request.object is missing",
            ),
            // serde would read these arrays as structs; kube-apiserver never sends them.
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":["","Pod"],"operation":"CREATE","object":{}}}"#.to_vec(),
                "request.kind: invalid type: sequence, expected a JSON object",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":["u"]}"#.to_vec(),
                "request: invalid type: sequence, expected a JSON object",
            ),
            (
                request(API_VERSIONS[0], "CREATE", "Pod", json!({"spec": [[{}]]})),
                "request.object is not a valid Pod: spec: invalid type: sequence, expected a JSON object",
            ),
            (
                request(API_VERSIONS[0], "CREATE", "Pod", json!([{}])),
                "request.object is not a valid Pod: invalid type: sequence, expected a JSON object",
            ),
            (
                request(API_VERSIONS[0], "CREATE", "Pod", json!({"spec": {"containers": [["KUBERNETES_SERVICE_HOST"]]}})),
                "spec.containers[0]: invalid type: sequence",
            ),
            (
                request(API_VERSIONS[0], "CREATE", "Pod", json!({"spec": {"containers": [{"env": 5}]}})),
                "request.object is not a valid Pod: spec.containers[0].env: invalid type: integer",
            ),
            (
                request(API_VERSIONS[0], "CREATE", "Pod", json!({"spec": {"containers": [{"env": [{"value": "x"}]}]}})),
                "request.object is not a valid Pod: spec.containers[0].env[0]: missing field `name`",
            ),
            (
                request(API_VERSIONS[0], "CREATE", "Pod", json!({"spec": {"initContainers": [{"env": [{"name": null}]}]}})),
                "request.object is not a valid Pod: spec.initContainers[0].env[0].name: invalid type: null, expected a string",
            ),
            (
                request(API_VERSIONS[0], "CREATE", "Pod", json!({"spec": {"containers": [{"env": [["name", "KUBERNETES_SERVICE_HOST"]]}]}})),
                "request.object is not a valid Pod: spec.containers[0].env[0]: invalid type: sequence, expected a JSON object",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","object":{"spec":{"containers":[{"env":[{"name":"A","name":"B"}]}]}}}}"#.to_vec(),
                "request.object is not a valid Pod: spec.containers[0].env[0]: duplicate field `name`",
            ),
            (
                request(API_VERSIONS[0], "CREATE", "Pod", json!({"metadata": {"labels": {mutate::INJECT_LABEL: ["false"]}}})),
                "request.object is not a valid Pod: metadata.labels.apiserver-proxy.networking.gardener.cloud/inject: invalid type: sequence, expected a string",
            ),
        ];
        let too_many = json!({"spec": {"containers": vec![json!({}); mutate::MAX_CONTAINERS + 1]}});
        cases.push((
            request(API_VERSIONS[0], "CREATE", "Pod", too_many),
            "request.object is not a valid Pod: spec.containers: more than 100 entries; a pod may have at most 100 containers and 100 init containers",
        ));
        let too_many = json!({"spec": {"initContainers": vec![json!({}); 400_000]}});
        cases.push((
            request(API_VERSIONS[0], "CREATE", "Pod", too_many),
            "request.object is not a valid Pod: spec.initContainers: more than 100 entries",
        ));
        for (body, want) in cases {
            let err = review(&body, &opts()).expect_err("must fail").to_string();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
    }
}
