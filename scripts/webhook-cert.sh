#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# Makes a private CA and a serving certificate for the webhook's Service, for deployments
# without cert-manager:
#
#   scripts/webhook-cert.sh OUTDIR [NAMESPACE] [SERVICE] [DAYS]
#
# writes OUTDIR/ca.crt, ca.key, tls.crt, tls.key (EC P-256; the certificate is valid for
# SERVICE.NAMESPACE.svc and SERVICE.NAMESPACE.svc.cluster.local, for DAYS days, default 365).
# Then (README.md, "Deploying"):
#   kubectl -n NAMESPACE create secret tls SERVICE-tls --cert=OUTDIR/tls.crt --key=OUTDIR/tls.key
#   caBundle: base64 -w0 OUTDIR/ca.crt
# Running it again with the same OUTDIR keeps the CA and renews only the serving certificate,
# so caBundle stays valid across rotations.
set -euo pipefail
out="${1:?usage: $0 OUTDIR [NAMESPACE] [SERVICE] [DAYS]}"
ns="${2:-apiserver-proxy}"
svc="${3:-apiserver-proxy-pod-webhook}"
days="${4:-365}"
mkdir -p "$out"
umask 077

if [ ! -s "$out/ca.key" ] || [ ! -s "$out/ca.crt" ]; then
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$out/ca.key" -out "$out/ca.crt" -days 3650 \
    -subj "/CN=$svc CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -keyout "$out/tls.key" -out "$out/tls.csr" -subj "/CN=$svc.$ns.svc" 2>/dev/null
openssl x509 -req -in "$out/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
  -days "$days" -out "$out/tls.crt" -extfile <(printf '%s\n' \
    "subjectAltName=DNS:$svc.$ns.svc,DNS:$svc.$ns.svc.cluster.local" \
    "extendedKeyUsage=serverAuth" \
    "keyUsage=critical,digitalSignature" \
    "basicConstraints=critical,CA:FALSE") 2>/dev/null
rm -f "$out/tls.csr" "$out/ca.srl"
chmod 0644 "$out/ca.crt" "$out/tls.crt"
echo "webhook-cert: $out/tls.crt for $svc.$ns.svc, signed by $out/ca.crt"
