#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# Every command the documentation shows is one that CI runs. Reads the fenced code blocks of
# README.md, CONTRIBUTING.md and docs/*.md: every line of a `sh`, `bash` or `shell` block
# (continuation lines joined, comments dropped) and every `$ ` line of any other block is a
# command. Each must be in COVERED below, with the file that runs it and a string that file must
# contain (so the mapping cannot go stale unnoticed). Fails on a documented command that is not covered, on a mapping
# whose file no longer contains its string, and on a mapping no document uses any more.
# Commands shown inline in prose (`like this`) are not checked.
#
#   scripts/check-docs.sh
set -euo pipefail
cd "$(dirname "$0")/.."

python3 - README.md CONTRIBUTING.md docs/*.md <<'PY'
import re, sys
from pathlib import Path

# (command as documented, file that runs it, a string that file contains, how it is run)
COVERED = [
    ("make run", "scripts/cross-check.sh", "make -s --no-print-directory print-run-args",
     "make cross-check (CI) runs the webhook with make run's arguments (make print-run-args), "
     "sends it README's request and stops it with SIGINT"),
    ("make test", ".ci/run", "\nmake test\n", ".ci/run runs it"),
    ("make lint", ".ci/run", "\ncargo clippy --workspace --all-targets --locked -- -D warnings\n",
     ".ci/run runs the same clippy command as make lint"),
    ("cargo fmt --all", ".ci/run", "\ncargo fmt --all -- --check\n",
     ".ci/run checks that it changes nothing"),
    ("make reuse", ".ci/run", "\nmake reuse\n", ".ci/run runs it"),
    ("curl -k -XPOST --silent -H \"Content-Type: application/json\" -d \"@testdata/admission.json\" "
     "-H \"Accept: application/json\" https://localhost:9443/webhook/pod-apiserver-env "
     "| jq -r '.response.patch' | base64 -d | jq -r '.'",
     "scripts/cross-check.sh", 'readme-try-it.py" "$root/README.md"',
     "make cross-check (CI) runs README's \"Try it\" block as written and compares the answer "
     "with README's output"),
    ("cargo test -p apiserver-proxy-sidecar --test netns -- --include-ignored", "Makefile",
     "$(CARGO) test --workspace --locked -- --include-ignored", "part of make test"),
    ("apiserver-proxy-pod-webhook --help", "crates/pod-webhook/tests/binary.rs", 'run(&["--help"])',
     "tests/binary.rs compares the output with docs/webhook.md (make test)"),
    ('kubectl apply -k "${XDG_RUNTIME_DIR:-/tmp}/apiserver-proxy/webhook-cert"',
     "scripts/test-webhook-cert.sh", 'kustomize "${XDG_RUNTIME_DIR:-/tmp}/apiserver-proxy/webhook-cert"',
     "no cluster in CI: make validate-manifests renders the same kustomization and validates it"),
    ("cp -r deploy/overlays/example deploy/overlays/mycluster", "scripts/test-overlay.sh",
     "\ncp -r deploy/overlays/example deploy/overlays/mycluster\n",
     "make validate-manifests (CI) runs it on a copy of deploy/, then edits the copy's settings.yaml"),
    ("make validate-manifests", ".ci/run", "\nmake validate-manifests\n", ".ci/run runs it"),
    ("DEPLOY_DIR=deploy/overlays/mycluster scripts/webhook-cert.sh", "scripts/test-overlay.sh",
     "\nDEPLOY_DIR=deploy/overlays/mycluster scripts/webhook-cert.sh ",
     "make validate-manifests (CI) runs it on that copy and renders what it writes"),
    ("kubectl apply -k deploy/overlays/mycluster/", "scripts/test-overlay.sh",
     'kubectl" kustomize deploy/overlays/mycluster/',
     "no cluster in CI: make validate-manifests renders that overlay with other values, checks "
     "each value in every place and validates it"),
    ("kubectl delete -k deploy/overlays/mycluster/", "scripts/test-overlay.sh",
     'kubectl" kustomize deploy/overlays/mycluster/',
     "no cluster in CI: it deletes what apply -k creates, the rendering make validate-manifests "
     "checks"),
    ("make oci-images", ".ci/run", "\nmake oci-images STANDIN_BASES=1\n",
     ".ci/run runs it, on stand-ins for the distroless bases (no registry in CI)"),
    ("skopeo copy --all oci-archive:target/oci/apiserver-proxy-sidecar-0.1.0.oci.tar:0.1.0 "
     "docker://registry.example.com/apiserver-proxy/apiserver-proxy-sidecar:0.1.0",
     "scripts/test-images.sh", 'skopeo copy -q --all "oci-archive:$archive:$version"',
     "no registry in CI: make oci-images copies each archive, all platforms, to a local OCI layout"),
    ("skopeo copy --all oci-archive:target/oci/apiserver-proxy-pod-webhook-0.1.0.oci.tar:0.1.0 "
     "docker://registry.example.com/apiserver-proxy/apiserver-proxy-pod-webhook:0.1.0",
     "scripts/test-images.sh", 'skopeo copy -q --all "oci-archive:$archive:$version"',
     "no registry in CI: make oci-images copies each archive, all platforms, to a local OCI layout"),
]
# docs/sidecar.md's "Try it": scripts/test-sidecar-example.sh runs its block as written.
COVERED += [
    (cmd, "scripts/test-sidecar-example.sh", 'split("\\n## Try it\\n", 1)',
     "scripts/test-sidecar-example.sh (CI) runs docs/sidecar.md's \"Try it\" block as written and checks its output")
    for cmd in (
        "cargo build --locked -p apiserver-proxy-sidecar",
        "ip netns add sidecar-try",
        "ip netns exec sidecar-try target/debug/apiserver-proxy-sidecar --ip-address=198.18.0.2 --setup-iptables --daemon=false",
        "ip netns exec sidecar-try ip addr show dev lo",
        "ip netns exec sidecar-try iptables-save",
        "ip netns exec sidecar-try target/debug/apiserver-proxy-sidecar --ip-address=198.18.0.2 --setup-iptables --daemon=false --cleanup",
        "ip netns delete sidecar-try",
    )
]
covered = {cmd: (path, needle, how) for cmd, path, needle, how in COVERED}

fence = re.compile(r"^(\s*)```(\w*)\s*$")
errors, used = [], set()
for doc in sys.argv[1:]:
    lines = Path(doc).read_text().splitlines()
    i = 0
    while i < len(lines):
        m = fence.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.group(1), m.group(2)
        block, start = [], i + 1
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            block.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].strip())
            i += 1
        i += 1
        commands = []
        if lang in ("sh", "bash", "shell"):
            joined = ""
            for text in block:
                text = re.sub(r"\s+#.*$", "", text).rstrip() if not text.lstrip().startswith("#") else ""
                if not text and not joined:
                    continue
                if text.endswith("\\"):
                    joined += text[:-1].strip() + " "
                    continue
                commands.append((joined + text.strip()).strip())
                joined = ""
        else:
            commands = [text[2:].strip() for text in block if text.startswith("$ ")]
        for cmd in commands:
            cmd = re.sub(r"\s+", " ", cmd)
            if cmd in covered:
                used.add(cmd)
            else:
                errors.append(f"{doc}:{start}: `{cmd}` is run by nothing in CI: run it in a check, or add it to COVERED in scripts/check-docs.sh with what runs it")

for cmd, (path, needle, how) in covered.items():
    if not Path(path).is_file() or needle not in Path(path).read_text():
        errors.append(f"COVERED says {path} runs `{cmd}`, but it does not contain {needle!r}")
    if cmd not in used:
        errors.append(f"COVERED lists `{cmd}`, which no document shows any more: remove it")

for cmd in sorted(used):
    print(f"check-docs: ok: `{cmd}`: {covered[cmd][2]}")
for error in errors:
    print(f"check-docs: FAIL: {error}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
