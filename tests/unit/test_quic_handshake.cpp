// The pure parts of dpctld's QUIC handshake: connection-ID layout, ClientHello extension bodies, and TLS alerts
// mapped onto the failure categories the TCP port uses (control/quic_handshake.hpp).
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <nlohmann/json.hpp>

#include "tests/unit/cmocka.hpp"

#include "control/handshake_failure.hpp"
#include "control/quic_handshake.hpp"

using namespace dptun;
using dptun::test::from_hex;

static void connection_id_layout(void**) {
  const uint8_t tail[4] = {0xde, 0xad, 0xbe, 0xef};
  const auto cid = quic_cid(0x00008001, std::span<const uint8_t, 4>(tail, 4));
  const std::vector<uint8_t> want = from_hex("00008001deadbeef");
  assert_int_equal(cid.size(), 8);
  assert_memory_equal(cid.data(), want.data(), 8);
  assert_int_equal(*quic_cid_index(cid), 0x8001);
  const auto placeholder = quic_cid(kQuicUnassignedIndex, std::span<const uint8_t, 4>(tail, 4));
  assert_int_equal(*quic_cid_index(placeholder), 0);
  const uint8_t max[8] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
  assert_int_equal(*quic_cid_index(max), 0xffffffffu);
  assert_false(quic_cid_index(std::span<const uint8_t>(max, 7)).has_value());   // short headers carry exactly 8
  const uint8_t nine[9] = {};
  assert_false(quic_cid_index(nine).has_value());
}

static void alpn_lists(void**) {
  // RFC 7301 §3.1: "h3" and "dptun".
  auto names = parse_alpn_list(from_hex("0009" "026833" "05647074756e"));
  assert_true(names.has_value());
  assert_int_equal(names->size(), 2);
  assert_string_equal((*names)[0].c_str(), "h3");
  assert_string_equal((*names)[1].c_str(), "dptun");
  assert_false(parse_alpn_list(from_hex("")).has_value());
  assert_false(parse_alpn_list(from_hex("0000")).has_value());              // an empty list
  assert_false(parse_alpn_list(from_hex("0004026833")).has_value());        // list length larger than the body
  assert_false(parse_alpn_list(from_hex("0003" "046833")).has_value());     // a name running past the end
  assert_false(parse_alpn_list(from_hex("0003" "00" "0168")).has_value());  // an empty name
}

static void supported_versions(void**) {
  // GREASE (0x3a3a) left out; TLS 1.3 and 1.2 kept in order.
  auto v = parse_supported_versions(from_hex("06" "3a3a" "0304" "0303"));
  assert_int_equal(v.size(), 2);
  assert_int_equal(v[0], 0x0304);
  assert_int_equal(v[1], 0x0303);
  assert_int_equal(parse_supported_versions(from_hex("")).size(), 0);
  // A length byte larger than the body reads what is there, never past it.
  auto t = parse_supported_versions(from_hex("ff" "0304" "03"));
  assert_int_equal(t.size(), 1);
  assert_int_equal(t[0], 0x0304);
}

static void server_name(void**) {
  // list length 0x000e, host_name (0), length 0x000b, "example.net"
  assert_string_equal(parse_server_name(from_hex("000e" "00" "000b" "6578616d706c652e6e6574")).c_str(), "example.net");
  assert_string_equal(parse_server_name(from_hex("000e" "01" "000b" "6578616d706c652e6e6574")).c_str(), "");  // not a host_name
  assert_string_equal(parse_server_name(from_hex("000e" "00" "00ff" "6578")).c_str(), "");  // length past the end
  assert_string_equal(parse_server_name(from_hex("0001")).c_str(), "");
}

