// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! A corpus of bad input sent as raw bytes over real TLS: broken JSON, hostile shapes and sizes,
//! wrong content types, oversized bodies and HTTP request smuggling attempts. Each gets a 4xx
//! or a no-op allowed answer (never a 5xx, never a hang), and the server keeps serving.

use test_support::webhook as common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Certs, Client, Server, admission, config, decoded_patch, review_request};
use hyper::StatusCode;
use pod_webhook::WEBHOOK_PATH;
use serde_json::{Value, json};

const V1: &str = "admission.k8s.io/v1";
const LIMIT: usize = 7 * 1024 * 1024;

/// What a case must get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Exactly this status, then the connection closes.
    Status(u16),
    /// 200 with an AdmissionReview that allows and changes nothing.
    NoOp,
    /// A well-formed request that is merely large: 200 with the patch.
    Patched,
    /// No answer at all, the connection closed (not HTTP/1 at all).
    Closed,
    /// One 4xx of hyper's choosing (framing errors), then the connection closes.
    Any4xx,
    /// Both Content-Length and Transfer-Encoding: read by Transfer-Encoding alone, one no-op
    /// answer, the connection closed so nothing after the body is read as a request
    /// (RFC 9112, section 6.1).
    OneNoOpThenClose,
}

struct Case {
    name: String,
    bytes: Vec<u8>,
    expect: Expect,
}

fn case(name: impl Into<String>, bytes: Vec<u8>, expect: Expect) -> Case {
    Case {
        name: name.into(),
        bytes,
        expect,
    }
}

/// A POST to the webhook with the given extra header lines, a Content-Length and
/// `connection: close`.
fn post_with(headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {WEBHOOK_PATH}?timeout=2s HTTP/1.1\r\nhost: localhost\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn post(body: &[u8]) -> Vec<u8> {
    post_with("content-type: application/json\r\n", body)
}

/// A raw request without any framing added.
fn raw(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

fn pod() -> Value {
    json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "a"}]}})
}

/// A valid, applicable review with `filler` as a pod annotation.
fn pod_review_with_annotation(filler: &str) -> Vec<u8> {
    let mut pod = pod();
    pod["metadata"]["annotations"] = json!({ "filler": filler });
    admission(V1, "big", pod).to_string().into_bytes()
}

