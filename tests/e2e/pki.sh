#!/usr/bin/env bash
# Test PKI made with the openssl CLI: a CA, dpctld's server certificate, and agent certificates for every
# case of the mTLS matrix. usage: pki.sh DIR [SERVER_IP]
#   ca.pem/key          the CA agents and dpctld trust
#   server.pem/key      dpctld (SAN DNS:dpctld.test, IP:SERVER_IP)
#   agent1, agent2      valid client certificates (CN=agent-1 / agent-2, SAN DNS:agentN.test)
#   expired             valid 2020-2021          notyet      valid from 2099
#   revoked             revoked in crl.pem       rogue       signed by another CA (rogue-ca.pem)
set -euo pipefail
dir=$1
server_ip=${2:-127.0.0.1}
mkdir -p "$dir"
cd "$dir"
rm -rf db && mkdir db && : > db/index.txt && echo 1000 > db/serial && echo 1000 > db/crlnumber

cat > ca.cnf <<CNF
[ ca ]
default_ca = test_ca
[ test_ca ]
dir = .
database = db/index.txt
serial = db/serial
crlnumber = db/crlnumber
new_certs_dir = db
certificate = ca.pem
private_key = ca.key
default_md = sha256
default_days = 365
default_crl_days = 3650
policy = any
unique_subject = no
copy_extensions = copy
[ any ]
commonName = supplied
[ client ]
basicConstraints = CA:FALSE
keyUsage = digitalSignature
extendedKeyUsage = clientAuth
[ server ]
basicConstraints = CA:FALSE
keyUsage = digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:dpctld.test,IP:$server_ip
CNF

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

newkey ca
openssl req -x509 -new -key ca.key -out ca.pem -subj "/CN=dptun test CA" -days 3650 -sha256 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
newkey rogue-ca
openssl req -x509 -new -key rogue-ca.key -out rogue-ca.pem -subj "/CN=rogue CA" -days 3650 -sha256 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

# sign NAME CN EXTENSIONS [openssl ca date options...]
sign() {
  local name=$1 cn=$2 ext=$3; shift 3
  newkey "$name"
  openssl req -new -key "$name.key" -out "$name.csr" -subj "/CN=$cn" 2>/dev/null
  openssl ca -batch -config ca.cnf -extensions "$ext" -in "$name.csr" -out "$name.pem" -notext "$@" 2>/dev/null
}

sign server dpctld.test server
sign agent1 agent-1 client
sign agent2 agent-2 client
sign expired agent-expired client -startdate 20200101000000Z -enddate 20210101000000Z
sign notyet agent-notyet client -startdate 20990101000000Z -enddate 20991231000000Z
sign revoked agent-revoked client
openssl ca -batch -config ca.cnf -revoke revoked.pem 2>/dev/null
openssl ca -batch -config ca.cnf -gencrl -out crl.pem 2>/dev/null

newkey rogue
openssl req -new -key rogue.key -out rogue.csr -subj "/CN=agent-1" 2>/dev/null
openssl x509 -req -in rogue.csr -CA rogue-ca.pem -CAkey rogue-ca.key -CAcreateserial -out rogue.pem -days 365 \
  -extfile <(printf 'extendedKeyUsage=clientAuth\n') 2>/dev/null
rm -f ./*.csr
