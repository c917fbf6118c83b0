// dpagent's view of a failed TLS connection to dpctld: each configuration mistake is told apart and comes with
// advice naming what to change (wrong --ca, a name dpctld's certificate lacks, its expiry, dpctld refusing the
// agent's certificate, no TLS 1.3); those are permanent, everything else is retried.
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <cstring>

#include "tests/unit/cmocka.hpp"

#include "agent/tls_failure.hpp"
#include "common/inet.hpp"

using namespace dptun;

namespace {
ServerCertSeen seen() {
  ServerCertSeen c;
  c.subject = "/CN=dpctld.test";
  c.issuer = "/CN=dptun test CA";
  c.names = {"DNS:dpctld.test", "IP:10.99.2.1"};
  c.not_after = "Jan  1 00:00:00 2021 GMT";
  return c;
}
unsigned long ssl_err(int reason) { return ERR_PACK(ERR_LIB_SSL, 0, reason); }
bool says(const AgentTlsVerdict& v, const char* text) { return v.advice.find(text) != std::string::npos; }
}  // namespace

static void verification_failures(void**) {
  auto v = classify_agent_tls(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, 0, "gw.example", "/etc/x/ca.pem", seen());
  assert_int_equal(v.kind, AgentTlsFailure::UntrustedServer);
  assert_true(v.permanent);
  assert_string_equal(v.reason.c_str(), "untrusted_server_cert");
  assert_true(says(v, "--ca /etc/x/ca.pem does not verify dpctld's certificate (/CN=dpctld.test, issued by /CN=dptun test CA)"));
  v = classify_agent_tls(X509_V_ERR_HOSTNAME_MISMATCH, 0, "gw.example", "ca.pem", seen());
  assert_int_equal(v.kind, AgentTlsFailure::NameMismatch);
  assert_true(says(v, "does not carry 'gw.example'; it names DNS:dpctld.test, IP:10.99.2.1"));
  assert_true(says(v, "--server-name"));
  v = classify_agent_tls(X509_V_ERR_IP_ADDRESS_MISMATCH, 0, "10.0.0.1", "ca.pem", seen());
  assert_int_equal(v.kind, AgentTlsFailure::NameMismatch);
  v = classify_agent_tls(X509_V_ERR_CERT_HAS_EXPIRED, 0, "gw", "ca.pem", seen());
  assert_int_equal(v.kind, AgentTlsFailure::ServerCertExpired);
  assert_true(says(v, "is expired") && says(v, "Jan  1 00:00:00 2021 GMT"));
}

static void alerts_from_dpctld(void**) {
  for (int r : {SSL_R_TLSV1_ALERT_UNKNOWN_CA, SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED, SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED,
                SSL_R_SSLV3_ALERT_BAD_CERTIFICATE, SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED}) {
    auto v = classify_agent_tls(X509_V_OK, ssl_err(r), "gw", "ca.pem", seen());
    assert_int_equal(v.kind, AgentTlsFailure::ClientCertRejected);
    assert_true(v.permanent);
    assert_true(says(v, "dpctld refused this agent's certificate"));
  }
  auto v = classify_agent_tls(X509_V_OK, ssl_err(SSL_R_TLSV1_ALERT_PROTOCOL_VERSION), "gw", "ca.pem", seen());
  assert_int_equal(v.kind, AgentTlsFailure::ProtocolVersion);
  // Broken connections, resets, internal errors: retried.
  for (unsigned long e : {0ul, ssl_err(SSL_R_UNEXPECTED_EOF_WHILE_READING), ERR_PACK(ERR_LIB_SYS, 0, 104)}) {
    v = classify_agent_tls(X509_V_OK, e, "gw", "ca.pem", seen());
    assert_int_equal(v.kind, AgentTlsFailure::Transient);
    assert_false(v.permanent);
  }
}

static void server_addresses(void**) {
  auto hp = parse_host_port("gw.example.net:7443");
  assert_true(hp && hp->first == "gw.example.net" && hp->second == 7443);
  hp = parse_host_port("10.99.2.1:7443");
  assert_true(hp && hp->first == "10.99.2.1");
  assert_true(parse_host_port("localhost:1").has_value());
  for (const char* bad : {"gw.example.net", "gw.example.net:0", "gw.example.net:65536", ":7443", "-gw.x:1", "gw-.x:1",
                          "a..b:1", "a b:1", "1.2.3:7443", "999.1.1.1:1", "gw_x.example:1", "gw.example.net:7443x"})
    assert_false(parse_host_port(bad).has_value());
}

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(verification_failures),
      cmocka_unit_test(alerts_from_dpctld),
      cmocka_unit_test(server_addresses),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
