#!/usr/bin/env bash
# Shared by scripts/kafka.sh and scripts/tls-proxy.sh (sourced, not run): a throwaway
# certificate authority and a server certificate signed by it, made with openssl, and
# random secrets. Everything goes into the caller's state dir; private keys and secrets
# are written 0600. Expects `die` from the sourcing script.

# random_secret: 32 random characters from [A-Za-z0-9] (safe in Kafka's --add-scram
# syntax, in properties files and on a command line).
random_secret() {
  local s=""
  while [ ${#s} -lt 32 ]; do
    s+="$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
  done
  echo "${s:0:32}"
}

# write_secret FILE VALUE: VALUE without a newline into FILE, readable by its owner only.
write_secret() {
  (umask 077 && printf '%s' "$2" >"$1")
}

# make_certs DIR NAME SAN: a CA (DIR/ca.pem, key DIR/ca.key) and a server certificate
# for NAME with the subjectAltName SAN (e.g. `IP:127.0.0.1,DNS:localhost`) signed by it
# (DIR/server.pem, key DIR/server.key, DIR/chain.pem = server then CA), EC P-256, valid
# for 30 days. Keeps the files of an earlier call when they are all there.
make_certs() {
  local dir="$1" name="$2" san="$3" f
  if [ -f "$dir/ca.pem" ] && [ -f "$dir/server.key" ] && [ -f "$dir/chain.pem" ]; then
    return 0
  fi
  command -v openssl >/dev/null || die "openssl is required (Debian: apt-get install -y openssl)"
  mkdir -p "$dir"
  chmod 700 "$dir"
  cat >"$dir/openssl.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  (
    umask 077
    openssl req -x509 "${ec[@]}" -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 30 \
      -config "$dir/openssl.cnf" -extensions ca -subj "/CN=tidewatch throwaway CA $(random_secret | cut -c 1-8)" &&
    openssl req -new "${ec[@]}" -keyout "$dir/server.key" -out "$dir/server.csr" \
      -config "$dir/openssl.cnf" -subj "/CN=$name" &&
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -set_serial "0x$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
      -out "$dir/server.pem" -days 30 -extfile "$dir/openssl.cnf" -extensions server
  ) >"$dir/openssl.log" 2>&1 || { cat "$dir/openssl.log" >&2; die "openssl could not make the certificates in $dir"; }
  cat "$dir/server.pem" "$dir/ca.pem" >"$dir/chain.pem"
  for f in ca.pem server.pem chain.pem; do chmod 644 "$dir/$f"; done
  rm -f "$dir/server.csr"
}
