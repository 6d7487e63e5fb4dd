# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
"""Checks that Dockerfile.sidecar and Dockerfile.webhook do what `make image-builds` checks.

No Docker engine runs in CI, so this ties the Dockerfiles to the no-Docker path instead:
- each build stage runs scripts/image-build.sh for its component into /image, with VERSION and
  BuildKit's TARGETARCH (which image-build.sh checks against the binary, so a multi-platform
  build cannot package the wrong architecture), and a build cache per architecture;
- the sidecar's build stage installs the Debian packages whose tools the image carries
  (iptables, iproute2), and its layout has them (iptables of both backends, ip);
- a prebuilt stage copies a layout made beforehand (scripts/build-images.sh), chosen with
  ARG FILES, and nothing after the build stage runs a command;
- the final stage copies from the file layout image-build.sh made (the paths must exist in
  $CARGO_TARGET_DIR/image/<component>, so run `make image-builds` first), on a distroless base,
  as the user the manifests in deploy/ expect (sidecar root, webhook 65532), with the binary as
  entrypoint;
- .dockerignore keeps what the build needs in the context and leaves build output and .git out.
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPECT = {
    "sidecar": {
        "binary": "apiserver-proxy-sidecar",
        "base": "gcr.io/distroless/static-debian12",
        "user": "0:0",
        "packages": ["iptables", "iproute2"],
        "files": ["usr/sbin/xtables-nft-multi", "usr/sbin/xtables-legacy-multi", "usr/sbin/ip", "usr/sbin/iptables-legacy"],
    },
    "webhook": {
        "binary": "apiserver-proxy-pod-webhook",
        "base": "gcr.io/distroless/cc-debian12",
        "user": "65532:65532",
        "packages": [],
        "files": [],
    },
}
errors: list[str] = []


def check(cond: bool, msg: str) -> None:
    if not cond:
        errors.append(msg)
        print(f"ERROR: {msg}", file=sys.stderr)


def instructions(text: str) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), " ".join(rest.split())))
    return out


def main() -> int:
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    for component, want in EXPECT.items():
        df = ROOT / f"Dockerfile.{component}"
        ins = instructions(df.read_text())
        args = {r.split("=", 1)[0]: r.split("=", 1)[1] if "=" in r else "" for w, r in ins if w == "ARG"}
        froms = [i for i, (w, _) in enumerate(ins) if w == "FROM"]
        stages = [ins[i][1] for i in froms]
        check(
            len(froms) == 4
            and stages[0].endswith(" AS build")
            and stages[1] == "scratch AS prebuilt"
            and stages[2] == "${FILES} AS files",
            f"{df.name}: expected the stages build, prebuilt (FROM scratch), files (FROM ${{FILES}}) and the final one; has {stages}",
        )
        check(args.get("FILES") == "build", f"{df.name}: ARG FILES must default to build")
        build, final = ins[froms[0] : froms[1]], ins[froms[-1] :]
        prebuilt = ins[froms[1] : froms[2]]
        check(
            ("COPY", f"{component}-linux-${{TARGETARCH}}/ /image/") in prebuilt and ("ARG", "TARGETARCH") in prebuilt,
            f"{df.name}: the prebuilt stage must COPY {component}-linux-${{TARGETARCH}}/ /image/ (what scripts/build-images.sh lays out)",
        )
        check(
            not any(w == "RUN" for w, _ in ins[froms[1] :]),
            f"{df.name}: no RUN step after the build stage (the prebuilt path must run nothing, so no emulation is needed)",
        )
        runs = [r for w, r in build if w == "RUN" and "image-build.sh" in r]
        check(
            len(runs) == 1
            and re.search(rf'TARGETARCH="\$\{{TARGETARCH\}}" VERSION="\$\{{VERSION\}}" \./scripts/image-build\.sh {component} --out /image$', runs[0]) is not None,
            f"{df.name}: the build stage must run TARGETARCH=\"${{TARGETARCH}}\" VERSION=\"${{VERSION}}\" ./scripts/image-build.sh {component} --out /image",
        )
        check(
            len(runs) == 1 and "target=/src/target,id=target-${TARGETARCH}" in runs[0],
            f"{df.name}: the build stage's target/ cache must be per architecture (id=target-${{TARGETARCH}})",
        )
        check(("ARG", "VERSION=") in build, f"{df.name}: the build stage must declare ARG VERSION")
        check(("ARG", "TARGETARCH") in build, f"{df.name}: the build stage must declare ARG TARGETARCH")
        installs = " ".join(r for w, r in build if w == "RUN" and "apt-get install" in r).split()
        for pkg in want["packages"]:
            check(pkg in installs, f"{df.name}: the build stage must apt-get install {pkg}")
        base = final[0][1]
        base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), base)
        check(base.startswith(want["base"] + ":"), f"{df.name}: final base must be {want['base']}, is {base}")
        check(("USER", want["user"]) in final, f"{df.name}: final stage must run as USER {want['user']}")
        entry = [r for w, r in final if w == "ENTRYPOINT"]
        check(entry == [f'["/usr/local/bin/{want["binary"]}"]'], f"{df.name}: ENTRYPOINT must be /usr/local/bin/{want['binary']}")
        layout = target / "image" / component
        check(layout.is_dir(), f"{layout} missing: run `make image-builds` first")
        for w, r in final:
            if w == "COPY":
                m = re.fullmatch(r"--from=files (/image/\S*) (\S+)", r)
                if not m:
                    check(False, f"{df.name}: unexpected COPY {r}")
                    continue
                src = layout / m.group(1).removeprefix("/image/")
                check(src.exists(), f"{df.name}: COPY source {m.group(1)} is not in the layout image-build.sh makes ({src})")
        check((layout / "usr/local/bin" / want["binary"]).is_file(), f"{component}: the layout has no /usr/local/bin/{want['binary']}")
        for f in want["files"]:
            check((layout / f).exists(), f"{component}: the layout has no /{f}")

    patterns = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(fnmatch.fnmatch(pre, pat.rstrip("/")) for pat in patterns for pre in prefixes)

    for needed in ("Cargo.toml", "Cargo.lock", "crates/sidecar/src/main.rs", "crates/pod-webhook/src/main.rs", "scripts/image-build.sh"):
        check(not ignored(needed), f".dockerignore excludes {needed}, which the build needs")
    for unwanted in (".git/HEAD", "target/release"):
        check(ignored(unwanted), f".dockerignore must exclude {unwanted.split('/')[0]}")

    print(f"check-dockerfiles: 2 Dockerfiles, {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
