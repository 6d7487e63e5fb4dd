// SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
// SPDX-License-Identifier: Apache-2.0

//! Writes the committed test data: a CA, a server certificate for localhost/127.0.0.1 with its
//! key, a client certificate and key for mTLS, and `admission.json`, the README's example
//! AdmissionReview. Run by `make testdata`:
//!
//!     cargo run -p apiserver-proxy-pod-webhook --example gen-testdata -- testdata

use std::error::Error;
use std::fs;
use std::path::PathBuf;

use test_support::certs;

/// The README's example request: a Pod CREATE with one init container and one container,
/// neither with any environment.
const ADMISSION_JSON: &str = r#"{
  "apiVersion": "admission.k8s.io/v1",
  "kind": "AdmissionReview",
  "request": {
    "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
    "kind": {"group": "", "version": "v1", "kind": "Pod"},
    "resource": {"group": "", "version": "v1", "resource": "pods"},
    "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
    "requestResource": {"group": "", "version": "v1", "resource": "pods"},
    "name": "example",
    "namespace": "default",
    "operation": "CREATE",
    "userInfo": {"username": "admin", "groups": ["system:authenticated"]},
    "object": {
      "apiVersion": "v1",
      "kind": "Pod",
      "metadata": {"name": "example", "namespace": "default", "labels": {"app": "example"}},
      "spec": {
        "initContainers": [
          {"name": "init", "image": "busybox:1.36", "command": ["sh", "-c", "true"]}
        ],
        "containers": [
          {"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}
        ]
      }
    },
    "oldObject": null,
    "dryRun": false,
    "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
  }
}
"#;

/// A Pod CREATE of about 80 KB for benchmarks: 20 containers with 45 environment variables,
/// mounts, probes and resources each; none has KUBERNETES_SERVICE_HOST. Deterministic.
fn large_admission() -> Result<String, Box<dyn Error>> {
    let containers: Vec<serde_json::Value> = (0..20)
        .map(|c| {
            let env: Vec<serde_json::Value> = (0..45)
                .map(|e| {
                    serde_json::json!({
                        "name": format!("APP_SETTING_{c:02}_{e:02}"),
                        "value": format!("value-of-setting-{e:02}-for-container-{c:02}-x"),
                    })
                })
                .collect();
            serde_json::json!({
                "name": format!("container-{c:02}"),
                "image": format!("registry.example.com/team/service-{c:02}:1.2.3"),
                "args": ["--config=/etc/app/config.yaml", "--log-level=info"],
                "ports": [{"name": "http", "containerPort": 8080 + c, "protocol": "TCP"}],
                "env": env,
                "envFrom": [{"configMapRef": {"name": format!("config-{c:02}")}}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"memory": "256Mi"}},
                "volumeMounts": [{"name": "config", "mountPath": "/etc/app", "readOnly": true}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080 + c},
                                   "periodSeconds": 10},
            })
        })
        .collect();
    // The README's request as the envelope: only the pod, its uid and its creator differ.
    let mut review: serde_json::Value = serde_json::from_str(ADMISSION_JSON)?;
    let request = &mut review["request"];
    request["uid"] = "0d4c3a43-5f62-4a8f-9d1e-6b7c2f0a9e11".into();
    if let Some(fields) = request.as_object_mut() {
        fields.remove("name"); // a ReplicaSet's pods are named by the apiserver
    }
    request["userInfo"] = serde_json::json!({
        "username": "system:serviceaccount:kube-system:replicaset-controller"
    });
    request["object"] = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "big-", "namespace": "default", "labels": {"app": "big"}},
        "spec": {"containers": containers,
                 "volumes": [{"name": "config", "configMap": {"name": "config"}}]},
    });
    Ok(serde_json::to_string(&review)? + "\n")
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: gen-testdata DIR (the directory to write the test data to)")?,
    );
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let ca = certs::Ca::new("apiserver-proxy test CA")?;
    let server = ca.server("localhost")?;
    let client = ca.client("kube-apiserver")?;
    let files = [
        ("ca.crt", ca.cert_pem()),
        ("tls.crt", server.cert),
        ("tls.key", server.key),
        ("client.crt", client.cert),
        ("client.key", client.key),
        ("admission.json", ADMISSION_JSON.to_owned()),
        ("admission-large.json", large_admission()?),
    ];
    for (name, content) in files {
        let path = dir.join(name);
        fs::write(&path, content).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
