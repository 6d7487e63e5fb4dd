// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Property tests of the review → patch path: many pod shapes, the patch applied with the
//! json-patch crate, and the resulting pod checked field by field.

use test_support::webhook as common;

use common::{admission, apply, decoded_patch};
use pod_webhook::mutate::{INJECT_LABEL, MutateOptions};
use pod_webhook::review;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const HOST: &str = "KUBERNETES_SERVICE_HOST";

/// Any JSON, for fields the webhook does not know.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9 _/\"\\\\~-]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z/~]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn env_entry() -> impl Strategy<Value = Value> {
    prop_oneof![
        ("[A-Z_]{1,8}", "[a-z0-9.]{0,6}").prop_map(|(n, v)| json!({"name": n, "value": v})),
        "[A-Z_]{1,8}".prop_map(
            |n| json!({"name": n, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
        ),
    ]
}

/// The webhook's own variable, as a user might have set it already.
fn existing_host() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z0-9.]{1,12}".prop_map(|v| json!({"name": HOST, "value": v})),
        Just(json!({"name": HOST, "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}})),
    ]
}

fn container() -> impl Strategy<Value = Value> {
    (
        "[a-z]{1,6}",
        0u8..3,
        prop::collection::vec(env_entry(), 0..4),
        prop::option::of((existing_host(), any::<prop::sample::Index>())),
        prop::option::of(prop::collection::vec(any_json(), 0..3)),
        prop::option::of(any_json()),
    )
        .prop_map(|(name, env_shape, mut env, host, env_from, extra)| {
            let mut c = Map::new();
            c.insert("name".into(), json!(name));
            c.insert("image".into(), json!("busybox"));
            match env_shape {
                0 => {}
                1 => {
                    c.insert("env".into(), Value::Null);
                }
                _ => {
                    if let Some((host, at)) = host {
                        let at = at.index(env.len() + 1);
                        env.insert(at, host);
                    }
                    c.insert("env".into(), Value::from(env));
                }
            }
            if let Some(env_from) = env_from {
                let refs: Vec<Value> = env_from
                    .into_iter()
                    .map(|_| json!({"configMapRef": {"name": "cm"}}))
                    .collect();
                c.insert("envFrom".into(), Value::from(refs));
            }
            if let Some(extra) = extra {
                c.insert("someFutureField".into(), extra);
            }
            Value::Object(c)
        })
}

fn pod() -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop::collection::vec(container(), 0..3)),
        prop::collection::vec(container(), 0..5),
        prop::option::of(prop_oneof![
            Just("disable"),
            Just("false"),
            Just("False"),
            Just("FALSE"),
            Just("f"),
            Just("F"),
            Just("0"),
            Just("true"),
            Just("enabled"),
        ]),
        prop::collection::btree_map("[a-z./-]{1,10}", "[a-z0-9]{0,5}", 0..3),
        any_json(),
    )
        .prop_map(|(init, containers, inject, labels, extra)| {
            let mut labels: Map<String, Value> =
                labels.into_iter().map(|(k, v)| (k, json!(v))).collect();
            if let Some(v) = inject {
                labels.insert(INJECT_LABEL.into(), json!(v));
            }
            let mut spec = Map::new();
            if let Some(init) = init {
                spec.insert("initContainers".into(), Value::from(init));
            }
            spec.insert("containers".into(), Value::from(containers));
            spec.insert("futureSpecField".into(), extra.clone());
            json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p", "namespace": "ns", "labels": labels, "annotations": {"x": extra}},
                "spec": spec,
                "status": {"phase": "Pending"},
            })
        })
}

fn host_count(container: &Value) -> usize {
    container["env"]
        .as_array()
        .map_or(0, |env| env.iter().filter(|e| e["name"] == HOST).count())
}

fn without_env(container: &Value) -> Value {
    let mut c = container.clone();
    if let Some(m) = c.as_object_mut() {
        m.remove("env");
    }
    c
}

fn uses_env_from(container: &Value) -> bool {
    container["envFrom"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn patch_adds_exactly_what_is_missing(pod in pod(), skip_env_from in any::<bool>()) {
        let opts = MutateOptions { apiserver_fqdn: "api.example.com.".into(), skip_env_from };
        let request = admission("admission.k8s.io/v1", "uid-1", pod.clone());
        let answer = review::review(request.to_string().as_bytes(), &opts).expect("valid review");
        let response: Value = serde_json::from_slice(&answer.body).expect("json");
        prop_assert_eq!(&response["response"]["uid"], "uid-1");
        prop_assert_eq!(&response["response"]["allowed"], true);

        let patched = apply(&pod, &response);
        let opted_out = pod["metadata"]["labels"][INJECT_LABEL]
            .as_str()
            .is_some_and(|v| ["disable", "false", "False", "FALSE", "f", "F", "0"].contains(&v));
        if opted_out {
            prop_assert!(decoded_patch(&response).is_none());
            prop_assert_eq!(&patched, &pod);
            return Ok(());
        }

        let mut expected_ops = 0;
        for list in ["initContainers", "containers"] {
            let before = pod["spec"][list].as_array().cloned().unwrap_or_default();
            let after = patched["spec"][list].as_array().cloned().unwrap_or_default();
            prop_assert_eq!(before.len(), after.len());
            for (b, a) in before.iter().zip(&after) {
                if skip_env_from && uses_env_from(b) {
                    prop_assert_eq!(a, b, "envFrom container untouched");
                    continue;
                }
                prop_assert_eq!(host_count(a), 1, "exactly one {} in {}", HOST, a);
                if host_count(b) == 1 {
                    prop_assert_eq!(a, b, "existing value kept, nothing else touched");
                } else {
                    expected_ops += 1;
                    let mut want = b["env"].as_array().cloned().unwrap_or_default();
                    want.push(json!({"name": HOST, "value": "api.example.com."}));
                    prop_assert_eq!(&a["env"], &Value::from(want), "appended at the end");
                    prop_assert_eq!(without_env(a), without_env(b), "other fields unchanged");
                }
            }
        }
        let ops = decoded_patch(&response).map_or(0, |p| p.as_array().map_or(0, Vec::len));
        prop_assert_eq!(ops, expected_ops, "one operation per container lacking the variable");

        // Outside the containers nothing changed at all.
        let strip = |p: &Value| {
            let mut p = p.clone();
            for list in ["initContainers", "containers"] {
                if let Some(cs) = p["spec"][list].as_array_mut() {
                    for c in cs {
                        *c = without_env(c);
                    }
                }
            }
            p
        };
        prop_assert_eq!(strip(&patched), strip(&pod));
    }

    /// Whatever the body, the reviewer answers or names an error; it never panics.
    #[test]
    fn arbitrary_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..256), json in any_json()) {
        let opts = MutateOptions { apiserver_fqdn: "foo.bar.".into(), skip_env_from: false };
        let _ = review::review(&body, &opts);
        let mut request = admission("admission.k8s.io/v1", "u", json.clone());
        let _ = review::review(request.to_string().as_bytes(), &opts);
        request["request"] = json;
        if let Err(e) = review::review(request.to_string().as_bytes(), &opts) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}
