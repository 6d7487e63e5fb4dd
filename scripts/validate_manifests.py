# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
"""Our own checks of the Kubernetes manifests under deploy/ (schema validation is left to
kubernetes-validate, run by scripts/validate-manifests.sh before this).

1. Every kustomization's file list: each entry exists, every YAML file under deploy/ is used by
   some kustomization (no forgotten file) and carries an SPDX header, and every component is used
   by some kustomization (so it is rendered, and validated).
2. Policy checks on the rendered output of every kustomization (`kubectl kustomize`): what we
   promise of the DaemonSet, the webhook and its MutatingWebhookConfiguration (hostNetwork,
   capabilities, no memory limit, selectors, ...), including the objects of CRDs
   (cert-manager), which have no schema to validate against.

Exits non-zero on any error, and when it finds no manifest at all.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

# REUSE-IgnoreStart
SPDX_LINES = (
    "# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors",
    "# SPDX-License-Identifier: Apache-2.0",
)
# REUSE-IgnoreEnd
OPT_OUT_LABEL = "apiserver-proxy.networking.gardener.cloud/inject"
OPT_OUT_VALUES = {"disable", "false", "False", "FALSE", "f", "F", "0"}
SIDECAR_CAPS = {"NET_ADMIN", "NET_RAW"}


class Report:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, msg: str) -> None:
        self.errors.append(msg)
        print(f"ERROR: {msg}", file=sys.stderr)

    def check(self, cond: bool, msg: str) -> bool:
        if not cond:
            self.error(msg)
        return cond


def load_docs(text: str, where: str, rep: Report) -> list[dict]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        rep.error(f"{where}: YAML error: {e}")
        return []
    for d in docs:
        if not isinstance(d, dict):
            rep.error(f"{where}: a document is not a mapping")
    return [d for d in docs if isinstance(d, dict)]


def obj_name(d: dict) -> str:
    md = d.get("metadata") or {}
    ns = md.get("namespace")
    return f"{d.get('kind')}/{(ns + '/') if ns else ''}{md.get('name')}"


# --- kustomization file lists ---------------------------------------------------------------


def kustomization_refs(kdir: Path, k: dict, rep: Report) -> tuple[list[Path], list[Path]]:
    """Returns (resource files, all referenced files) and checks every entry exists."""
    resource_files: list[Path] = []
    referenced: list[Path] = [kdir / "kustomization.yaml"]
    for key in ("resources", "components"):
        for entry in k.get(key) or []:
            p = (kdir / entry).resolve()
            if not rep.check(p.exists(), f"{kdir}/kustomization.yaml: {key}: {entry} does not exist"):
                continue
            if p.is_file():
                resource_files.append(p)
                referenced.append(p)
            else:
                rep.check(
                    (p / "kustomization.yaml").is_file(),
                    f"{kdir}/kustomization.yaml: {key}: {entry} has no kustomization.yaml",
                )
    for patch in k.get("patches") or []:
        if "path" in patch:
            p = (kdir / patch["path"]).resolve()
            if rep.check(p.is_file(), f"{kdir}/kustomization.yaml: patch {patch['path']} does not exist"):
                referenced.append(p)
    for key in ("configMapGenerator", "secretGenerator"):
        for gen in k.get(key) or []:
            for f in gen.get("files") or []:
                f = f.split("=", 1)[-1]
                p = (kdir / f).resolve()
                if rep.check(p.is_file(), f"{kdir}/kustomization.yaml: {key} file {f} does not exist"):
                    referenced.append(p)
                    if p.suffix in (".yaml", ".yml"):
                        load_docs(p.read_text(), str(p), rep)
    return resource_files, referenced


# --- policy checks ----------------------------------------------------------------------------


def find(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def flag(args: list[str], name: str) -> str | None:
    for a in args:
        if a == name:
            return "true"
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def check_daemonset(ds: dict, docs: list[dict], rep: Report, where: str) -> None:
    w = f"{where}: {obj_name(ds)}"
    pod = ds["spec"]["template"]["spec"]
    rep.check(pod.get("hostNetwork") is True, f"{w}: hostNetwork must be true")
    rep.check(pod.get("priorityClassName") == "system-node-critical", f"{w}: priorityClassName must be system-node-critical")
    rep.check(
        {"operator": "Exists"} in (pod.get("tolerations") or []),
        f"{w}: must tolerate every taint (a toleration with only operator: Exists)",
    )
    rep.check(
        (pod.get("securityContext") or {}).get("seccompProfile", {}).get("type") == "RuntimeDefault",
        f"{w}: pod seccompProfile must be RuntimeDefault",
    )
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    lock_vols = [n for n, v in volumes.items() if (v.get("hostPath") or {}).get("path") == "/run/xtables.lock"]
    rep.check(
        len(lock_vols) == 1 and volumes[lock_vols[0]]["hostPath"].get("type") == "FileOrCreate",
        f"{w}: needs the host's /run/xtables.lock as a hostPath volume of type FileOrCreate",
    )
    inits = pod.get("initContainers") or []
    conts = pod.get("containers") or []
    sidecars = [c for c in inits + conts if "apiserver-proxy-sidecar" in c.get("image", "")]
    rep.check(
        len([c for c in inits if c in sidecars]) == 1 and len([c for c in conts if c in sidecars]) == 1,
        f"{w}: the sidecar must run once as init container and once as container",
    )
    ips, ports = set(), set()
    for c in inits + conts:
        cw = f"{w}: container {c['name']}"
        sc = c.get("securityContext") or {}
        rep.check(sc.get("privileged") is not True, f"{cw}: must not be privileged")
        rep.check(sc.get("allowPrivilegeEscalation") is False, f"{cw}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        rep.check(caps.get("drop") == ["ALL"], f"{cw}: must drop ALL capabilities")
        limits = (c.get("resources") or {}).get("limits") or {}
        rep.check("memory" not in limits, f"{cw}: no memory limit on the DaemonSet (an OOM kill cuts the node off)")
        rep.check("memory" in ((c.get("resources") or {}).get("requests") or {}), f"{cw}: needs a memory request")
        if c in sidecars:
            args = c.get("args") or []
            rep.check(set(caps.get("add") or []) == SIDECAR_CAPS, f"{cw}: must add exactly {sorted(SIDECAR_CAPS)}")
            ip = flag(args, "--ip-address")
            rep.check(ip is not None, f"{cw}: needs --ip-address")
            ips.add(ip)
            rep.check(flag(args, "--setup-iptables") in ("true", "True"), f"{cw}: needs --setup-iptables")
            proxy_port = flag(args, "--port") or "443"
            rep.check(proxy_port.isdigit() and 0 < int(proxy_port) < 65536, f"{cw}: --port must be a port number, is {proxy_port}")
            ports.add(int(proxy_port) if proxy_port.isdigit() else proxy_port)
            rep.check(flag(args, "--interface") in ("apiserver-proxy", "lo"), f"{cw}: --interface must be apiserver-proxy or lo")
            daemon = flag(args, "--daemon")
            if c in inits:
                rep.check(daemon == "false", f"{cw}: the init container needs --daemon=false")
            else:
                rep.check(daemon in (None, "true"), f"{cw}: the container must run as a daemon")
                metrics = flag(args, "--metrics-bind-address")
                if metrics:
                    host, port = metrics.rsplit(":", 1)
                    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                        hg = (c.get(probe) or {}).get("httpGet") or {}
                        rep.check(
                            hg.get("path") == path and str(hg.get("port")) == port and hg.get("host", "") in (host, ""),
                            f"{cw}: the {probe} must be {path} on --metrics-bind-address {metrics}",
                        )
                    check_sidecar_metrics(c, host, int(port), docs, ds, rep, cw)
            mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts") or []}
            rep.check(
                bool(lock_vols) and mounts.get(lock_vols[0]) == "/run/xtables.lock",
                f"{cw}: must mount the host's xtables lock at /run/xtables.lock",
            )
            if sc.get("readOnlyRootFilesystem"):
                run = [n for n, p in mounts.items() if p == "/run"]
                rep.check(
                    len(run) == 1 and "emptyDir" in volumes.get(run[0], {}),
                    f"{cw}: with a read-only root filesystem, /run must be an emptyDir (iptables' private lock file)",
                )
    rep.check(len(ips) == 1, f"{w}: the init container and the container must use the same --ip-address ({ips})")
    rep.check(len(ports) == 1, f"{w}: the init container and the container must use the same --port ({ports})")
    addrs = proxy_addresses(next(iter(ips), None), rep, w)
    ip = addrs[0].strip() if addrs else None
    port = next(iter(ports), None)

    envoys = [c for c in conts if "envoy" in c.get("image", "")]
    if rep.check(len(envoys) == 1, f"{w}: needs one Envoy container"):
        e = envoys[0]
        sc = e.get("securityContext") or {}
        rep.check(set((sc.get("capabilities") or {}).get("add") or []) <= {"NET_BIND_SERVICE"}, f"{w}: Envoy may add only NET_BIND_SERVICE")
        # On the primary address (the first): one address answering shows that Envoy runs.
        for probe in ("readinessProbe", "livenessProbe"):
            tcp = (e.get(probe) or {}).get("tcpSocket") or {}
            rep.check(tcp.get("host") == ip and tcp.get("port") == port, f"{w}: Envoy {probe} must check {ip}:{port}")
        cm_names = [
            volumes[m["name"]]["configMap"]["name"]
            for m in e.get("volumeMounts") or []
            if "configMap" in volumes.get(m["name"], {})
        ]
        cms = [d for d in find(docs, "ConfigMap") if d["metadata"]["name"] in cm_names]
        if rep.check(len(cms) == 1, f"{w}: Envoy's ConfigMap {cm_names} is not in the output"):
            check_envoy(cms[0], e, addrs, port, rep, where)


def proxy_addresses(value: str | None, rep: Report, w: str) -> list[str]:
    """The sidecar's --ip-address as a list: one proxy IP, or two of different families
    (dual-stack, the primary first). Each as written, spaces and all, for comparison with Envoy's."""
    if value is None:
        return []
    addrs = value.split(",")
    try:
        families = [ipaddress.ip_address(a.strip()).version for a in addrs]
    except ValueError:
        rep.error(f"{w}: --ip-address={value} is not one IP address or a comma-separated pair")
        return addrs
    rep.check(
        len(addrs) <= 2 and len(set(families)) == len(addrs),
        f"{w}: --ip-address={value}: one proxy IP, or two of different families (dual-stack), not {len(addrs)} of families {families}",
    )
    return addrs


