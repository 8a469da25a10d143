#!/bin/sh
# make_certs.sh DIR: throwaway certificates for the HttpClient tests (tests/tools/upstream.py).
# Generated at test time with the openssl command line; nothing here is ever committed.
#
#   DIR/ca.pem                 test CA (the client's HttpClientConfig::ca_file)
#   DIR/good.pem, good.key     server: SAN IP:127.0.0.1, IP:::1, DNS:localhost, signed by the CA
#   DIR/wrong-host.pem, .key   server: SAN DNS:wrong.example only, signed by the same CA
#   DIR/other-ip.pem, .key     server: CN 127.0.0.1 but SAN IP:127.0.0.2, IP:::2,
#                              DNS:localhost, signed by the same CA: good for the name
#                              localhost, for neither 127.0.0.1 nor ::1
#   DIR/decoy-ip-san.pem, .key server: SAN DNS:decoy.example only, signed by the same CA,
#                              behind a private extension (listed first) whose value is a
#                              subjectAltName extension for IP:127.0.0.1: good for no IP
#   DIR/unknown-ca.pem, .key   self-signed for 127.0.0.1 / localhost: no CA the client knows
#
# EC P-256 keys keep it fast. Idempotent: files that already exist are kept, and the
# finished set is marked by DIR/.complete (written last), so a run that was interrupted
# halfway is redone from scratch.
set -eu

dir=${1:?usage: make_certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
# A set from before the newest certificate (decoy-ip-san) is redone.
[ -f .complete ] && [ -f decoy-ip-san.pem ] && exit 0
rm -f ./*.pem ./*.key ./*.csr ./*.srl ./*.ext

umask 077
days=30

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# The CA.
key ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$days" -subj "/CN=tern test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem

# leaf NAME SUBJECT_CN SAN [EXTENSION]: a server certificate signed by the test CA; the
# optional extension line comes first, ahead of the subjectAltName.
leaf() {
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  printf '%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "${4:-}" "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 \
    -days "$days" -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

leaf good "localhost" "IP:127.0.0.1,IP:::1,DNS:localhost"
leaf wrong-host "wrong.example" "DNS:wrong.example"
leaf other-ip "127.0.0.1" "IP:127.0.0.2,IP:::2,DNS:localhost"
# The private extension's value is the DER of a whole subjectAltName extension body, OID
# 2.5.29.17 then an OCTET STRING holding [IP:127.0.0.1]: a client that searches the raw
# extension bytes for that OID instead of reading the real SAN finds the address here.
leaf decoy-ip-san "decoy.example" "DNS:decoy.example" \
  "1.3.6.1.4.1.55555.1=DER:06:03:55:1D:11:04:08:30:06:87:04:7F:00:00:01"

# Self-signed, for the right names, by a CA nobody trusts.
key unknown-ca.key
openssl req -x509 -new -key unknown-ca.key -sha256 -days "$days" -subj "/CN=localhost" \
  -addext "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost" \
  -addext "basicConstraints=critical,CA:FALSE" \
  -out unknown-ca.pem

rm -f ca.srl
chmod 644 ./*.pem
touch .complete