fn corpus() -> Vec<Case> {
    use Expect::*;
    let readme = std::fs::read(common::testdata().join("admission.json")).expect("README example");
    let mut cases = Vec::new();

    // Truncated JSON: the README example cut at many points.
    for cut in [0, 1, 2, 10, 50, 100, 200, 400, 600, 800, readme.len() - 2] {
        cases.push(case(
            format!("truncated at {cut}"),
            post(&readme[..cut]),
            Status(400),
        ));
    }

    // Deep nesting, at the top and inside the pod.
    let deep = |open: &str, n: usize| open.repeat(n);
    cases.push(case(
        "100k [",
        post(deep("[", 100_000).as_bytes()),
        Status(400),
    ));
    cases.push(case(
        "100k {\"a\":",
        post(deep("{\"a\":", 100_000).as_bytes()),
        Status(400),
    ));
    let nested_pod = format!(
        r#"{{"apiVersion":"{V1}","kind":"AdmissionReview","request":{{"uid":"d","kind":{{"kind":"Pod"}},"operation":"CREATE","object":{{"metadata":{{"annotations":{}{}}}}}}}}}"#,
        deep("[", 50_000),
        deep("]", 50_000)
    );
    // serde_json skips ignored values without recursion: deep nesting there is harmless.
    cases.push(case(
        "50k [ inside the pod",
        post(nested_pod.as_bytes()),
        NoOp,
    ));
    let nested_unread = format!(
        r#"{{"apiVersion":"{V1}","kind":"AdmissionReview","request":{{"uid":"d","operation":"DELETE","options":{}1{}}}}}"#,
        deep("[", 1000),
        deep("]", 1000)
    );
    cases.push(case(
        "1000 [ in an ignored field",
        post(nested_unread.as_bytes()),
        NoOp,
    ));

    // Huge strings and arrays, within and beyond the limit.
    let huge_string = "x".repeat(6 * 1024 * 1024);
    cases.push(case(
        "6 MiB annotation, valid pod",
        post(&pod_review_with_annotation(&huge_string)),
        Patched,
    ));
    let noop_huge_uid = json!({"apiVersion": V1, "kind": "AdmissionReview",
        "request": {"uid": huge_string, "operation": "DELETE", "kind": {"kind": "Pod"}}});
    cases.push(case(
        "6 MiB uid, DELETE",
        post(noop_huge_uid.to_string().as_bytes()),
        NoOp,
    ));
    let mut at_limit = pod_review_with_annotation("");
    let pad = LIMIT - at_limit.len();
    at_limit = pod_review_with_annotation(&"y".repeat(pad));
    assert_eq!(at_limit.len(), LIMIT);
    cases.push(case("exactly 7 MiB, valid pod", post(&at_limit), Patched));
    let over = pod_review_with_annotation(&"y".repeat(pad + 1));
    cases.push(case("7 MiB + 1 byte", post(&over), Status(413)));
    let huge_api_version = format!(
        r#"{{"apiVersion":"{}","kind":"AdmissionReview"}}"#,
        "v".repeat(5 << 20)
    );
    cases.push(case(
        "5 MiB apiVersion",
        post(huge_api_version.as_bytes()),
        Status(400),
    ));
    let many_containers = json!({"spec": {"containers": vec![json!({"name": "c"}); 100_000]}});
    cases.push(case(
        "100k containers",
        post(
            admission(V1, "many", many_containers)
                .to_string()
                .as_bytes(),
        ),
        Status(400),
    ));
    let many_bad = json!({"spec": {"containers": vec![json!(1); 500_000]}});
    cases.push(case(
        "500k containers of the wrong type",
        post(admission(V1, "many", many_bad).to_string().as_bytes()),
        Status(400),
    ));
    let many_env = json!({"spec": {"containers": [{"env": vec![json!({"name": "A", "value": "1"}); 100_000]}]}});
    cases.push(case(
        "100k env entries",
        post(admission(V1, "env", many_env).to_string().as_bytes()),
        Patched,
    ));

    // Wrong types.
    let typed = |request: Value| {
        post(
            json!({"apiVersion": V1, "kind": "AdmissionReview", "request": request})
                .to_string()
                .as_bytes(),
        )
    };
    for (name, request) in [
        ("uid number", json!({"uid": 1})),
        ("uid object", json!({"uid": {}})),
        ("request array", json!([])),
        ("request string", json!("r")),
        ("operation bool", json!({"uid": "u", "operation": true})),
        ("kind string", json!({"uid": "u", "kind": "Pod"})),
        ("resource array", json!({"uid": "u", "resource": ["pods"]})),
        (
            "object string",
            json!({"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": "pod"}),
        ),
        (
            "spec array",
            json!({"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": {"spec": []}}),
        ),
        (
            "containers object",
            json!({"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": {"spec": {"containers": {}}}}),
        ),
        (
            "env string",
            json!({"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": {"spec": {"containers": [{"env": "A=1"}]}}}),
        ),
        (
            "env name number",
            json!({"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": {"spec": {"containers": [{"env": [{"name": 1}]}]}}}),
        ),
        (
            "envFrom object",
            json!({"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": {"spec": {"containers": [{"envFrom": {}}]}}}),
        ),
        (
            "labels array",
            json!({"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": {"metadata": {"labels": []}, "spec": {}}}),
        ),
        (
            "label value number",
            json!({"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE", "object": {"metadata": {"labels": {"apiserver-proxy.networking.gardener.cloud/inject": 0}}}}),
        ),
    ] {
        cases.push(case(
            format!("wrong type: {name}"),
            typed(request),
            Status(400),
        ));
    }
    cases.push(case(
        "apiVersion null",
        post(br#"{"apiVersion":null,"kind":"AdmissionReview","request":{"uid":"u"}}"#),
        Status(400),
    ));
    cases.push(case(
        "kind number",
        post(br#"{"apiVersion":"admission.k8s.io/v1","kind":1,"request":{"uid":"u"}}"#),
        Status(400),
    ));
    cases.push(case("top-level array", post(b"[]"), Status(400)));
    cases.push(case("top-level null", post(b"null"), Status(400)));
    cases.push(case("empty body", post(b""), Status(400)));
    cases.push(case("trailing garbage", post(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u"}} x"#), Status(400)));
    cases.push(case("two documents", post(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u"}}{}"#), Status(400)));
    cases.push(case("NaN", post(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","x":NaN}}"#), Status(400)));

    // Duplicate keys in what the webhook reads: refused rather than guessed at.
    let dup = |s: &str| post(s.as_bytes());
    for (name, body) in [
        (
            "uid",
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","uid":"b","operation":"DELETE"}}"#,
        ),
        (
            "request",
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","operation":"DELETE"},"request":{"uid":"b"}}"#,
        ),
        (
            "apiVersion",
            r#"{"apiVersion":"admission.k8s.io/v1","apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"a"}}"#,
        ),
        (
            "operation",
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","kind":{"kind":"Pod"},"operation":"DELETE","operation":"CREATE","object":{"spec":{"containers":[{}]}}}}"#,
        ),
        (
            "containers",
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","kind":{"kind":"Pod"},"operation":"CREATE","object":{"spec":{"containers":[],"containers":[{}]}}}}"#,
        ),
        (
            "env",
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","kind":{"kind":"Pod"},"operation":"CREATE","object":{"spec":{"containers":[{"env":[{"name":"KUBERNETES_SERVICE_HOST"}],"env":[]}]}}}}"#,
        ),
        (
            "env name",
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","kind":{"kind":"Pod"},"operation":"CREATE","object":{"spec":{"containers":[{"env":[{"name":"KUBERNETES_SERVICE_HOST","name":"X"}]}]}}}}"#,
        ),
    ] {
        cases.push(case(
            format!("duplicate key: {name}"),
            dup(body),
            Status(400),
        ));
    }
    // A duplicate opt-out label: the last value counts, as in Go and in kube-apiserver.
    cases.push(case(
        "duplicate key: opt-out label, last says disable",
        dup(r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","kind":{"kind":"Pod"},"operation":"CREATE","object":{"metadata":{"labels":{"apiserver-proxy.networking.gardener.cloud/inject":"true","apiserver-proxy.networking.gardener.cloud/inject":"disable"}},"spec":{"containers":[{}]}}}}"#),
        NoOp,
    ));

    // Invalid UTF-8 and broken escapes.
    for (name, body) in [
        ("0xff in a string", &b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"\xff\"}}"[..]),
        ("overlong encoding", b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"\xc0\xaf\"}}"),
        ("encoded surrogate", b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"\xed\xa0\x80\"}}"),
        ("truncated sequence", b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"\xe2\x82\"}}"),
        ("0xff in an ignored field", b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"u\",\"x\":\"\xff\"}}"),
        ("lone surrogate escape", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"\ud800"}}"#),
        ("bad escape", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"\x41"}}"#),
        ("raw control character", b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"a\x01\"}}"),
        ("UTF-16 body", b"\xff\xfe{\x00}\x00"),
    ] {
        cases.push(case(format!("encoding: {name}"), post(body), Status(400)));
    }

    // Wrong content types.
    let body = admission(V1, "ct", pod()).to_string();
    for ct in [
        "content-type: text/plain\r\n",
        "content-type: application/jsonp\r\n",
        "content-type: application/json-patch+json\r\n",
        "content-type: application/x-www-form-urlencoded\r\n",
        "content-type: multipart/form-data; boundary=x\r\n",
        "content-type: application/json, text/plain\r\n",
        "content-type: \r\n",
        "content-type: application/éjson\r\n",
        "",
    ] {
        cases.push(case(
            format!("content type {ct:?}"),
            post_with(ct, body.as_bytes()),
            Status(415),
        ));
    }
    cases.push(case(
        "two content types, the first not JSON",
        post_with(
            "content-type: text/plain\r\ncontent-type: application/json\r\n",
            body.as_bytes(),
        ),
        Status(415),
    ));

    // Oversized bodies, declared and chunked.
    let head = |extra: &str| {
        format!(
            "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n{extra}\r\n"
        )
    };
    cases.push(case(
        "declared 7 MiB + 1",
        raw(&head(&format!("content-length: {}\r\n", LIMIT + 1))),
        Status(413),
    ));
    cases.push(case(
        "declared u64::MAX",
        raw(&head(&format!("content-length: {}\r\n", u64::MAX))),
        Any4xx,
    ));
    cases.push(case(
        "declared beyond u64",
        raw(&head("content-length: 99999999999999999999999\r\n")),
        Any4xx,
    ));
    cases.push(case(
        "declared negative",
        raw(&head("content-length: -1\r\n")),
        Status(400),
    ));
    cases.push(case(
        "declared with a sign",
        raw(&head("content-length: +5\r\n\r\n{}{}{")),
        Status(400),
    ));
    let mut chunked = head("transfer-encoding: chunked\r\n").into_bytes();
    for _ in 0..8 {
        chunked.extend_from_slice(format!("{:x}\r\n", 1 << 20).as_bytes());
        chunked.extend_from_slice(&vec![b' '; 1 << 20]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    cases.push(case("chunked 8 MiB", chunked, Status(413)));
    let mut one_huge_chunk = head("transfer-encoding: chunked\r\n").into_bytes();
    one_huge_chunk.extend_from_slice(format!("{:x}\r\n", LIMIT + 1).as_bytes());
    one_huge_chunk.extend_from_slice(&vec![b' '; LIMIT + 1]);
    one_huge_chunk.extend_from_slice(b"\r\n0\r\n\r\n");
    cases.push(case("one chunk of 7 MiB + 1", one_huge_chunk, Status(413)));

    // Request smuggling and broken framing. The "smuggled" request is a GET to /smuggled: if
    // it were ever answered, a 404 would show up as a second response.
    let smuggled = "GET /smuggled HTTP/1.1\r\nhost: localhost\r\n\r\n";
    let noop = json!({"apiVersion": V1, "kind": "AdmissionReview",
        "request": {"uid": "s", "operation": "DELETE", "kind": {"kind": "Pod"}}})
    .to_string();
    let chunk = |s: &str| format!("{:x}\r\n{s}\r\n0\r\n\r\n", s.len());
    let req_line = format!(
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
    );
    let cl_te_body = format!("{}{smuggled}", chunk(&noop));
    cases.push(case(
        "Content-Length and Transfer-Encoding (CL.TE)",
        raw(&format!(
            "{req_line}content-length: {}\r\ntransfer-encoding: chunked\r\n\r\n{cl_te_body}",
            cl_te_body.len()
        )),
        OneNoOpThenClose,
    ));
    cases.push(case(
        "Transfer-Encoding and Content-Length (TE.CL)",
        raw(&format!(
            "{req_line}transfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n{cl_te_body}"
        )),
        OneNoOpThenClose,
    ));
    cases.push(case(
        "two different Content-Lengths",
        raw(&format!(
            "{req_line}content-length: {}\r\ncontent-length: {}\r\n\r\n{noop}{smuggled}",
            noop.len(),
            noop.len() + smuggled.len()
        )),
        Status(400),
    ));
    cases.push(case(
        "Content-Length list",
        raw(&format!(
            "{req_line}content-length: {}, {}\r\n\r\n{noop}{smuggled}",
            noop.len(),
            noop.len() + smuggled.len()
        )),
        Status(400),
    ));
    for te in [
        "chunked, identity",
        "identity",
        "gzip",
        "xchunked",
        "chunked\r\ntransfer-encoding: gzip",
    ] {
        cases.push(case(
            format!("transfer-encoding {te:?}"),
            raw(&format!(
                "{req_line}transfer-encoding: {te}\r\n\r\n{}{smuggled}",
                chunk(&noop)
            )),
            Status(400),
        ));
    }
    cases.push(case(
        "space before the colon",
        raw(&format!(
            "{req_line}transfer-encoding : chunked\r\ncontent-length: {}\r\n\r\n{noop}",
            noop.len()
        )),
        Status(400),
    ));
    cases.push(case(
        "obs-fold",
        raw(&format!(
            "{req_line}x-folded: a\r\n b\r\ncontent-length: {}\r\n\r\n{noop}",
            noop.len()
        )),
        Status(400),
    ));
    cases.push(case(
        "obs-fold hiding transfer-encoding",
        raw(&format!("{req_line}x-folded: a\r\n transfer-encoding: chunked\r\ncontent-length: {}\r\n\r\n{noop}", noop.len())),
        Status(400),
    ));
    cases.push(case(
        "bare LF line ends, no-op review",
        raw(&format!("POST {WEBHOOK_PATH} HTTP/1.1\nhost: localhost\ncontent-type: application/json\nconnection: close\ncontent-length: {}\n\n{noop}", noop.len())),
        NoOp,
    ));
    cases.push(case(
        "bare CR in a header",
        raw(&format!(
            "{req_line}x-cr: a\rb\r\ncontent-length: {}\r\n\r\n{noop}",
            noop.len()
        )),
        Status(400),
    ));
    cases.push(case(
        "NUL in a header",
        raw(&format!("{req_line}x-nul: a\0b\r\n\r\n")),
        Status(400),
    ));
    for size in [
        "zz",
        "-1",
        "0x10",
        "ffffffffffffffffffff",
        "1 ; a=b\"",
        "",
        " 5",
    ] {
        cases.push(case(
            format!("chunk size {size:?}"),
            raw(&format!(
                "{req_line}transfer-encoding: chunked\r\n\r\n{size}\r\n{noop}\r\n0\r\n\r\n"
            )),
            Status(400),
        ));
    }
    cases.push(case(
        "chunk shorter than its size",
        raw(&format!(
            "{req_line}transfer-encoding: chunked\r\n\r\n{:x}\r\n{noop}0\r\n\r\n",
            noop.len() + 100
        )),
        Status(408),
    ));
    cases.push(case(
        "body shorter than Content-Length",
        raw(&format!(
            "{req_line}content-length: {}\r\n\r\n{noop}",
            noop.len() + 10
        )),
        Status(408),
    ));
    cases.push(case(
        "HTTP/1.0 POST without length",
        raw(&format!(
            "POST {WEBHOOK_PATH} HTTP/1.0\r\ncontent-type: application/json\r\n\r\n{noop}"
        )),
        Status(400),
    ));
    cases.push(case(
        "HTTP/2.0 in an HTTP/1 request line",
        raw("GET /healthz HTTP/2.0\r\nhost: x\r\n\r\n"),
        Status(400),
    ));
    cases.push(case("HTTP/1.1 without host", raw(&format!("POST {WEBHOOK_PATH} HTTP/1.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{noop}", noop.len())), NoOp));
    cases.push(case("absolute URI with another host", raw(&format!("POST https://evil.example{WEBHOOK_PATH} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{noop}", noop.len())), NoOp));
    cases.push(case(
        "garbage method",
        raw("G\x01T / HTTP/1.1\r\n\r\n"),
        Status(400),
    ));
    cases.push(case(
        "request line only spaces",
        raw("   \r\n\r\n"),
        Status(400),
    ));
    cases.push(case(
        "header without a colon",
        raw(&format!("{req_line}nocolon\r\n\r\n")),
        Status(400),
    ));
    cases.push(case(
        "URI over the head limit",
        raw(&format!(
            "GET /{} HTTP/1.1\r\nhost: x\r\n\r\n",
            "a".repeat(64 * 1024)
        )),
        Status(431),
    ));
    cases.push(case(
        "10k headers",
        raw(&format!("{req_line}{}\r\n", "a: b\r\n".repeat(10_000))),
        Status(431),
    ));
    cases.push(case(
        "HTTP/2 preface on HTTP/1.1",
        raw("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        Closed,
    ));
    cases.push(case(
        "binary garbage",
        (0..=255u8).cycle().take(4096).collect(),
        Status(400),
    ));
    cases
}

/// Connects and writes the bytes while reading the answer, until the server closes or `limit`
/// passes. Returns the answer and whether the server closed the connection in time.
async fn exchange(
    client: &Client,
    addr: SocketAddr,
    bytes: &[u8],
    limit: Duration,
) -> (Vec<u8>, bool) {
    let mut stream = client.tls(addr).await.expect("TLS handshake");
    common::exchange(&mut stream, bytes, limit).await
}

/// Every status line in a raw answer.
fn statuses(answer: &str) -> Vec<u16> {
    answer
        .match_indices("HTTP/1.")
        .filter(|(i, _)| *i == 0 || answer[..*i].ends_with('\n'))
        .filter_map(|(i, _)| answer.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

fn body_of(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_corpus_over_tls() {
    let certs = Certs::new();
    let mut cfg = config(certs.dir.path());
    // Short enough that truncated requests do not slow the test down.
    cfg.limits.request_timeout = Duration::from_secs(2);
    cfg.limits.header_read_timeout = Duration::from_secs(2);
    let server = Server::start(cfg).await;
    let client = certs.http1_client();
    let limit = Duration::from_secs(20);
    let cases = corpus();
    let total = cases.len();
    let mut failures = Vec::new();
    let started = Instant::now();
    for Case {
        name,
        bytes,
        expect,
    } in cases
    {
        let t = Instant::now();
        let (answer, closed) = exchange(&client, server.addr, &bytes, limit).await;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let got = statuses(&answer);
        let head: String = answer.chars().take(200).collect();
        let mut problems = Vec::new();
        if !closed {
            problems.push(format!("no close within {limit:?}"));
        }
        if got.iter().any(|s| *s >= 500) {
            problems.push("a 5xx".to_owned());
        }
        match expect {
            Expect::Closed => {
                if !got.is_empty() {
                    problems.push(format!("expected no answer, got {got:?}"));
                }
            }
            Expect::Status(want) => {
                if got != [want] {
                    problems.push(format!("expected exactly [{want}], got {got:?}"));
                }
            }
            Expect::Any4xx => {
                if got.len() != 1 || !(400..500).contains(&got[0]) {
                    problems.push(format!("expected one 4xx, got {got:?}"));
                }
            }
            Expect::NoOp | Expect::Patched | Expect::OneNoOpThenClose => {
                if got != [200] {
                    problems.push(format!("expected exactly [200], got {got:?}"));
                } else {
                    match serde_json::from_str::<Value>(body_of(&answer)) {
                        Ok(review) => {
                            let patched = decoded_patch(&review).is_some();
                            if review["response"]["allowed"] != true
                                || patched != (expect == Expect::Patched)
                            {
                                problems.push(format!("wrong review: {}", review["response"]));
                            }
                        }
                        Err(e) => problems.push(format!("body not JSON: {e}")),
                    }
                }
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{name}: {} ({:?}): {head:?}",
                problems.join("; "),
                t.elapsed()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Still serving well-formed requests, on a new and on a kept connection.
    let mut conn = client.connect(server.addr).await.expect("connect");
    for i in 0..3 {
        let reply = conn
            .send(review_request(
                admission(V1, &format!("after-{i}"), pod()).to_string(),
            ))
            .await
            .expect("well-formed request after the corpus");
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()["response"]["uid"], format!("after-{i}"));
        assert!(decoded_patch(&reply.json()).is_some());
    }
    eprintln!("bad-input corpus: {total} cases in {:?}", started.elapsed());
}
