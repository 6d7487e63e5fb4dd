#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# Installs Debian packages that are missing, for scripts/install-test-deps.sh and
# scripts/install-ci-deps.sh:
#   scripts/apt-install.sh WHAT [PACKAGE...]    (WHAT names them in messages: "test tools")
# Nothing to do without packages; without root or apt-get it says what is missing and fails.
set -euo pipefail
what="$1"
shift
[ $# -gt 0 ] || exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing $what ($*): install them as root (Debian: apt-get install $*)" >&2
  exit 1
fi
echo "installing $what: $*"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$@" >/dev/null
