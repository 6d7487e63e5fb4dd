# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0

CARGO ?= cargo

.PHONY: all build test test-deps fmt lint

all: build

build:
	$(CARGO) build --release --locked

# System packages the tests drive for real (iptables nft and legacy, ip from iproute2).
test-deps:
	@./scripts/install-test-deps.sh

test: test-deps
	$(CARGO) test --workspace --locked

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# The pod webhook on https://localhost:9443 with the committed test certificates.
.PHONY: run testdata
run:
	$(CARGO) run --locked -p apiserver-proxy-pod-webhook -- --apiserver-fqdn=foo.bar. --cert-dir testdata

# Regenerate testdata/: CA, server and client certificates (valid until 2126), admission.json.
testdata:
	$(CARGO) run --locked -p apiserver-proxy-pod-webhook --example gen-testdata -- testdata
