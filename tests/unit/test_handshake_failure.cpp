// Classification of failed agent TLS handshakes from OpenSSL's errors, and the JSON line that reports them.
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <nlohmann/json.hpp>

#include "tests/unit/cmocka.hpp"

#include "control/handshake_failure.hpp"

using namespace dptun;

static unsigned long ssl_err(int reason) { return ERR_PACK(ERR_LIB_SSL, 0, reason); }

static HandshakeEvidence tls_client() {
  HandshakeEvidence e;
  e.first_byte = 0x16;
  return e;
}

static void verify_errors(void**) {
  struct {
    int verify;
    HandshakeFailure want;
  } cases[] = {
      {X509_V_ERR_CERT_HAS_EXPIRED, HandshakeFailure::Expired},
      {X509_V_ERR_CERT_NOT_YET_VALID, HandshakeFailure::NotYetValid},
      {X509_V_ERR_CERT_REVOKED, HandshakeFailure::Revoked},
      {X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, HandshakeFailure::UnknownCa},
      {X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT, HandshakeFailure::UnknownCa},
      {X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, HandshakeFailure::UnknownCa},
      {X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, HandshakeFailure::UnknownCa},
      {X509_V_ERR_CERT_SIGNATURE_FAILURE, HandshakeFailure::Chain},
      {X509_V_ERR_INVALID_CA, HandshakeFailure::Chain},
      {X509_V_ERR_INVALID_PURPOSE, HandshakeFailure::Chain},
      {X509_V_ERR_UNABLE_TO_GET_CRL, HandshakeFailure::CrlMissing},
      {X509_V_ERR_CRL_HAS_EXPIRED, HandshakeFailure::CrlExpired},
  };
  for (const auto& c : cases) {
    HandshakeEvidence e = tls_client();
    e.verify_error = c.verify;
    e.ssl_error = ssl_err(SSL_R_CERTIFICATE_VERIFY_FAILED);
    assert_int_equal(classify_handshake(e), c.want);
  }
}

static void ssl_reasons(void**) {
  struct {
    int reason;
    HandshakeFailure want;
  } cases[] = {
      {SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE, HandshakeFailure::NoClientCert},
      {SSL_R_UNSUPPORTED_PROTOCOL, HandshakeFailure::ProtocolVersion},
      {SSL_R_WRONG_VERSION_NUMBER, HandshakeFailure::ProtocolVersion},
      {SSL_R_TLSV1_ALERT_PROTOCOL_VERSION, HandshakeFailure::ProtocolVersion},
      {SSL_R_NO_SHARED_CIPHER, HandshakeFailure::NoSharedCipher},
      {SSL_R_HTTP_REQUEST, HandshakeFailure::NotTls},
      {SSL_R_HTTPS_PROXY_REQUEST, HandshakeFailure::NotTls},
      {SSL_R_CERTIFICATE_VERIFY_FAILED, HandshakeFailure::Chain},
      {SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC, HandshakeFailure::Other},
      // The agent refused our certificate: wrong --ca, a name the certificate lacks, expired.
      {SSL_R_TLSV1_ALERT_UNKNOWN_CA, HandshakeFailure::PeerRejectedServerCert},
      {SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN, HandshakeFailure::PeerRejectedServerCert},
      {SSL_R_SSLV3_ALERT_BAD_CERTIFICATE, HandshakeFailure::PeerRejectedServerCert},
      {SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED, HandshakeFailure::PeerRejectedServerCert},
  };
  for (const auto& c : cases) {
    HandshakeEvidence e = tls_client();
    e.ssl_error = ssl_err(c.reason);
    assert_int_equal(classify_handshake(e), c.want);
  }
  // An error from another library is "other".
  HandshakeEvidence e = tls_client();
  e.ssl_error = ERR_PACK(ERR_LIB_EVP, 0, 1);
  assert_int_equal(classify_handshake(e), HandshakeFailure::Other);
}

static void first_byte_and_timeouts_win(void**) {
  HandshakeEvidence e;
  e.first_byte = 'G';  // "GET / HTTP/1.1" on the TLS port, whatever OpenSSL then says
  e.ssl_error = ssl_err(SSL_R_WRONG_VERSION_NUMBER);
  assert_int_equal(classify_handshake(e), HandshakeFailure::NotTls);
  e.first_byte = 0x00;
  assert_int_equal(classify_handshake(e), HandshakeFailure::NotTls);
  HandshakeEvidence t = tls_client();
  t.timed_out = true;
  t.verify_error = X509_V_ERR_CERT_HAS_EXPIRED;
  assert_int_equal(classify_handshake(t), HandshakeFailure::Timeout);
  HandshakeEvidence silent;  // connected and said nothing
  silent.timed_out = true;
  assert_int_equal(classify_handshake(silent), HandshakeFailure::Timeout);
  HandshakeEvidence closed = tls_client();
  closed.closed_early = true;
  assert_int_equal(classify_handshake(closed), HandshakeFailure::Other);
  HandshakeEvidence shed = tls_client();  // made room for newer connections: that, whatever else it showed
  shed.shed = true;
  shed.timed_out = true;
  assert_int_equal(classify_handshake(shed), HandshakeFailure::Shed);
}

