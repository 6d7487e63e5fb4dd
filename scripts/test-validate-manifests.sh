#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# Proves that scripts/validate-manifests.sh (kubernetes-validate, then our policy checks in
# scripts/validate_manifests.py) catches what it claims to: breaks a copy of deploy/
# in one way at a time and expects a failure naming the problem. Also: no manifest at all fails.
# shellcheck source=scripts/test-prelude.sh
. "$(dirname "$0")/test-prelude.sh"
passed=0 failed=0

# expect_failure NAME EXPECTED-MESSAGE-REGEX FILE PYTHON-EXPR-ON-TEXT
expect_failure() {
  local name="$1" want="$2" file="$3" edit="$4"
  rm -rf "$tmp/deploy" && cp -r "$root/deploy" "$tmp/deploy"
  if [ -n "$file" ]; then
    "$bin/python" -c 'import sys; p=sys.argv[1]; t=open(p).read(); n=eval(sys.argv[2]); assert n!=t, "edit changed nothing"; open(p,"w").write(n)' \
      "$tmp/deploy/$file" "$edit"
  fi
  if out="$("$root/scripts/validate-manifests.sh" "$tmp/deploy" 2>&1)"; then
    echo "FAIL: $name: validation passed"; failed=$((failed + 1))
  elif ! grep -Eq -- "$want" <<<"$out"; then
    echo "FAIL: $name: no error matching /$want/:"; echo "$out" | tail -5; failed=$((failed + 1))
  else
    echo "ok: $name"; passed=$((passed + 1))
  fi
}

expect_failure "privileged container" "must not be privileged" sidecar/daemonset.yaml \
  't.replace("privileged: false", "privileged: true", 1)'
expect_failure "memory limit on the DaemonSet" "no memory limit" sidecar/daemonset.yaml \
  't.replace("            requests:\n              cpu: 20m", "            limits:\n              memory: 64Mi\n            requests:\n              cpu: 20m", 1)'
expect_failure "extra capability" "must add exactly" sidecar/daemonset.yaml \
  't.replace("                - NET_RAW\n", "                - NET_RAW\n                - SYS_ADMIN\n", 1)'
expect_failure "schema: wrong type" "hostNetwork" sidecar/daemonset.yaml \
  't.replace("hostNetwork: true", "hostNetwork: \"yes\"")'
expect_failure "schema: unknown field (strict)" "Additional properties|additional properties|not allowed" webhook/service.yaml \
  't.replace("  type: ClusterIP", "  type: ClusterIP\n  typo: 1")'
expect_failure "schema: a core kind's apiVersion misspelt" "Couldn't find schema for kind PodDisruptionBudget" webhook/poddisruptionbudget.yaml \
  't.replace("apiVersion: policy/v1", "apiVersion: policy/v2")'
expect_failure "IP mismatch with Envoy" "listener kube-apiserver must be on" sidecar/envoy.yaml \
  't.replace("address: \"198.18.0.2\"", "address: \"198.18.0.3\"")'
expect_failure "dual-stack without Envoy's second listener" "one listener per --ip-address" examples/dual-stack/kustomization.yaml \
  't.replace("  - ../../components/dual-stack\n", "")'
expect_failure "Envoy's second listener off the second IP" "listener kube-apiserver-second-ip must be on" components/dual-stack/kustomization.yaml \
  't.replace("        delimiter: \",\"\n        index: 1\n", "        delimiter: \",\"\n        index: 0\n")'
expect_failure "two proxy IPs of one family" "two of different families" examples/dual-stack/settings.yaml \
  't.replace("proxyIP: 198.18.0.2,2001:2::2", "proxyIP: 198.18.0.2,198.18.0.3")'
expect_failure "the base moves a value the overlay sets" "unable to find field" sidecar/daemonset.yaml \
  't.replace("- --port=443", "- --port=8443")'
expect_failure "a second double-quoted string in Envoy's bootstrap" "exactly four double-quoted strings" sidecar/envoy.yaml \
  't.replace("stat_prefix: kube_apiserver", "stat_prefix: \"kube_apiserver\"")'