static void empty_certificate_message(void**) {
  assert_true(*tls13_certificate_is_empty(from_hex("00" "000000")));            // no context, no certificates
  assert_false(*tls13_certificate_is_empty(from_hex("00" "000005" "0000010000")));
  assert_true(*tls13_certificate_is_empty(from_hex("02" "abcd" "000000")));      // a request context
  assert_false(tls13_certificate_is_empty(from_hex("")).has_value());
  assert_false(tls13_certificate_is_empty(from_hex("05" "000000")).has_value()); // context past the end
  assert_false(tls13_certificate_is_empty(from_hex("00" "000009" "00")).has_value());  // list length wrong
}

static HandshakeFailure classify_alert(uint8_t alert, bool received) {
  HandshakeEvidence e;
  e.transport = "quic";
  e.ssl_error = openssl_error_for_alert(alert, received);
  return classify_handshake(e);
}

static void alerts_classify_like_tcp(void**) {
  // What dpctld's TLS stack refused (alerts it sent, RFC 8446 §6.2).
  assert_int_equal(classify_alert(116, false), HandshakeFailure::NoClientCert);  // certificate_required
  assert_int_equal(classify_alert(70, false), HandshakeFailure::ProtocolVersion);
  assert_int_equal(classify_alert(40, false), HandshakeFailure::NoSharedCipher);
  assert_int_equal(classify_alert(120, false), HandshakeFailure::Other);         // no_application_protocol
  assert_int_equal(openssl_error_for_alert(80, false), 0ul);                    // internal_error names nothing
  // What the agent refused (alerts it sent about dpctld's certificate), as OpenSSL reports them on TCP.
  for (uint8_t a : {42, 43, 44, 45, 46, 48}) assert_int_equal(classify_alert(a, true), HandshakeFailure::PeerRejectedServerCert);
  assert_int_equal(classify_alert(70, true), HandshakeFailure::ProtocolVersion);
  assert_int_equal(openssl_error_for_alert(48, true), ERR_PACK(ERR_LIB_SSL, 0, SSL_R_TLSV1_ALERT_UNKNOWN_CA));
  // A certificate that failed verification is classified by its X509_V_ERR, whatever alert went with it.
  HandshakeEvidence e;
  e.ssl_error = openssl_error_for_alert(42, false);
  e.verify_error = X509_V_ERR_CERT_REVOKED;
  assert_int_equal(classify_handshake(e), HandshakeFailure::Revoked);
  assert_string_equal(alert_reason_text(116, false).c_str(), "alert sent: certificate required");
  assert_string_equal(alert_reason_text(48, true).c_str(), "alert received: unknown CA");
  assert_string_equal(alert_reason_text(200, true).c_str(), "alert received: number 200");
}

static void json_line_names_transport(void**) {
  HandshakeEvidence e;
  e.transport = "quic";
  e.client = *Endpoint::parse("10.0.0.2:50000");
  e.offered_versions = {0x0304};
  e.offered_alpn = {"h3"};
  e.ssl_error = openssl_error_for_alert(116, false);
  e.openssl_reason = alert_reason_text(116, false);
  auto j = nlohmann::json::parse(handshake_failure_json(e, classify_handshake(e), 0));
  assert_string_equal(j["transport"].get<std::string>().c_str(), "quic");
  assert_string_equal(j["reason"].get<std::string>().c_str(), "no_client_cert");
  assert_string_equal(j["offered_alpn"][0].get<std::string>().c_str(), "h3");
  HandshakeEvidence t;  // the TCP port's lines say so, and carry no ALPN field
  auto k = nlohmann::json::parse(handshake_failure_json(t, HandshakeFailure::Timeout, 0));
  assert_string_equal(k["transport"].get<std::string>().c_str(), "tcp");
  assert_false(k.contains("offered_alpn"));
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(connection_id_layout), cmocka_unit_test(alpn_lists),
      cmocka_unit_test(supported_versions),   cmocka_unit_test(server_name),
      cmocka_unit_test(empty_certificate_message),
      cmocka_unit_test(alerts_classify_like_tcp), cmocka_unit_test(json_line_names_transport),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
