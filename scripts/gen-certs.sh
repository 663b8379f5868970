#!/usr/bin/env bash
# Makes a test CA and the certificates the tests, quickstart and examples use:
#   ca.pem/ca.key                    the test CA
#   relay.pem/relay.key              sigrelay's public name (smtp.contososignatureservice.com)
#   smarthost.pem/smarthost.key      the stand-in smart host (fabrikam.mail.protection.outlook.com)
#   S5HG3DCG14.pem/.key              tenant fabrikam's client certificate
#   K7QW2PLM55.pem/.key              tenant contoso's client certificate
#   rogue-ca.pem, rogue.pem/.key     a client certificate with the right name from another CA
#   exo.pem/exo.key                  a client certificate for Exchange Online's side (tests)
# Usage: scripts/gen-certs.sh [DIR]   (default: ./certs). Idempotent: keeps existing files.
set -euo pipefail
dir=${1:-certs}
mkdir -p "$dir"
cd "$dir"

days=3650
if [ -f ca.pem ] && [ -f S5HG3DCG14.pem ] && [ -f rogue.pem ] && [ -f exo.pem ]; then
  exit 0
fi

mkca() {  # name cn
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$1.key" -out "$1.pem" -days $days -subj "/O=sigrelay test/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

mkleaf() {  # name ca cn san usage
  local name=$1 ca=$2 cn=$3 san=$4 usage=$5
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$name.key" -out "$name.csr" -subj "/O=sigrelay test/CN=$cn" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
    "$usage" "$san" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA "$ca.pem" -CAkey "$ca.key" -CAcreateserial \
    -out "$name.pem" -days $days -extfile "$name.ext" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
  chmod 600 "$name.key"
}

mkca ca "sigrelay test CA"
mkca rogue-ca "some other CA"
mkleaf relay ca smtp.contososignatureservice.com \
  "DNS:smtp.contososignatureservice.com,DNS:localhost,IP:127.0.0.1,IP:::1" serverAuth,clientAuth
mkleaf smarthost ca fabrikam.mail.protection.outlook.com \
  "DNS:fabrikam.mail.protection.outlook.com,DNS:contoso.mail.protection.outlook.com,DNS:localhost,IP:127.0.0.1,IP:::1" serverAuth
mkleaf S5HG3DCG14 ca S5HG3DCG14.smtp.contososignatureservice.com \
  "DNS:S5HG3DCG14.smtp.contososignatureservice.com" clientAuth,serverAuth
mkleaf K7QW2PLM55 ca K7QW2PLM55.smtp.contososignatureservice.com \
  "DNS:K7QW2PLM55.smtp.contososignatureservice.com" clientAuth,serverAuth
mkleaf rogue rogue-ca S5HG3DCG14.smtp.contososignatureservice.com \
  "DNS:S5HG3DCG14.smtp.contososignatureservice.com" clientAuth
mkleaf exo ca mail.protection.outlook.com "DNS:mail.protection.outlook.com" clientAuth
rm -f ./*.srl
echo "certificates in $(pwd)"