expect_failure "init container as daemon" "needs --daemon=false" sidecar/daemonset.yaml \
  't.replace("            - --daemon=false\n", "")'
expect_failure "no xtables lock" "xtables" sidecar/daemonset.yaml \
  't.replace("type: FileOrCreate", "type: File")'
expect_failure "read-only sidecar without a writable /run" "/run must be an emptyDir" sidecar/daemonset.yaml \
  't.replace("            - name: run\n              mountPath: /run\n", "", 1)'
expect_failure "sidecar without a readiness probe" "readinessProbe must be /readyz" sidecar/daemonset.yaml \
  't.replace("path: /readyz", "path: /healthz")'
expect_failure "failurePolicy Fail" "failurePolicy must be Ignore" webhook/mutatingwebhookconfiguration.yaml \
  't.replace("failurePolicy: Ignore", "failurePolicy: Fail")'
expect_failure "selects its own namespace" "own namespace" webhook/mutatingwebhookconfiguration.yaml \
  't.replace("values: [\"apiserver-proxy\"]", "values: [\"kube-system\"]")'
expect_failure "opt-out value missing" "objectSelector must skip" webhook/mutatingwebhookconfiguration.yaml \
  '"]".join(t.rsplit(", \"0\"]", 1))'
expect_failure "UPDATE too" "CREATE only" webhook/mutatingwebhookconfiguration.yaml \
  't.replace("          - CREATE\n", "          - CREATE\n          - UPDATE\n")'
expect_failure "webhook as root" "non-root" webhook/deployment.yaml \
  't.replace("runAsUser: 65532", "runAsUser: 0", 1)'
expect_failure "probe over HTTP" "readinessProbe must be HTTPS" webhook/deployment.yaml \
  't.replace("scheme: HTTPS", "scheme: HTTP").replace("scheme: HTTP", "scheme: HTTPS", 1)'
expect_failure "one replica" "2 replicas" webhook/deployment.yaml \
  't.replace("replicas: 2", "replicas: 1")'
# REUSE-IgnoreStart
expect_failure "missing SPDX header" "SPDX header" webhook/namespace.yaml \
  't.replace("# SPDX-License-Identifier: Apache-2.0\n", "")'
# REUSE-IgnoreEnd
expect_failure "file left out of the kustomization" "not used by any kustomization" webhook/kustomization.yaml \
  't.replace("  - poddisruptionbudget.yaml\n", "")'
expect_failure "missing resource file" "does not exist" webhook/kustomization.yaml \
  't.replace("  - service.yaml\n", "  - service.yaml\n  - gone.yaml\n")'
expect_failure "cert-manager without CA injection" "inject-ca-from" components/cert-manager/kustomization.yaml \
  't.replace("cert-manager.io/inject-ca-from", "example.com/other")'
expect_failure "sidecar metrics on every address" "must be on loopback, or on the node's IP" sidecar/daemonset.yaml \
  't.replace("--metrics-bind-address=127.0.0.1:16910", "--metrics-bind-address=0.0.0.0:16910").replace("host: 127.0.0.1", "host: 0.0.0.0")'
expect_failure "sidecar metrics on the node's IP, nothing scrapes them" "need the PodMonitor" components/metrics/podmonitor-sidecar.yaml \
  't.replace("      app.kubernetes.io/name: apiserver-proxy\n", "      app.kubernetes.io/name: other\n")'
expect_failure "webhook scraped without verifying its certificate" "must verify the serving certificate" components/metrics/servicemonitor-webhook.yaml \
  't.replace("serverName: apiserver-proxy-pod-webhook.apiserver-proxy.svc", "insecureSkipVerify: true")'
expect_failure "a component nothing renders" "a component no kustomization uses" examples/with-metrics/kustomization.yaml \
  't.replace("  - ../../components/metrics\n", "")'

# No manifest at all.
rm -rf "$tmp/empty" && mkdir -p "$tmp/empty"
if "$root/scripts/validate-manifests.sh" "$tmp/empty" >/dev/null 2>&1; then
  echo "FAIL: empty deploy/ passed"; failed=$((failed + 1))
else
  echo "ok: empty deploy/ fails"; passed=$((passed + 1))
fi

echo "validate-manifests self-test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