static void names(void**) {
  const char* want[] = {"expired",          "not_yet_valid",    "unknown_ca", "chain",   "revoked", "crl_missing", "crl_expired", "no_client_cert",
                        "protocol_version", "no_shared_cipher", "not_tls",    "timeout", "peer_rejected_server_cert", "shed", "other"};
  for (size_t i = 0; i < size_t(HandshakeFailure::Count); ++i)
    assert_string_equal(handshake_failure_name(HandshakeFailure(i)), want[i]);
  assert_string_equal(tls_version_name(0x0304).c_str(), "TLSv1.3");
  assert_string_equal(tls_version_name(0x0303).c_str(), "TLSv1.2");
  assert_string_equal(tls_version_name(0x7f1c).c_str(), "0x7f1c");
}

static void json_line(void**) {
  HandshakeEvidence e = tls_client();
  e.client = Endpoint{Ipv4{0x0a000005}, 40123};
  e.sni = "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f.tunnels.test";
  e.offered_versions = {0x0304, 0x0303};
  e.certificate = PeerCertificate{"CN=agent-1", "CN=test CA", "1004", "2021-01-01T00:00:00Z"};
  e.verify_error = X509_V_ERR_CERT_HAS_EXPIRED;
  e.openssl_reason = "certificate verify failed";
  // 2026-11-21T21:00:00.250Z
  const uint64_t t = 1795294800ull * 1000000000ull + 250000000ull;
  auto j = nlohmann::json::parse(handshake_failure_json(e, classify_handshake(e), t));
  assert_string_equal(j["time"].get<std::string>().c_str(), "2026-11-21T21:00:00.250Z");
  assert_string_equal(j["reason"].get<std::string>().c_str(), "expired");
  assert_string_equal(j["client"].get<std::string>().c_str(), "10.0.0.5:40123");
  assert_string_equal(j["tunnel"].get<std::string>().c_str(), "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f");
  assert_string_equal(j["sni"].get<std::string>().c_str(), e.sni.c_str());
  assert_int_equal(j["offered_versions"].size(), 2);
  assert_string_equal(j["offered_versions"][0].get<std::string>().c_str(), "TLSv1.3");
  assert_string_equal(j["certificate"]["subject"].get<std::string>().c_str(), "CN=agent-1");
  assert_string_equal(j["certificate"]["issuer"].get<std::string>().c_str(), "CN=test CA");
  assert_string_equal(j["certificate"]["serial"].get<std::string>().c_str(), "1004");
  assert_string_equal(j["certificate"]["not_after"].get<std::string>().c_str(), "2021-01-01T00:00:00Z");
  assert_string_equal(j["verify_error"].get<std::string>().c_str(), "certificate has expired");
  assert_string_equal(j["openssl_reason"].get<std::string>().c_str(), "certificate verify failed");
  // No SNI, no certificate: nulls, not missing keys.
  HandshakeEvidence bare;
  bare.first_byte = 'G';
  bare.openssl_reason = "http request";
  auto b = nlohmann::json::parse(handshake_failure_json(bare, classify_handshake(bare), t));
  assert_true(b["sni"].is_null());
  assert_true(b["tunnel"].is_null());
  assert_true(b["certificate"].is_null());
  assert_true(b["offered_versions"].empty());
  assert_string_equal(b["reason"].get<std::string>().c_str(), "not_tls");
}

// What an unauthenticated client sends (its SNI) may be any bytes: the line stays valid JSON and valid UTF-8
// (nlohmann's parser refuses anything else), bytes that are not UTF-8 become \u00XX, valid UTF-8 stays as it is,
// and a long name is cut.
static void hostile_sni_stays_valid_json(void**) {
  HandshakeEvidence e = tls_client();
  e.sni = "a\x80\xff\xc3\xa9\xed\xa0\x80\xf4\x90\x80\x80\x01\x7f\"\\z";
  auto j = nlohmann::json::parse(handshake_failure_json(e, HandshakeFailure::Other, 0));
  assert_string_equal(j["sni"].get<std::string>().c_str(),
                      "a\u0080\u00ff\u00e9\u00ed\u00a0\u0080\u00f4\u0090\u0080\u0080\u0001\u007f\"\\z");
  for (int b = 0; b < 256; ++b) {
    e.sni = std::string(3, char(b)) + std::string(1, char(255 - b));
    assert_true(nlohmann::json::parse(handshake_failure_json(e, HandshakeFailure::Other, 0)).is_object());  // throws on invalid UTF-8
  }
  e.sni = std::string(5000, 'x');
  auto k = nlohmann::json::parse(handshake_failure_json(e, HandshakeFailure::Other, 0));
  assert_int_equal(k["sni"].get<std::string>().size(), 256 + 3);
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(verify_errors), cmocka_unit_test(ssl_reasons), cmocka_unit_test(first_byte_and_timeouts_win),
      cmocka_unit_test(names),         cmocka_unit_test(json_line),
      cmocka_unit_test(hostile_sni_stays_valid_json),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
