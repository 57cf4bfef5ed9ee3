#!/usr/bin/env bash
# Makes the TLS material for tollgate's tests in the given directory (which
# must exist): two unrelated CAs, server certificates for localhost /
# 127.0.0.1 and for wrong.example, and client certificates from each CA.
# EC P-256 keys, SHA-256 signatures, valid one day. Used by
# tests/support/certs.cpp; also handy by hand:
#   tests/support/make_certs.sh "$(mktemp -d)"
set -euo pipefail

out=${1:?usage: make_certs.sh <existing output dir>}
cd "$out"
days=1

key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
}

# ca <name> <common name>
ca() {
  key "$1.key"
  # A config of our own, so the system openssl.cnf adds nothing unexpected.
  cat >"$1.cnf" <<EOF
[req]
distinguished_name = dn
x509_extensions = v3
prompt = no
[dn]
CN = $2
[v3]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
  openssl req -x509 -new -config "$1.cnf" -key "$1.key" -sha256 \
    -days "$days" -out "$1.crt"
}

# leaf <name> <common name> <issuing ca> <extendedKeyUsage> [subjectAltName]
leaf() {
  key "$1.key"
  {
    echo "basicConstraints = critical, CA:FALSE"
    echo "keyUsage = critical, digitalSignature"
    echo "extendedKeyUsage = $4"
    echo "subjectKeyIdentifier = hash"
    echo "authorityKeyIdentifier = keyid"
    if [[ -n ${5:-} ]]; then echo "subjectAltName = $5"; fi
  } >"$1.ext"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA "$3.crt" -CAkey "$3.key" \
    -set_serial "0x$(openssl rand -hex 8)" -sha256 -days "$days" \
    -extfile "$1.ext" -out "$1.crt"
  rm -f "$1.csr"
}

ca ca "tollgate test CA"
ca other-ca "tollgate unrelated CA"
leaf server localhost ca serverAuth "DNS:localhost, IP:127.0.0.1"
leaf wrong wrong.example ca serverAuth "DNS:wrong.example"
leaf client "tollgate test client" ca clientAuth
leaf other-client "tollgate unrelated client" other-ca clientAuth

# The server must accept its own chain; fail here rather than in a test.
openssl verify -CAfile ca.crt server.crt wrong.crt client.crt >/dev/null
openssl verify -CAfile other-ca.crt other-client.crt >/dev/null
