#!/usr/bin/env bash
# Test PKI made with the openssl CLI: a CA, dpctld's server certificate, and agent certificates for every
# case of the mTLS matrix. usage: pki.sh DIR [SERVER_IP]
#   ca.pem/key          the CA agents and dpctld trust
#   server.pem/key      dpctld (SAN DNS:dpctld.test, IP:SERVER_IP)
#   agent1, agent2      valid client certificates (CN=agent-1 / agent-2, SAN DNS:agentN.test)
#   expired             valid 2020-2021          notyet      valid from 2099
#   revoked             revoked in crl.pem       rogue       signed by another CA (rogue-ca.pem)
#   inter-ca            an intermediate CA       agent3      issued by it (agent3-chain.pem: with the intermediate)
#   crl-all.pem / ca-bundle.pem   both CRLs / both CAs;   crl-expired.pem, crl-soon.pem   nextUpdate past / in 2 days
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

# An intermediate CA under the test CA, with its own database and CRL (inter-crl.pem), and agent3 issued by it
# (CN=agent-3, SAN DNS:Agent3.Test; agent3-chain.pem holds agent3 and the intermediate, as agents send them).
# crl-all.pem: both CRLs; ca-bundle.pem: both CAs.
mkdir -p inter/db && : > inter/db/index.txt && echo 2000 > inter/db/serial && echo 2000 > inter/db/crlnumber
sed -e 's|^dir = .|dir = inter|' -e 's|^database = db/index.txt|database = inter/db/index.txt|' \
    -e 's|^serial = db/serial|serial = inter/db/serial|' -e 's|^crlnumber = db/crlnumber|crlnumber = inter/db/crlnumber|' \
    -e 's|^new_certs_dir = db|new_certs_dir = inter/db|' -e 's|^certificate = ca.pem|certificate = inter-ca.pem|' \
    -e 's|^private_key = ca.key|private_key = inter-ca.key|' ca.cnf > inter.cnf
printf '[ subca ]\nbasicConstraints = critical,CA:TRUE,pathlen:0\nkeyUsage = critical,keyCertSign,cRLSign\n' >> ca.cnf
newkey inter-ca
openssl req -new -key inter-ca.key -out inter-ca.csr -subj "/CN=dptun test intermediate" 2>/dev/null
openssl ca -batch -config ca.cnf -extensions subca -in inter-ca.csr -out inter-ca.pem -notext -days 3650 2>/dev/null
newkey agent3
openssl req -new -key agent3.key -out agent3.csr -subj "/CN=agent-3" -addext "subjectAltName=DNS:Agent3.Test" 2>/dev/null
openssl ca -batch -config inter.cnf -extensions client -in agent3.csr -out agent3.pem -notext 2>/dev/null
cat agent3.pem inter-ca.pem > agent3-chain.pem
openssl ca -batch -config inter.cnf -gencrl -out inter-crl.pem 2>/dev/null
openssl ca -batch -config ca.cnf -gencrl -out crl.pem 2>/dev/null
cat crl.pem inter-crl.pem > crl-all.pem
cat ca.pem inter-ca.pem > ca-bundle.pem
# A CRL whose nextUpdate has passed, and one due in two days.
openssl ca -batch -config ca.cnf -gencrl -crl_lastupdate 20200101000000Z -crl_nextupdate 20210101000000Z \
  -out crl-expired.pem 2>/dev/null
openssl ca -batch -config ca.cnf -gencrl -crlhours 48 -out crl-soon.pem 2>/dev/null
rm -f ./*.csr
