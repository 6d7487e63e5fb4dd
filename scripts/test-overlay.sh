#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# Configure once: docs/deploying.md's "Installing" steps, as written, on a copy of deploy/ in a
# temporary directory. Copies the example overlay, writes OTHER values into its settings.yaml
# (a port, an upstream, an FQDN, a registry with a port and a path, a tag, and as proxy IP in
# turn an IPv4 one, an IPv6 one, then both with the dual-stack component listed, either family
# first), renders it and checks each time that each value reached every place it must, that no
# example value is left anywhere in the rendering, that the Settings object is not in it, and
# that the result passes scripts/validate-manifests.sh (schemas and policy checks). A second
# proxy IP must change nothing but the sidecar's --ip-address and Envoy's second listener.
# Also the own-certificate path with DEPLOY_DIR pointing at the overlay. The work tree is not
# touched.
#
#   scripts/test-overlay.sh
# shellcheck source=scripts/test-prelude.sh
. "$(dirname "$0")/test-prelude.sh"

cp -r "$root/deploy" "$tmp/deploy"
ln -s "$root/scripts" "$tmp/scripts"
cd "$tmp"
# docs/deploying.md, "Installing", step 2:
cp -r deploy/overlays/example deploy/overlays/mycluster

# check NAME PROXY-IP [SINGLE]: writes the settings, renders, checks. SINGLE: the rendering of
# the same settings with PROXY-IP's first address alone.
check() {
  local name="$1" ip="$2" single="${3:-}"
  "$bin/python" - deploy/overlays/mycluster/settings.yaml "$ip" <<'PY'
import re, sys
path, ip = sys.argv[1], sys.argv[2]
text, at = open(path).read(), 0
# Edited as a user would, in place: comments and the header stay.
for key, value in (("proxyIP", ip), ("port", "6443"), ("host", "sni.other.test"), ("port", "8443"),
                   ("apiserverFQDN", "api.other.test"), ("registry", "registry.other.test:5000/team"),
                   ("tag", "9.8.7")):
    m = re.compile(rf"^(\s+{key}: ).*$", re.M).search(text, at)
    assert m, f"no {key}: line after offset {at} in {path}"
    text = text[: m.start()] + m.group(1) + value + text[m.end():]
    at = m.start() + len(m.group(1)) + len(value)
open(path, "w").write(text)
PY
  "$bin/kubectl" kustomize deploy/overlays/mycluster/ >"$tmp/$name.yaml" || fail "$name: kubectl kustomize failed"
  "$bin/python" - "$tmp/$name.yaml" "$ip" "$name" "$single" <<'PY' || fail "$name: see above"
import copy, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
ip, name, single = sys.argv[2], sys.argv[3], sys.argv[4]
ips = ip.split(",")
primary = ips[0]
errors = []
def want(what, got, expected):
    if got != expected:
        errors.append(f"{what}: {got!r}, want {expected!r}")
def one(docs, kind, obj_name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(obj_name)]
    if len(found) != 1:
        sys.exit(f"test-overlay: {name}: {len(found)} {kind} {obj_name}")
    return found[0]
def arg(c, flag):
    vals = [a.split("=", 1)[1] for a in c.get("args", []) if a.startswith(flag + "=")]
    return vals[0] if len(vals) == 1 else vals
def containers_of(ds):
    pod = ds["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["initContainers"] + pod["containers"]}

ds = one(docs, "DaemonSet", "apiserver-proxy")
containers = containers_of(ds)
for cname in ("setup", "sidecar"):
    c = containers[cname]
    want(f"{cname} --ip-address", arg(c, "--ip-address"), ip)
    want(f"{cname} --port", arg(c, "--port"), "6443")
    want(f"{cname} image", c["image"], "registry.other.test:5000/team/apiserver-proxy-sidecar:9.8.7")
# The probes check the primary IP only.
for probe in ("readinessProbe", "livenessProbe"):
    want(f"envoy {probe}", containers["envoy"][probe]["tcpSocket"], {"host": primary, "port": 6443})
want("pod annotation (rolls on upstream changes)",
     ds["spec"]["template"]["metadata"]["annotations"]["apiserver-proxy-upstream"], "sni.other.test:8443")
cm = one(docs, "ConfigMap", "apiserver-proxy-envoy")
envoy = yaml.safe_load(cm["data"]["envoy.yaml"])["static_resources"]
(listener,) = envoy["listeners"]
want("envoy listener", listener["address"]["socket_address"], {"address": primary, "port_value": "6443"})
(cluster,) = envoy["clusters"]
eps = [lb["endpoint"]["address"]["socket_address"] for e in cluster["load_assignment"]["endpoints"] for lb in e["lb_endpoints"]]
want("envoy upstream", eps, [{"address": "sni.other.test", "port_value": "8443"}])
# The second IP's listener (components/dual-stack): --config-yaml from the env, which Envoy
# merges into envoy.yaml's bootstrap.
envoy_c = containers["envoy"]
env = {v["name"]: v for v in envoy_c.get("env", [])}
if len(ips) == 2:
    want("envoy's last arguments", envoy_c["args"][-2:], ["--config-yaml", "$(APISERVER_PROXY_SECOND_LISTENER)"])
    want("envoy env", list(env), ["APISERVER_PROXY_SECOND_LISTENER"])
    second = yaml.safe_load(env["APISERVER_PROXY_SECOND_LISTENER"]["value"])
    want("envoy --config-yaml", list(second), ["static_resources"])
    want("envoy --config-yaml static_resources", list(second["static_resources"]), ["listeners"])
    (listener2,) = second["static_resources"]["listeners"]
    want("envoy second listener", listener2["address"]["socket_address"], {"address": ips[1], "port_value": "6443"})
    alike = lambda lst: {k: v for k, v in lst.items() if k not in ("name", "address")}
    want("envoy second listener (all but name and address, as envoy.yaml's)", alike(listener2), alike(listener))
else:
    want("envoy --config-yaml", [a for a in envoy_c["args"] if a == "--config-yaml"], [])
    want("envoy env", env, {})
dep = one(docs, "Deployment", "apiserver-proxy-pod-webhook")
(wc,) = dep["spec"]["template"]["spec"]["containers"]
want("webhook --apiserver-fqdn", arg(wc, "--apiserver-fqdn"), "api.other.test")
want("webhook image", wc["image"], "registry.other.test:5000/team/apiserver-proxy-pod-webhook:9.8.7")
want("Settings object in the output", [d for d in docs if d["kind"] == "Settings"], [])

# The second IP changes nothing else: without its changes, the rendering is that of the same
# settings with the primary IP alone.
if single:
    alone = [d for d in yaml.safe_load_all(open(single)) if d]
    back = copy.deepcopy(docs)
    c = containers_of(one(back, "DaemonSet", "apiserver-proxy"))
    for cname in ("setup", "sidecar"):
        c[cname]["args"] = [f"--ip-address={primary}" if a == f"--ip-address={ip}" else a for a in c[cname]["args"]]
    del c["envoy"]["args"][-2:], c["envoy"]["env"]
    if back != alone:
        errors.append(f"less the second IP's changes, the rendering differs from {single}")

# No example value left anywhere (Envoy's bootstrap and listener parsed: comments do not count).
def walk(node, where):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{where}[{i}]")
    else:
        yield where, str(node)
cm["data"]["envoy.yaml"] = yaml.safe_load(cm["data"]["envoy.yaml"])
for v in env.values():
    v["value"] = yaml.safe_load(v["value"])
for d in docs:
    for where, value in walk(d, f"{d['kind']}/{d['metadata']['name']}"):
        for example in ("198.18.0.2", "2001:2::2", "api.example.com", "localhost/", ":0.1.0",
                        "the second proxy IP", "the port"):
            if example in value:
                errors.append(f"{where}: the example's {example!r} is left: {value!r}")
for e in errors:
    print(f"test-overlay: {name}: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
  echo "test-overlay: ok: $name: every value reached every place, no example value left"
  "$root/scripts/validate-manifests.sh" deploy >"$tmp/validate.log" 2>&1 ||
    { cat "$tmp/validate.log"; fail "$name: validate-manifests fails on the overlay with those values"; }
  echo "test-overlay: ok: $name: validate-manifests passes"
}

# Single-stack: one proxy IP, of either family.
check ipv4 203.0.113.7
check ipv6 fd00:203:0:113::7
# Dual-stack (docs/deploying.md, "Installing", step 2): both proxy IPs, the primary first, and
# components/dual-stack listed.
sed -i 's#^  - \.\./\.\./components/settings$#&\n  - ../../components/dual-stack#' deploy/overlays/mycluster/kustomization.yaml
grep -qx '  - ../../components/dual-stack' deploy/overlays/mycluster/kustomization.yaml ||
  fail "could not list components/dual-stack in the overlay"
check dual-stack-ipv4-first 203.0.113.7,fd00:203:0:113::7 "$tmp/ipv4.yaml"
check dual-stack-ipv6-first fd00:203:0:113::7,203.0.113.7 "$tmp/ipv6.yaml"

# A certificate of one's own for the overlay (docs/deploying.md, step 3):
export XDG_RUNTIME_DIR="$tmp/run"
mkdir -m 0700 "$XDG_RUNTIME_DIR"
DEPLOY_DIR=deploy/overlays/mycluster scripts/webhook-cert.sh >/dev/null
"$bin/kubectl" kustomize "${XDG_RUNTIME_DIR:-/tmp}/apiserver-proxy/webhook-cert" >"$tmp/cert.yaml" ||
  fail "the kustomization scripts/webhook-cert.sh writes for the overlay does not render"
grep -q 'api.other.test' "$tmp/cert.yaml" || fail "the webhook-cert kustomization does not include the overlay"
grep -Eq 'caBundle: (\||[A-Za-z0-9])' "$tmp/cert.yaml" || fail "the webhook-cert kustomization has no caBundle"
echo "test-overlay: ok: DEPLOY_DIR=deploy/overlays/mycluster scripts/webhook-cert.sh wraps the overlay"
