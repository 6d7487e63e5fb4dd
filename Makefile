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
