// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Why the webhook reads the pod through a narrow view instead of `k8s-openapi`'s typed `Pod`
//! (docs/design.md): a typed Pod keeps only the fields its version of the types knows. A webhook
//! built on typed objects answers with the difference between the pod it received and the pod it
//! re-serialised (controller-runtime's `PatchResponseFromRaw`), so every field newer than its
//! types becomes a `remove` operation. Here the types are Kubernetes 1.33's and the pod carries
//! two fields of 1.34 (`spec.hostnameOverride`, `containers[].restartPolicyRules`) and one no
//! release has: the typed round trip loses all three, the webhook's patch keeps them.

use test_support::webhook as common;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use pod_webhook::mutate::MutateOptions;
use pod_webhook::review;
use serde_json::{Value, json};

const V1: &str = "admission.k8s.io/v1";

/// A pod as kube-apiserver 1.34 sends it, with fields the 1.33 types do not have.
fn newer_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "db-0", "namespace": "default"},
        "spec": {
            "hostnameOverride": "db-primary",
            "futureField": {"anything": true},
            "initContainers": [{
                "name": "agent",
                "image": "registry.example/agent:1",
                "restartPolicy": "Always",
            }],
            "containers": [{
                "name": "db",
                "image": "registry.example/db:1",
                "restartPolicy": "Never",
                "restartPolicyRules": [
                    {"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}
                ],
                "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}],
            }],
        },
    })
}

/// The pod after a typed webhook's mutation: decoded into the 1.33 `Pod`, the variable added,
/// encoded again.
fn typed_mutation(pod: &Value) -> Value {
    let mut typed: Pod = serde_json::from_value(pod.clone()).expect("a typed Pod parses it");
    let spec = typed.spec.as_mut().expect("spec");
    let containers = spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut());
    for container in containers {
        container
            .env
            .get_or_insert_with(Vec::new)
            .push(k8s_openapi::api::core::v1::EnvVar {
                name: "KUBERNETES_SERVICE_HOST".into(),
                value: Some("foo.bar.".into()),
                value_from: None,
            });
    }
    serde_json::to_value(&typed).expect("encodes")
}

#[test]
fn a_typed_pod_loses_newer_fields_and_the_webhooks_patch_keeps_them() {
    let pod = newer_pod();

    // The webhook's own answer, applied to the pod kube-apiserver sent.
    let body = admission(V1, "newer", pod.clone()).to_string();
    let opts = MutateOptions {
        apiserver_fqdn: "foo.bar.".into(),
        skip_env_from: false,
    };
    let answer = review::review(body.as_bytes(), &opts).expect("answers");
    let answer: Value = serde_json::from_slice(&answer.body).expect("json");
    let ours = apply(&pod, &answer);

    // A typed webhook's answer: the difference between what it got and what it re-encoded.
    let typed = typed_mutation(&pod);
    let typed_patch = json_patch::diff(&pod, &typed);
    let mut theirs = pod.clone();
    json_patch::patch(&mut theirs, &typed_patch).expect("the diff applies");

    let env = json!([{"name": "KUBERNETES_SERVICE_HOST", "value": "foo.bar."}]);
    for result in [&ours, &theirs] {
        assert_eq!(result["spec"]["initContainers"][0]["env"], env);
        assert_eq!(result["spec"]["containers"][0]["env"], env);
        // Fields the 1.33 types know survive either way.
        assert_eq!(
            result["spec"]["initContainers"][0]["restartPolicy"],
            "Always"
        );
        assert_eq!(
            result["spec"]["containers"][0]["resizePolicy"][0]["resourceName"],
            "cpu"
        );
    }

    // Ours: the pod exactly as sent, plus the two env entries.
    let mut expected = pod.clone();
    expected["spec"]["initContainers"][0]["env"] = env.clone();
    expected["spec"]["containers"][0]["env"] = env;
    assert_eq!(ours, expected);

    // Theirs: the newer fields are gone, removed by the patch itself.
    assert!(theirs["spec"].get("hostnameOverride").is_none(), "{theirs}");
    assert!(theirs["spec"].get("futureField").is_none(), "{theirs}");
    assert!(
        theirs["spec"]["containers"][0]
            .get("restartPolicyRules")
            .is_none(),
        "{theirs}"
    );
    let removed: Vec<String> = serde_json::to_value(&typed_patch)
        .expect("patch json")
        .as_array()
        .expect("array")
        .iter()
        .filter(|op| op["op"] == "remove")
        .map(|op| op["path"].as_str().unwrap_or_default().to_owned())
        .collect();
    for path in [
        "/spec/hostnameOverride",
        "/spec/futureField",
        "/spec/containers/0/restartPolicyRules",
    ] {
        assert!(
            removed.iter().any(|p| p == path),
            "{path} not in {removed:?}"
        );
    }
}
