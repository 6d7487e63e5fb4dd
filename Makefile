# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0

CARGO ?= cargo

.PHONY: all build test test-deps fmt lint

all: build

# The release binaries exactly as the images build them.
build:
	@scripts/build-release.sh apiserver-proxy-sidecar
	@scripts/build-release.sh apiserver-proxy-pod-webhook

# System packages the tests drive for real (iptables nft and legacy, ip from iproute2).
test-deps:
	@./scripts/install-test-deps.sh

test: test-deps
	$(CARGO) test --workspace --locked -- --include-ignored

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

.PHONY: run testdata demo

# As root: the sidecar with --setup-iptables in a throwaway network namespace and the webhook on
# localhost; sends the README's AdmissionReview, prints the patch, the address and rules, cleans up.
demo:
	./scripts/demo.sh

# The pod webhook on https://127.0.0.1:9443 (loopback only: the key in testdata/ is public) with
# the committed test certificates; Ctrl-C stops it at once (no shutdown delay).
# (scripts/cross-check.sh runs the aarch64 build with these arguments and checks both promises.)
RUN_ARGS = --apiserver-fqdn=foo.bar. --cert-dir testdata --host=127.0.0.1 --shutdown-delay=0s
run:
	$(CARGO) run --locked -p apiserver-proxy-pod-webhook -- $(RUN_ARGS)
.PHONY: print-run-args
print-run-args:
	@echo $(RUN_ARGS)

# Regenerate testdata/: CA, server and client certificates (valid until 2126), admission.json.
testdata:
	$(CARGO) run --locked -p apiserver-proxy-pod-webhook --example gen-testdata -- testdata

# --- Packaging: images, manifests, licensing ------------------------------------------------
# One version: the workspace's in Cargo.toml. It is the image tag here, the binaries' --version
# (APISERVER_PROXY_VERSION) and the newTag under images: in deploy/; scripts/check-version.sh
# fails when they disagree.
override VERSION := $(shell sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
IMAGE_REGISTRY ?= localhost
DOCKER ?= docker
# PLATFORMS empty: the machine's own platform, loaded into the local engine. A list such as
# linux/amd64,linux/arm64 builds each with buildx (the build stage runs on each platform:
# natively or under QEMU); a multi-platform result cannot be loaded into the engine, so it is
# pushed (DOCKER_OUTPUT, default --push: set IMAGE_REGISTRY to your registry) or written where
# DOCKER_OUTPUT=--output=... says.
PLATFORMS ?=
DOCKER_OUTPUT ?= --push
DOCKER_BUILD = $(if $(PLATFORMS),$(DOCKER) buildx build --platform=$(PLATFORMS) $(DOCKER_OUTPUT),$(DOCKER) build)

.PHONY: docker-images image-builds validate-manifests revendor reuse check-version cross-check

# Container images, on a machine with a Docker engine (BuildKit; buildx for PLATFORMS).
docker-images:
	$(DOCKER_BUILD) -f Dockerfile.sidecar --build-arg VERSION=$(VERSION) -t $(IMAGE_REGISTRY)/apiserver-proxy-sidecar:$(VERSION) .
	$(DOCKER_BUILD) -f Dockerfile.webhook --build-arg VERSION=$(VERSION) -t $(IMAGE_REGISTRY)/apiserver-proxy-pod-webhook:$(VERSION) .

# The version in Cargo.toml, the Makefile's image tags and deploy/'s images: agree.
check-version:
	./scripts/check-version.sh
.PHONY: print-version print-image-tags
print-version:
	@echo $(VERSION)
print-image-tags:
	@$(MAKE) -s -n docker-images DOCKER=docker | sed -n 's/.* -t \([^ ]*\) .*/\1/p'

# The Dockerfiles' build steps without Docker (scripts/image-build.sh, which they run too), the
# checks of the result, that the Dockerfiles still match it, and the built webhook run the way
# deploy/ runs it (probes, mutation, certificate renewal).
image-builds:
	VERSION=$(VERSION) ./scripts/image-build.sh sidecar
	VERSION=$(VERSION) ./scripts/image-build.sh webhook
	"$$(./scripts/ci-venv.sh)/python" scripts/check_dockerfiles.py
	./scripts/test-webhook-deploy.sh

# Both images for linux/amd64 and linux/arm64 without a Docker engine (as root): the same
# Dockerfiles built by buildah on files laid out by scripts/image-build.sh (natively and
# cross-compiled), one multi-platform OCI archive per image in target/oci/ (push it with skopeo:
# docs/deploying.md); then both run with podman as deploy/ runs them (scripts/test-images.sh).
# STANDIN_BASES=1 for a machine that cannot pull the distroless bases.
.PHONY: oci-images alerts
oci-images:
	IMAGE_REGISTRY=$(IMAGE_REGISTRY) VERSION=$(VERSION) ./scripts/build-images.sh
	IMAGE_REGISTRY=$(IMAGE_REGISTRY) VERSION=$(VERSION) ./scripts/test-images.sh

# deploy/components/alerts/: promtool unit tests of every alert, then (as root) a real Prometheus
# against both binaries in a network namespace, watching an alert fire when the node breaks.
alerts:
	./scripts/test-alerts.sh

# Both binaries cross-built for aarch64 as the images build them, run under qemu-aarch64: --help,
# and the webhook as `make run` starts it, answering README's "Try it" request as README shows.
# Installs the cross toolchain and qemu-user (Debian, as root) and the rustup target when missing.
cross-check:
	./scripts/cross-check.sh

# Every manifest in deploy/ rendered and validated offline against the Kubernetes schemas,
# plus a self-test that the validator catches broken manifests.
# And docs/deploying.md's certificate steps, as written, on a fresh directory; and its
# "configure once" steps: a copy of deploy/overlays/example/ with other values, each checked in
# every place it must reach.
validate-manifests:
	./scripts/validate-manifests.sh
	./scripts/test-validate-manifests.sh
	./scripts/test-webhook-cert.sh
	./scripts/test-overlay.sh

# Update dependencies within Cargo.toml's ranges and vendor them into vendor/ (not committed);
# Cargo.lock keeps the result. Build from vendor/ with the source replacement cargo prints.
revendor:
	$(CARGO) update
	$(CARGO) vendor --locked vendor

# REUSE compliance (licence texts in LICENSES/, SPDX headers or REUSE.toml for every file).
reuse:
	"$$(./scripts/ci-venv.sh)/reuse" lint

# Dependency licences, bans and sources (deny.toml); installs cargo-deny when missing.
CARGO_DENY_VERSION ?= 0.20.2
.PHONY: deny
deny:
	command -v cargo-deny >/dev/null || $(CARGO) install cargo-deny --locked --version $(CARGO_DENY_VERSION)
	$(CARGO) deny --locked check licenses bans sources

# Pod webhook benchmarks: criterion (review of a small and a ~80 KB pod), then the load test
# against a fixed-body rustls+hyper server (bench/webhook-load.sh; installs wrk when missing).
.PHONY: bench bench-webhook bench-sidecar
bench: bench-sidecar bench-webhook
# Sidecar footprint and reaction times in throwaway network namespaces (as root).
bench-sidecar:
	./bench/sidecar.sh
bench-webhook:
	$(CARGO) bench --locked -p apiserver-proxy-pod-webhook --bench review
	./bench/webhook-load.sh

# Fuzz the pod webhook (fuzz/: the request path and the flag checks) for FUZZ_SECONDS per target
# from the committed seed corpus; fails on any crash. Needs nightly and cargo-fuzz.
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz:
	./scripts/fuzz.sh $(FUZZ_SECONDS)
