#!/usr/bin/env bash
# Makes what docker-compose.redis-secure.yml mounts: a private CA, a server
# certificate signed by it, a password for the limiter's ACL user, and the
# env file that docker compose reads (docs/production.md, "TLS").
#
#   scripts/make-redis-certs.sh [--days N] [--name HOST]... [OUT_DIR]
#
# OUT_DIR (default ./redis-tls) receives, all readable by the current user
# only (the compose file mounts the server's three files and runs Redis under
# this user's uid, so that it can read them; run as root, the script gives
# those three to uid 999, the redis user of the official image, instead):
#
#   ca.crt              the CA certificate: give it to clients (tls_ca=...)
#   ca.key              the CA's private key: keep it, or move it offline
#   server.crt/.key     the server certificate (serverAuth) and key
#   tollgate.password   the password of the ACL user `tollgate` (64 hex
#                       digits: safe in a URL as it is)
#   redis.env           for `docker compose --env-file`: the password's
#                       SHA-256 (Redis stores only that), the uid/gid to run
#                       as and OUT_DIR's absolute path
#
# The certificate names localhost, redis (the compose service), 127.0.0.1
# and ::1, plus every --name (a DNS name, or an IP address). Clients verify
# the name they connect to, so add the host name your servers use.
#
# Run it again to renew: an existing CA and password are kept (clients that
# trust the CA and know the password go on working); the server certificate
# and redis.env are made anew. Delete OUT_DIR to start from scratch.
#
# EC P-256 keys, SHA-256 signatures; the CA is valid 10 years, the server
# certificate --days (default 397). Needs openssl and sha256sum.
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
  exit 2
}

days=397
names=()
out=
while [[ $# -gt 0 ]]; do
  case $1 in
    --days) days=${2:?--days needs a number}; shift 2 ;;
    --name) names+=("${2:?--name needs a host name or address}"); shift 2 ;;
    -h | --help) usage ;;
    -*) echo "make-redis-certs: unknown option $1" >&2; usage ;;
    *)
      [[ -z $out ]] || usage
      out=$1; shift ;;
  esac
done
out=${out:-./redis-tls}
[[ $days =~ ^[0-9]+$ && $days -ge 1 ]] || {
  echo "make-redis-certs: --days must be a positive integer" >&2
  exit 2
}

umask 077
mkdir -p "$out"
chmod 700 "$out"
out=$(cd "$out" && pwd)
cd "$out"

key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

san="DNS:localhost, DNS:redis, IP:127.0.0.1, IP:::1"
ip_re='^([0-9]{1,3}\.){3}[0-9]{1,3}$|:'
for n in "${names[@]}"; do
  if [[ $n =~ $ip_re ]]; then san+=", IP:$n"; else san+=", DNS:$n"; fi
done

if [[ ! -s ca.key || ! -s ca.crt ]]; then
  key ca.key
  cat >ca.cnf <<'EOF'
[req]
distinguished_name = dn
x509_extensions = v3
prompt = no
[dn]
CN = tollgate Redis CA
[v3]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
  openssl req -x509 -new -config ca.cnf -key ca.key -sha256 -days 3650 \
    -out ca.crt
  rm -f ca.cnf
  echo "make-redis-certs: new CA: $out/ca.crt"
else
  echo "make-redis-certs: keeping the CA in $out"
fi

key server.key
cat >server.ext <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = $san
EOF
openssl req -new -key server.key -subj "/CN=redis" -out server.csr
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key \
  -set_serial "0x$(openssl rand -hex 16)" -sha256 -days "$days" \
  -extfile server.ext -out server.crt 2>/dev/null
rm -f server.csr server.ext
openssl verify -CAfile ca.crt server.crt >/dev/null

if [[ ! -s tollgate.password ]]; then
  openssl rand -hex 32 >tollgate.password
  echo "make-redis-certs: new password for the ACL user tollgate"
fi
password=$(tr -d '\n' <tollgate.password)
sha=$(printf '%s' "$password" | sha256sum | cut -c1-64)

# The uid Redis runs as in the container: ours, so that it reads the files
# we made; root's files go to the image's redis user (999) instead, since the
# image's entrypoint drops root for that user.
uid=$(id -u) gid=$(id -g)
if [[ $uid -eq 0 ]]; then uid=999 gid=999; fi

cat >redis.env <<EOF
# Written by scripts/make-redis-certs.sh for
#   docker compose --env-file $out/redis.env -f docker-compose.redis-secure.yml up -d
TOLLGATE_REDIS_TLS_DIR=$out
TOLLGATE_REDIS_PASSWORD_SHA256=$sha
TOLLGATE_REDIS_UID=$uid
TOLLGATE_REDIS_GID=$gid
EOF

chmod 600 ./*.key ./*.crt tollgate.password redis.env
if [[ $(id -u) -eq 0 ]]; then chown "$uid:$gid" server.crt server.key ca.crt; fi
echo "make-redis-certs: server certificate for: $san (valid $days days)"
echo "make-redis-certs: wrote $out/{ca.crt,ca.key,server.crt,server.key,tollgate.password,redis.env}"
