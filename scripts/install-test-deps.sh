#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# Installs the system tools the tests drive for real, when they are missing.
# The namespace tests need root, ip (iproute2), iptables-nft/-legacy and their -save tools,
# setpriv and flock (util-linux), strace (to count what a steady-state tick runs), curl, and
# openssl (an old-TLS client for the webhook's tests, and the data-path test's TLS server);
# the data-path test also needs haproxy (the SNI-passthrough proxy) and conntrack; the native
# nftables mode's tests build their foreign tables and read the sidecar's with nft (nftables).
set -euo pipefail

# The tests need root (network namespaces, iptables); say so first, rather than report tools
# missing that are only off an ordinary user's PATH (/usr/sbin).
if [ "$(id -u)" -ne 0 ]; then
  echo "make test runs the network namespace tests, which need root: run it as root (e.g. sudo make test)." >&2
  echo "A plain \`cargo test\` runs the rest as any user." >&2
  exit 1
fi
PATH="$PATH:/usr/sbin:/sbin"

need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
for tool in iptables-nft iptables-legacy iptables-nft-save iptables-legacy-save ip6tables-nft ip6tables-legacy; do
  command -v "$tool" >/dev/null 2>&1 || { need+=(iptables); break; }
done
for tool in setpriv unshare flock; do
  command -v "$tool" >/dev/null 2>&1 || { need+=(util-linux); break; }
done
command -v strace >/dev/null 2>&1 || need+=(strace)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl) # the webhook's TLS 1.0/1.1 refusal test
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)
command -v nft >/dev/null 2>&1 || need+=(nftables)

exec "$(dirname "$0")/apt-install.sh" "test tools" "${need[@]}"