LOOPBACK = {"127.0.0.1", "[::1]", "localhost"}


def check_sidecar_metrics(c: dict, host: str, port: int, docs: list[dict], ds: dict, rep: Report, cw: str) -> None:
    """Loopback by default; the node's IP (downward API) only together with a PodMonitor."""
    if host in LOOPBACK:
        return
    env = {e["name"]: e for e in c.get("env") or []}
    var = host[2:-1] if host.startswith("$(") and host.endswith(")") else None
    field = (((env.get(var) or {}).get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
    if not rep.check(
        field == "status.hostIP",
        f"{cw}: --metrics-bind-address must be on loopback, or on the node's IP from the downward API ($(VAR) with VAR from status.hostIP); is {host}",
    ):
        return
    labels = ds["spec"]["template"]["metadata"]["labels"]
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
    mons = [
        d for d in find(docs, "PodMonitor")
        if d["metadata"].get("namespace") == ds["metadata"].get("namespace") and pod_matches(d["spec"]["selector"], labels)
    ]
    if rep.check(len(mons) == 1, f"{cw}: metrics on the node's IP need the PodMonitor that scrapes them (components/metrics)"):
        eps = mons[0]["spec"].get("podMetricsEndpoints") or []
        rep.check(
            any(ports.get(e.get("port")) == port and e.get("path", "/metrics") == "/metrics" for e in eps),
            f"{cw}: {obj_name(mons[0])} must scrape /metrics on a named containerPort {port}",
        )


def envoy_overrides(e: dict, rep: Report, w: str) -> list[dict]:
    """The bootstraps Envoy merges over its --config-path file: each --config-yaml argument, with
    $(VAR) expanded from the container's env as Kubernetes does (components/dual-stack)."""
    env = {v["name"]: v for v in e.get("env") or []}

    def expand(m: re.Match) -> str:
        var = env.get(m.group(1))
        if var is None:
            return m.group(0)
        if "value" not in var:
            rep.error(f"{w}: Envoy's env {m.group(1)} is not a literal value, which these checks cannot follow")
            return ""
        return var["value"]

    args = e.get("args") or []
    out = []
    for flag_at in [i for i, a in enumerate(args) if a == "--config-yaml"]:
        if not rep.check(flag_at + 1 < len(args), f"{w}: Envoy's --config-yaml has no value"):
            continue
        text = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", expand, args[flag_at + 1])
        try:
            out.append(yaml.safe_load(text) or {})
        except yaml.YAMLError as err:
            rep.error(f"{w}: Envoy's --config-yaml is not YAML: {err}")
    return out


def check_envoy(cm: dict, e: dict, addrs: list[str], port: int | None, rep: Report, where: str) -> None:
    w = f"{where}: {obj_name(cm)}"
    data = cm.get("data") or {}
    if not rep.check("envoy.yaml" in data, f"{w}: needs envoy.yaml"):
        return
    quotes = data["envoy.yaml"].count('"')
    rep.check(
        quotes == 8,
        f"{w}: envoy.yaml must have exactly four double-quoted strings (listener address and port, upstream host "
        f"and port, in that order; components/settings splits it at double quotes), has {quotes} double quotes",
    )
    cfg = yaml.safe_load(data["envoy.yaml"])
    sr = cfg.get("static_resources") or {}
    clusters = {c["name"]: c for c in sr.get("clusters") or []}
    listeners = sr.get("listeners") or []
    rep.check(len(listeners) == 1, f"{w}: envoy.yaml needs exactly one listener")
    # Envoy merges each --config-yaml into envoy.yaml's bootstrap: repeated fields are appended.
    for extra in envoy_overrides(e, rep, f"{where}: Envoy"):
        esr = extra.get("static_resources") or {}
        listeners = listeners + (esr.get("listeners") or [])
        clusters.update({c["name"]: c for c in esr.get("clusters") or []})
    # One listener per proxy IP, in the sidecar's order: envoy.yaml's on the primary.
    rep.check(
        len(listeners) == len(addrs),
        f"{w}: Envoy needs one listener per --ip-address ({len(addrs)}: {','.join(addrs)}), has {len(listeners)}",
    )
    for lst, ip in zip(listeners, addrs):
        sa = lst["address"]["socket_address"]
        rep.check(
            sa.get("address") == ip.strip() and str(sa.get("port_value")) == str(port),
            f"{w}: the listener {lst.get('name')} must be on {ip}:{port}, is {sa}",
        )
        filters = [f for fc in lst.get("filter_chains") or [] for f in fc.get("filters") or []]
        tcp = [f for f in filters if f.get("name") == "envoy.filters.network.tcp_proxy"]
        if rep.check(len(tcp) == 1 and len(filters) == 1, f"{w}: the listener must only pass TCP through (tcp_proxy)"):
            cl = tcp[0]["typed_config"].get("cluster")
            if rep.check(cl in clusters, f"{w}: tcp_proxy cluster {cl} is not defined"):
                eps = [
                    lb["endpoint"]["address"]["socket_address"]
                    for e in clusters[cl]["load_assignment"]["endpoints"]
                    for lb in e["lb_endpoints"]
                ]
                rep.check(bool(eps) and all(e.get("address") and e.get("port_value") for e in eps), f"{w}: cluster {cl} needs an upstream")


def pod_matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def check_webhook(docs: list[dict], rep: Report, where: str) -> None:
    deps = [d for d in find(docs, "Deployment") if "apiserver-proxy-pod-webhook" in str(d)]
    mwcs = find(docs, "MutatingWebhookConfiguration")
    if not (rep.check(len(deps) == 1, f"{where}: needs one webhook Deployment") and rep.check(len(mwcs) == 1, f"{where}: needs one MutatingWebhookConfiguration")):
        return
    dep, mwc = deps[0], mwcs[0]
    ns = dep["metadata"]["namespace"]
    w = f"{where}: {obj_name(dep)}"
    rep.check(dep["spec"].get("replicas") == 2, f"{w}: needs 2 replicas")
    pod = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    psc = pod.get("securityContext") or {}
    rep.check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532, f"{w}: pod must run as non-root 65532")
    rep.check((psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{w}: pod seccompProfile must be RuntimeDefault")
    (c,) = pod["containers"]
    sc = c.get("securityContext") or {}
    rep.check(sc.get("readOnlyRootFilesystem") is True, f"{w}: readOnlyRootFilesystem must be true")
    rep.check(sc.get("allowPrivilegeEscalation") is False, f"{w}: allowPrivilegeEscalation must be false")
    rep.check((sc.get("capabilities") or {}).get("drop") == ["ALL"] and not (sc.get("capabilities") or {}).get("add"), f"{w}: must drop ALL capabilities and add none")
    res = c.get("resources") or {}
    for kind in ("requests", "limits"):
        rep.check({"cpu", "memory"} <= set((res.get(kind) or {})), f"{w}: needs cpu and memory {kind}")
    args = c.get("args") or []
    rep.check(bool(flag(args, "--apiserver-fqdn")), f"{w}: needs --apiserver-fqdn")
    port = int(flag(args, "--port") or 9443)
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
    rep.check(port in ports.values(), f"{w}: containerPort must be the webhook's --port {port}")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        hg = (c.get(probe) or {}).get("httpGet") or {}
        pport = ports.get(hg.get("port"), hg.get("port"))
        rep.check(hg.get("path") == path and hg.get("scheme") == "HTTPS" and pport == port, f"{w}: {probe} must be HTTPS {path} on {port}")
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    cert_dir = flag(args, "--cert-dir")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
    secret_name = (vols.get(mounts.get(cert_dir), {}).get("secret") or {}).get("secretName")
    rep.check(secret_name is not None, f"{w}: --cert-dir {cert_dir} must be a mounted Secret")
    rep.check(
        not any(m.get("subPath") for m in c.get("volumeMounts") or []),
        f"{w}: no subPath mounts (they never see Secret updates, which breaks certificate hot-reload)",
    )
    secrets = [d for d in find(docs, "Secret") if d["metadata"]["name"] == secret_name]
    certs = [d for d in find(docs, "Certificate") if d["spec"].get("secretName") == secret_name]
    rep.check(len(secrets) + len(certs) == 1, f"{w}: Secret {secret_name} must come from exactly one of secret.yaml or a cert-manager Certificate")

    pdbs = [d for d in find(docs, "PodDisruptionBudget") if pod_matches(d["spec"]["selector"], labels)]
    rep.check(len(pdbs) == 1, f"{where}: needs a PodDisruptionBudget for the webhook pods")
    svcs = [d for d in find(docs, "Service") if pod_matches({"matchLabels": d["spec"].get("selector") or {}}, labels) and d["spec"].get("selector")]
    if not rep.check(len(svcs) == 1, f"{where}: needs a Service for the webhook pods"):
        return
    svc = svcs[0]
    sp = svc["spec"]["ports"][0]
    tp = ports.get(sp.get("targetPort"), sp.get("targetPort"))
    rep.check(sp["port"] == 443 and tp == port, f"{where}: {obj_name(svc)}: must map 443 to {port}")

    w = f"{where}: {obj_name(mwc)}"
    (wh,) = mwc["webhooks"]
    ref = wh["clientConfig"].get("service") or {}
    rep.check(ref.get("name") == svc["metadata"]["name"] and ref.get("namespace") == svc["metadata"]["namespace"] and ref.get("port", 443) == 443, f"{w}: clientConfig.service must be {obj_name(svc)}:443")
    rep.check(ref.get("path") == "/webhook/pod-apiserver-env", f"{w}: path must be /webhook/pod-apiserver-env")
    rep.check(wh.get("rules") == [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"], "scope": "Namespaced"}], f"{w}: rules must be pods, CREATE only")
    for key, want in (("sideEffects", "None"), ("failurePolicy", "Ignore"), ("timeoutSeconds", 2), ("reinvocationPolicy", "IfNeeded"), ("admissionReviewVersions", ["v1", "v1beta1"])):
        rep.check(wh.get(key) == want, f"{w}: {key} must be {want}, is {wh.get(key)}")
    for sel_name in ("namespaceSelector", "objectSelector"):
        exprs = (wh.get(sel_name) or {}).get("matchExpressions") or []
        rep.check(
            any(e["key"] == OPT_OUT_LABEL and e["operator"] == "NotIn" and set(e["values"]) == OPT_OUT_VALUES for e in exprs),
            f"{w}: {sel_name} must skip {OPT_OUT_LABEL} in {sorted(OPT_OUT_VALUES)}",
        )
        rep.check(not (wh.get(sel_name) or {}).get("matchLabels"), f"{w}: {sel_name}: no matchLabels")
    exprs = (wh.get("namespaceSelector") or {}).get("matchExpressions") or []
    rep.check(
        any(e["key"] == "kubernetes.io/metadata.name" and e["operator"] == "NotIn" and ns in e["values"] for e in exprs),
        f"{w}: namespaceSelector must never select the webhook's own namespace {ns}",
    )
    ann = (mwc["metadata"].get("annotations") or {}).get("cert-manager.io/inject-ca-from")
    if certs:
        cert = certs[0]
        rep.check(ann == f"{cert['metadata']['namespace']}/{cert['metadata']['name']}", f"{w}: needs cert-manager.io/inject-ca-from for {obj_name(cert)}")
        rep.check("caBundle" not in wh["clientConfig"], f"{w}: with cert-manager, caBundle is left to its CA injector")
        rep.check(f"{svc['metadata']['name']}.{ns}.svc" in cert["spec"].get("dnsNames", []), f"{where}: {obj_name(cert)}: dnsNames must include the Service's name")
        issuers = [d for d in docs if d.get("kind") == cert["spec"]["issuerRef"].get("kind", "Issuer") and d["metadata"]["name"] == cert["spec"]["issuerRef"]["name"]]
        rep.check(len(issuers) == 1, f"{where}: {obj_name(cert)}: its issuer is not in the output")
    else:
        rep.check(ann is None, f"{w}: inject-ca-from without a Certificate")
        ca = "".join(((secrets[0].get("data") or {}).get("ca.crt") or "").split()) if secrets else ""
        bundle = "".join(str(wh["clientConfig"].get("caBundle") or "").split())
        if ca:  # a Secret of one's own (components/own-certificate): caBundle is its CA
            rep.check(bundle == ca, f"{w}: caBundle must be the ca.crt of Secret {secret_name}")

    for mon in find(docs, "ServiceMonitor"):
        mw = f"{where}: {obj_name(mon)}"
        svc_labels = svc["metadata"].get("labels") or {}
        rep.check(mon["metadata"].get("namespace") == ns and pod_matches(mon["spec"]["selector"], svc_labels), f"{mw}: must select {obj_name(svc)}")
        (ep,) = mon["spec"]["endpoints"]
        tls = ep.get("tlsConfig") or {}
        rep.check(ep.get("port") == sp.get("name") and ep.get("scheme") == "https" and ep.get("path") == "/metrics", f"{mw}: must scrape https /metrics on the Service's port {sp.get('name')}")
        rep.check(
            tls.get("serverName") == f"{svc['metadata']['name']}.{ns}.svc"
            and (tls.get("ca") or {}).get("secret") == {"name": secret_name, "key": "ca.crt"}
            and not tls.get("insecureSkipVerify"),
            f"{mw}: must verify the serving certificate: serverName {svc['metadata']['name']}.{ns}.svc, ca from Secret {secret_name} key ca.crt",
        )


# --- main -------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("deploy_dir", type=Path)
    ap.add_argument("--kubectl", default="kubectl")
    ap.add_argument(
        "--also-render",
        type=Path,
        action="append",
        default=[],
        help="a kustomization outside deploy_dir to check too (what scripts/webhook-cert.sh writes)",
    )
    opts = ap.parse_args()
    rep = Report()
    root = opts.deploy_dir.resolve()

    kdirs = sorted(p.parent for p in root.rglob("kustomization.yaml"))
    if not kdirs:
        rep.error(f"no kustomization.yaml under {root}")
    referenced: set[Path] = set()
    renderable: list[Path] = []
    resource_files: set[Path] = set()
    components: set[Path] = set()
    used_components: set[Path] = set()
    for kdir in kdirs:
        k = yaml.safe_load((kdir / "kustomization.yaml").read_text()) or {}
        files, refs = kustomization_refs(kdir, k, rep)
        resource_files.update(files)
        referenced.update(refs)
        if k.get("kind", "Kustomization") == "Kustomization":
            renderable.append(kdir)
        else:
            components.add(kdir)
        used_components.update((kdir / c).resolve() for c in k.get("components") or [])
    for kdir in opts.also_render:
        kdir = kdir.resolve()
        k = yaml.safe_load((kdir / "kustomization.yaml").read_text()) or {}
        renderable.append(kdir)
        used_components.update((kdir / c).resolve() for c in k.get("components") or [])
    for c in sorted(components - used_components):
        rep.error(f"{c.relative_to(root.parent)}: a component no kustomization uses (add an example under deploy/examples/), so nothing renders or validates it")

    all_yaml = sorted(p.resolve() for p in root.rglob("*") if p.suffix in (".yaml", ".yml"))
    for p in all_yaml:
        rel = p.relative_to(root.parent)
        head = p.read_text().splitlines()[:5]
        rep.check(all(line in head for line in SPDX_LINES), f"{rel}: needs the SPDX header ({SPDX_LINES[0]} / {SPDX_LINES[1]})")
        rep.check(p in referenced, f"{rel}: not used by any kustomization (add it or remove it)")

    n_rendered = 0
    for kdir in renderable:
        rel = kdir.relative_to(root.parent) if kdir.is_relative_to(root.parent) else kdir
        proc = subprocess.run([opts.kubectl, "kustomize", str(kdir)], capture_output=True, text=True)
        if proc.returncode != 0:
            rep.error(f"kubectl kustomize {rel} failed: {proc.stderr.strip()}")
            continue
        docs = load_docs(proc.stdout, f"kustomize {rel}", rep)
        rep.check(bool(docs), f"kustomize {rel}: rendered no manifest")
        n_rendered += len(docs)
        # Policy checks on every rendering that contains the parts (deploy/ and its variants).
        for ds in find(docs, "DaemonSet"):
            check_daemonset(ds, docs, rep, f"kustomize {rel}")
        if find(docs, "MutatingWebhookConfiguration") or find(docs, "Deployment"):
            check_webhook(docs, rep, f"kustomize {rel}")

    top = root / "kustomization.yaml"
    if top.is_file():
        proc = subprocess.run([opts.kubectl, "kustomize", str(root)], capture_output=True, text=True)
        kinds = {d.get("kind") for d in yaml.safe_load_all(proc.stdout) if d} if proc.returncode == 0 else set()
        for kind in ("DaemonSet", "ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "Secret", "MutatingWebhookConfiguration"):
            rep.check(kind in kinds, f"kustomize {root.name}: the top-level kustomization lacks a {kind}")
    else:
        rep.error(f"no kustomization.yaml at {root}")

    if n_rendered == 0:
        rep.error("found no manifest to validate")
    print(
        f"validate-manifests: policy checks: {len(kdirs)} kustomizations, {len(all_yaml)} YAML files, "
        f"{n_rendered} objects rendered by {len(renderable)} kustomize builds, {len(rep.errors)} errors"
    )
    return 1 if rep.errors else 0


if __name__ == "__main__":
    sys.exit(main())
