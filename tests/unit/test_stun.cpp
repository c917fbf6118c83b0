// STUN's wire format (proto/stun.hpp, RFC 8489): RFC 5769's sample request and IPv4 response as typed in the RFC
// (their FINGERPRINTs checked, MESSAGE-INTEGRITY skipped, the request's PRIORITY an unknown comprehension-required
// attribute), the Binding success response for the RFC's mapped address 192.0.2.1:32853 byte for byte, the 420
// answer to the sample request, an RFC 3489 client's request as Debian's stun-client sends it, and the refusals:
// truncated, garbled, bad lengths, attributes running past the end, FINGERPRINT wrong or not last. The client side
// (dpagent's endpoint discovery): its Binding request byte for byte, the RFC's sample response read as the answer
// to the sample's transaction ID, and the answers it refuses or reads past. The connectivity checks of direct paths
// byte for byte, authenticated, tampered with, and what is not a check. Expected FINGERPRINTs not in the RFC
// were computed apart from this code (Python's zlib.crc32).
#include "proto/stun.hpp"

#include "tests/unit/cmocka.hpp"

#include <array>
#include <cstring>
#include <vector>

using namespace dptun;
using dptun::test::from_hex;

namespace {

// RFC 5769 2.1, Sample Request (software "STUN test client", username "evtj:h6vY", password "VOkJxbRl1RmTxUk/WvJxBt").
const std::vector<uint8_t> kSampleRequest = from_hex(
    "00010058"  // Request type and message length
    "2112a442"  // Magic cookie
    "b7e7a701bc34d686fa87dfae"  // Transaction ID
    "80220010" "5354554e207465737420636c69656e74"  // SOFTWARE
    "00240004" "6e0001ff"  // PRIORITY
    "80290008" "932ff9b151263b36"  // ICE-CONTROLLED
    "00060009" "6576746a3a68367659202020"  // USERNAME (9 bytes) and padding (3 bytes)
    "00080014" "9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"  // MESSAGE-INTEGRITY
    "80280004" "e57a3bcf");  // FINGERPRINT

// RFC 5769 2.2, Sample IPv4 Response (software "test vector", mapped address 192.0.2.1 port 32853).
const std::vector<uint8_t> kSampleResponse = from_hex(
    "0101003c"
    "2112a442"
    "b7e7a701bc34d686fa87dfae"
    "8022000b" "7465737420766563746f7220"  // SOFTWARE
    "00200008" "0001a147" "e112a643"  // XOR-MAPPED-ADDRESS
    "00080014" "2b91f599fd9e90c38c7489f92af9ba53f06be7d7"  // MESSAGE-INTEGRITY
    "80280004" "c07d4c96");  // FINGERPRINT

constexpr uint32_t kRfcMappedIp = 0xc0000201;  // 192.0.2.1
constexpr uint16_t kRfcMappedPort = 32853;

StunMessage parse_ok(const std::vector<uint8_t>& m, bool classic_ok = false) {
  StunError why = StunError::Count;
  auto msg = parse_stun(m, classic_ok, &why);
  if (!msg) fail_msg("parse_stun: %s", stun_error_name(why));
  assert_int_equal(int(why), int(StunError::Count));  // untouched on success
  return *msg;
}

void expect_refused(const std::vector<uint8_t>& m, StunError want, bool classic_ok = false) {
  StunError why = StunError::Count;
  const auto msg = parse_stun(m, classic_ok, &why);
  if (msg || why != want)
    fail_msg("expected %s, got %s", stun_error_name(want), msg ? "a message" : stun_error_name(why));
}

std::vector<uint8_t> respond(const StunMessage& req, uint32_t ip, uint16_t port) {
  std::vector<uint8_t> out(kStunMaxResponseLen);
  const size_t n = write_stun_response(out, req, ip, port);
  assert_int_equal(n, stun_response_len(req));
  out.resize(n);
  return out;
}

void sample_request(void**) {
  const StunMessage m = parse_ok(kSampleRequest);
  assert_int_equal(m.type, kStunBindingRequest);
  assert_true(m.is_binding_request());
  assert_int_equal(m.method(), kStunMethodBinding);
  assert_int_equal(m.message_class(), 0);
  assert_false(m.classic);
  assert_true(m.fingerprint);
  assert_memory_equal(m.id.data(), kSampleRequest.data() + 4, 16);
  // PRIORITY (0x0024, RFC 8445's) is comprehension-required and not STUN's own: unknown to a plain STUN server.
  // ICE-CONTROLLED (0x8029) is comprehension-optional; USERNAME understood; MESSAGE-INTEGRITY skipped.
  assert_int_equal(m.n_unknown, 1);
  assert_int_equal(m.unknown[0], 0x0024);
  assert_true(stun_has_cookie(kSampleRequest));
}

void sample_response(void**) {
  const StunMessage m = parse_ok(kSampleResponse);
  assert_int_equal(m.type, kStunBindingSuccess);
  assert_int_equal(m.message_class(), 2);
  assert_int_equal(m.method(), kStunMethodBinding);
  assert_false(m.is_binding_request());
  assert_true(m.fingerprint);
  assert_int_equal(m.n_unknown, 0);
}

// A Binding request of the sample's header and FINGERPRINT alone gets the success response with the RFC's
// XOR-MAPPED-ADDRESS bytes for 192.0.2.1:32853.
void success_response_for_rfc_address(void**) {
  const std::vector<uint8_t> req = from_hex("00010008" "2112a442" "b7e7a701bc34d686fa87dfae" "80280004" "fdf6ae02");
  const StunMessage m = parse_ok(req);
  assert_true(m.fingerprint);
  assert_int_equal(m.n_unknown, 0);
  const std::vector<uint8_t> out = respond(m, kRfcMappedIp, kRfcMappedPort);
  const std::vector<uint8_t> want = from_hex("01010014" "2112a442" "b7e7a701bc34d686fa87dfae"
                                             "00200008" "0001a147" "e112a643"  // as in RFC 5769 2.2
                                             "80280004" "7d281f59");
  assert_int_equal(out.size(), want.size());
  assert_memory_equal(out.data(), want.data(), want.size());
  // The RFC's response carries the same attribute bytes.
  assert_memory_equal(out.data() + 20, kSampleResponse.data() + 20 + 16, 12);
  // Written in place over the request's own bytes, the answer is the same.
  std::vector<uint8_t> in_place = req;
  in_place.resize(kStunMaxResponseLen);
  assert_int_equal(write_stun_response(in_place, m, kRfcMappedIp, kRfcMappedPort), want.size());
  assert_memory_equal(in_place.data(), want.data(), want.size());
  // A buffer too short is refused whole.
  std::vector<uint8_t> small(want.size() - 1);
  assert_int_equal(write_stun_response(small, m, kRfcMappedIp, kRfcMappedPort), 0);
}

// The sample request's PRIORITY: a 420 (Unknown Attribute) listing it (RFC 8489 6.3.1.1).
void unknown_attribute_answer(void**) {
  const std::vector<uint8_t> out = respond(parse_ok(kSampleRequest), kRfcMappedIp, kRfcMappedPort);
  const std::vector<uint8_t> want = from_hex(
      "0111002c" "2112a442" "b7e7a701bc34d686fa87dfae"
      "00090015" "00000414" "556e6b6e6f776e20417474726962757465000000"  // ERROR-CODE 420 "Unknown Attribute"
      "000a0002" "00240000"  // UNKNOWN-ATTRIBUTES: PRIORITY, padded
      "80280004" "bd47dc87");
  assert_int_equal(out.size(), want.size());
  assert_memory_equal(out.data(), want.data(), want.size());
  const StunMessage back = parse_ok(out);
  assert_int_equal(back.type, kStunBindingError);
  assert_int_equal(back.message_class(), 3);
  assert_true(back.fingerprint);
}

// Comprehension-required attributes not understood are listed in order, at most kStunMaxUnknown; optional ones and
// what follows MESSAGE-INTEGRITY (but FINGERPRINT) are not.
void unknown_attributes(void**) {
  std::vector<uint8_t> m = from_hex("00010000" "2112a442" "000102030405060708090a0b");
  auto add = [&](uint16_t type, const std::vector<uint8_t>& value) {
    m.push_back(uint8_t(type >> 8));
    m.push_back(uint8_t(type));
    m.push_back(uint8_t(value.size() >> 8));
    m.push_back(uint8_t(value.size()));
    m.insert(m.end(), value.begin(), value.end());
    while (m.size() % 4) m.push_back(0);
    m[2] = uint8_t((m.size() - 20) >> 8);
    m[3] = uint8_t(m.size() - 20);
  };
  add(0x8029, std::vector<uint8_t>(8, 1));  // ICE-CONTROLLED: optional
  add(kStunAttrChangeRequest, from_hex("00000000"));  // no change asked: understood
  add(kStunAttrUsername, from_hex("6162"));
  StunMessage r = parse_ok(m);
  assert_int_equal(r.n_unknown, 0);
  assert_int_equal(stun_response_len(r), 40);
  add(kStunAttrChangeRequest, from_hex("00000004"));  // change IP: dpgw cannot
  add(0x0024, from_hex("6e0001ff"));
  for (uint16_t t = 0x7ff0; t < 0x7ffa; ++t) add(t, {});
  r = parse_ok(m);
  assert_int_equal(r.n_unknown, kStunMaxUnknown);
  assert_int_equal(r.unknown[0], kStunAttrChangeRequest);
  assert_int_equal(r.unknown[1], 0x0024);
  assert_int_equal(r.unknown[2], 0x7ff0);
  assert_int_equal(r.unknown[7], 0x7ff5);
  assert_int_equal(stun_response_len(r), 20 + 28 + 4 + 16 + 8);
  const std::vector<uint8_t> out = respond(r, 0x0a000001, 1234);
  assert_int_equal(out.size(), 76);
  assert_true(out.size() <= kStunMaxResponseLen);
  assert_true(parse_ok(out).fingerprint);
  // After MESSAGE-INTEGRITY, an unknown attribute is ignored.
  m = from_hex("00010000" "2112a442" "000102030405060708090a0b");
  add(kStunAttrMessageIntegrity, std::vector<uint8_t>(20, 7));
  add(0x0030, from_hex("01020304"));
  r = parse_ok(m);
  assert_int_equal(r.n_unknown, 0);
  // An odd count of unknown types is padded: 3 types, 6 bytes, 8 with padding.
  m = from_hex("00010000" "2112a442" "000102030405060708090a0b");
  add(0x0031, {});
  add(0x0032, {});
  add(0x0033, {});
  r = parse_ok(m);
  assert_int_equal(r.n_unknown, 3);
  const std::vector<uint8_t> three = respond(r, 0x0a000001, 1234);
  assert_int_equal(three.size(), 20 + 28 + 4 + 8 + 8);
  assert_memory_equal(three.data() + 48, from_hex("000a0006003100320033" "0000").data(), 12);
}

// What Debian's stun-client (0.97, an RFC 3489 client) sends: no magic cookie, CHANGE-REQUEST. Read only where
// classic clients are allowed; answered with MAPPED-ADDRESS, the 16 ID bytes copied, no FINGERPRINT.
void classic_client(void**) {
  const std::vector<uint8_t> req = from_hex("00010008" "0169d331f507b509b6868c3acebfd46e" "00030004" "00000000");
  expect_refused(req, StunError::NotStun);
  assert_false(stun_has_cookie(req));
  const StunMessage m = parse_ok(req, true);
  assert_true(m.classic);
  assert_false(m.fingerprint);
  assert_int_equal(m.n_unknown, 0);
  const std::vector<uint8_t> out = respond(m, 0x0a630102, 25060);
  const std::vector<uint8_t> want = from_hex("0101000c" "0169d331f507b509b6868c3acebfd46e"
                                             "00010008" "000161e4" "0a630102");  // 10.99.1.2:25060
  assert_int_equal(out.size(), want.size());
  assert_memory_equal(out.data(), want.data(), want.size());
  // Asking for a change of port (stun-client's test III): dpgw has no other port to answer from.
  const std::vector<uint8_t> change = from_hex("00010008" "03179b12052ee94b46e7812f021e1841" "00030004" "00000002");
  const StunMessage c = parse_ok(change, true);
  assert_int_equal(c.n_unknown, 1);
  assert_int_equal(c.unknown[0], kStunAttrChangeRequest);
  const std::vector<uint8_t> err = respond(c, 0x0a630102, 25061);
  assert_int_equal(err.size(), 20 + 28 + 8);  // no FINGERPRINT for a classic client
  assert_int_equal(load_be16(err.data()), kStunBindingError);
  assert_memory_equal(err.data() + 4, change.data() + 4, 16);
  // UNKNOWN-ATTRIBUTES for an RFC 3489 client: one type, repeated (11.2.11: the length a multiple of 4).
  assert_int_equal(load_be16(err.data() + 48), kStunAttrUnknownAttributes);
  assert_int_equal(load_be16(err.data() + 50), 4);
  assert_int_equal(load_be16(err.data() + 52), kStunAttrChangeRequest);
  assert_int_equal(load_be16(err.data() + 54), kStunAttrChangeRequest);
}

void truncated_and_garbled(void**) {
  for (size_t n = 0; n < kSampleRequest.size(); ++n) {
    const std::vector<uint8_t> cut(kSampleRequest.begin(), kSampleRequest.begin() + long(n));
    expect_refused(cut, n < 20 ? StunError::TooShort : StunError::BadLength);
  }
  std::vector<uint8_t> m = kSampleRequest;
  m[0] |= 0x40;  // not STUN's top bits (an RTP or QUIC packet's)
  expect_refused(m, StunError::NotStun, true);
  m = kSampleRequest;
  m[5] ^= 1;  // no magic cookie where one is needed; with classic clients allowed, the FINGERPRINT is wrong then
  expect_refused(m, StunError::NotStun);
  expect_refused(m, StunError::BadFingerprint, true);
  assert_false(stun_has_cookie(m));
}

void bad_lengths(void**) {
  std::vector<uint8_t> m = kSampleRequest;
  m.push_back(0);  // a byte more than the header says
  expect_refused(m, StunError::BadLength);
  m = kSampleRequest;
  m[3] = 0x54;  // says 4 bytes fewer than there are
  expect_refused(m, StunError::BadLength);
  m = from_hex("00010002" "2112a442" "000102030405060708090a0b" "0000");  // not a multiple of 4
  expect_refused(m, StunError::BadLength);
}

void attribute_overrun(void**) {
  std::vector<uint8_t> m = kSampleRequest;
  m[20 + 20 + 8 + 12 + 3] = 0x30;  // USERNAME's length, past the end
  expect_refused(m, StunError::AttributeOverrun);
  // One byte of value whose padding would pass the end: a 1-byte attribute with no room for its value.
  expect_refused(from_hex("00010004" "2112a442" "000102030405060708090a0b" "80220001"), StunError::AttributeOverrun);
  // The last attribute exactly filling the message is fine.
  assert_int_equal(parse_ok(from_hex("00010008" "2112a442" "000102030405060708090a0b" "80220003" "61626300")).n_unknown,
                   0);
}

void fingerprint_checked(void**) {
  std::vector<uint8_t> m = kSampleRequest;
  m.back() ^= 0x01;  // the CRC itself
  expect_refused(m, StunError::BadFingerprint);
  m = kSampleRequest;
  m[24] ^= 0x20;  // a byte of SOFTWARE
  expect_refused(m, StunError::BadFingerprint);
  m = kSampleResponse;
  m[45] ^= 0x80;  // a byte of the RFC response's XOR-MAPPED-ADDRESS
  expect_refused(m, StunError::BadFingerprint);
  // Another attribute after FINGERPRINT.
  m = kSampleRequest;
  m.insert(m.end(), {0x80, 0x22, 0x00, 0x00});
  m[3] = uint8_t(m[3] + 4);
  expect_refused(m, StunError::FingerprintNotLast);
  // A FINGERPRINT of 8 bytes.
  expect_refused(from_hex("0001000c" "2112a442" "000102030405060708090a0b" "80280008" "0000000000000000"),
                 StunError::FingerprintNotLast);
}

void type_fields(void**) {
  StunMessage m;
  m.type = kStunBindingIndication;
  assert_int_equal(m.message_class(), 1);
  assert_int_equal(m.method(), 1);
  m.type = 0x0003;  // TURN Allocate request (RFC 8656)
  assert_int_equal(m.message_class(), 0);
  assert_int_equal(m.method(), 3);
  m.type = 0x3fff;  // every method bit and both class bits
  assert_int_equal(m.method(), 0xfff);
  assert_int_equal(m.message_class(), 3);
  for (int e = 0; e <= int(StunError::Count); ++e) assert_non_null(stun_error_name(StunError(e)));
}

StunTransactionId sample_id() {
  StunTransactionId id;
  std::memcpy(id.data(), kSampleRequest.data() + 8, id.size());
  return id;
}

void expect_answer_refused(const std::vector<uint8_t>& m, StunAnswerError want) {
  StunAnswerError why = StunAnswerError::Count;
  const auto a = parse_stun_binding_answer(m, sample_id(), &why);
  if (a || why != want)
    fail_msg("expected %s, got %s", stun_answer_error_name(want), a ? "an address" : stun_answer_error_name(why));
}

// The request dpagent sends: header, the ID, FINGERPRINT (0xfdf6ae02 by Python's zlib.crc32 ^ 0x5354554e).
void client_request(void**) {
  std::vector<uint8_t> out(kStunRequestLen);
  assert_int_equal(write_stun_binding_request(out, sample_id()), kStunRequestLen);
  const std::vector<uint8_t> want = from_hex("00010008" "2112a442" "b7e7a701bc34d686fa87dfae" "80280004" "fdf6ae02");
  assert_memory_equal(out.data(), want.data(), want.size());
  const StunMessage m = parse_ok(out);  // what dpgw's server reads
  assert_true(m.is_binding_request() && m.fingerprint && !m.has_unknown());
  std::vector<uint8_t> short_out(kStunRequestLen - 1);
  assert_int_equal(write_stun_binding_request(short_out, sample_id()), 0);
}

// RFC 5769's response answers the sample request: XOR-MAPPED-ADDRESS read, MESSAGE-INTEGRITY skipped.
void client_reads_sample_response(void**) {
  StunAnswerError why = StunAnswerError::Count;
  const auto a = parse_stun_binding_answer(kSampleResponse, sample_id(), &why);
  assert_true(a.has_value());
  assert_int_equal(a->ip, kRfcMappedIp);
  assert_int_equal(a->port, kRfcMappedPort);
  assert_int_equal(int(why), int(StunAnswerError::Count));
  // dpgw's own answer to dpagent's request reads back as the address dpgw saw.
  std::vector<uint8_t> req(kStunRequestLen);
  write_stun_binding_request(req, sample_id());
  const auto back = parse_stun_binding_answer(respond(parse_ok(req), 0xc6336407, 41000), sample_id());
  assert_true(back && back->ip == 0xc6336407 && back->port == 41000);
}

void client_refusals(void**) {
  std::vector<uint8_t> other = kSampleResponse;
  other[19] ^= 1;  // another transaction
  expect_answer_refused(other, StunAnswerError::Malformed);  // (its FINGERPRINT no longer matches)
  std::vector<uint8_t> no_fp(kSampleResponse.begin(), kSampleResponse.end() - 8);
  no_fp[3] = uint8_t(no_fp.size() - kStunHeaderLen);
  assert_true(parse_stun_binding_answer(no_fp, sample_id()).has_value());  // FINGERPRINT is optional
  no_fp[19] ^= 1;
  expect_answer_refused(no_fp, StunAnswerError::OtherTransaction);
  expect_answer_refused(kSampleRequest, StunAnswerError::OtherTransaction);  // a request is no answer
  // The 420 dpgw gives the sample request (it has PRIORITY) is an error response to the same ID.
  expect_answer_refused(respond(parse_ok(kSampleRequest), 1, 2), StunAnswerError::ErrorResponse);
  // A success with no address, with only an IPv6 one, or with one behind MESSAGE-INTEGRITY (ignored, 14.5).
  expect_answer_refused(from_hex("01010000" "2112a442" "b7e7a701bc34d686fa87dfae"), StunAnswerError::NoAddress);
  expect_answer_refused(from_hex("01010018" "2112a442" "b7e7a701bc34d686fa87dfae"
                                 "00200014" "0002a147" "0112a442b7e7a701bc34d686fa87dfae"),
                        StunAnswerError::NoAddress);
  expect_answer_refused(from_hex("01010024" "2112a442" "b7e7a701bc34d686fa87dfae"
                                 "00080014" "2b91f599fd9e90c38c7489f92af9ba53f06be7d7"
                                 "00200008" "0001a147" "e112a643"),
                        StunAnswerError::NoAddress);
  // An RFC 3489 answer (no magic cookie) is not one to our requests.
  expect_answer_refused(from_hex("0101000c" "b7e7a701bc34d686fa87dfae00000000" "00010008" "00018055" "c0000201"),
                        StunAnswerError::Malformed);
  expect_answer_refused(from_hex("0101"), StunAnswerError::Malformed);
  for (int e = 0; e <= int(StunAnswerError::Count); ++e) assert_non_null(stun_answer_error_name(StunAnswerError(e)));
}

// A server that sends MAPPED-ADDRESS only is read; with both, XOR-MAPPED-ADDRESS wins (NATs rewrite the plain one).
void client_mapped_address(void**) {
  const auto plain = parse_stun_binding_answer(
      from_hex("0101000c" "2112a442" "b7e7a701bc34d686fa87dfae" "00010008" "00018055" "c0000201"), sample_id());
  assert_true(plain && plain->ip == kRfcMappedIp && plain->port == kRfcMappedPort);
  const auto both = parse_stun_binding_answer(from_hex("01010018" "2112a442" "b7e7a701bc34d686fa87dfae"
                                                       "00010008" "00010001" "0a000001"
                                                       "00200008" "0001a147" "e112a643"),
                                              sample_id());
  assert_true(both && both->ip == kRfcMappedIp && both->port == kRfcMappedPort);
}

// Connectivity checks: the request and response for key 00 01 .. 1f, the sample's ID, pair 0x12345678 and the
// RFC's mapped address, byte for byte as Python's hmac and zlib make them (apart from this code).
const std::vector<uint8_t> kCheckRequest = from_hex(
    "0001003c2112a442b7e7a701bc34d686fa87dfae"
    "0006000a31323334353637383a630000"  // USERNAME "12345678:c"
    "001c0020382db8602fbd1a3fef199e19d7c80b2e3dbfe16e3ebb9c0b4e90929d9cea88aa"  // MESSAGE-INTEGRITY-SHA256
    "80280004a452aed3");
const std::vector<uint8_t> kCheckResponse = from_hex(
    "010100382112a442b7e7a701bc34d686fa87dfae"
    "002000080001a147e112a643"
    "001c00201ed443daba28797b6d7d4aa71d57c4caf7ec4304d0ead2dde141240dcde6e9f6"
    "80280004ad12d3c4");

std::array<uint8_t, kStunCheckKeyLen> check_key(uint8_t first = 0) {
  std::array<uint8_t, kStunCheckKeyLen> k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = uint8_t(first + i);
  return k;
}

void check_messages_byte_for_byte(void**) {
  const auto key = check_key();
  std::vector<uint8_t> req(kStunCheckRequestLen), resp(kStunCheckResponseLen);
  assert_int_equal(write_stun_check_request(req, sample_id(), 0x12345678, 'c', key), kStunCheckRequestLen);
  assert_memory_equal(req.data(), kCheckRequest.data(), kCheckRequest.size());
  assert_int_equal(write_stun_check_response(resp, sample_id(), kRfcMappedIp, kRfcMappedPort, key), kStunCheckResponseLen);
  assert_memory_equal(resp.data(), kCheckResponse.data(), kCheckResponse.size());
  // What is not a check's writer refuses to write.
  assert_int_equal(write_stun_check_request(req, sample_id(), 1, 'x', key), 0);
  std::vector<uint8_t> small(kStunCheckRequestLen - 1);
  assert_int_equal(write_stun_check_request(small, sample_id(), 1, 'c', key), 0);
  std::vector<uint8_t> small_resp(kStunCheckResponseLen - 1);
  assert_int_equal(write_stun_check_response(small_resp, sample_id(), 1, 2, key), 0);
}

void checks_read_and_authenticated(void**) {
  const auto key = check_key(), other = check_key(1);
  const auto req = parse_stun_check(kCheckRequest);
  assert_true(req && req->request && req->pair == 0x12345678 && req->role == 'c' && req->id == sample_id());
  assert_true(stun_check_authentic(kCheckRequest, *req, key));
  assert_false(stun_check_authentic(kCheckRequest, *req, other));
  const auto resp = parse_stun_check(kCheckResponse);
  assert_true(resp && !resp->request && resp->mapped.ip == kRfcMappedIp && resp->mapped.port == kRfcMappedPort);
  assert_true(stun_check_authentic(kCheckResponse, *resp, key));
  assert_false(stun_check_authentic(kCheckResponse, *resp, other));
  // A byte changed under the integrity (the FINGERPRINT made to match again): read, but not authentic.
  std::vector<uint8_t> t = kCheckRequest;
  t[24] ^= 1;  // the pair's first hex digit, '1' -> '0'
  store_be32(t.data() + t.size() - 4, stun_fingerprint({t.data(), t.size() - 8}));
  const auto tampered = parse_stun_check(t);
  assert_true(tampered && tampered->pair == 0x02345678);
  assert_false(stun_check_authentic(t, *tampered, key));
  // Not checks: no FINGERPRINT, no USERNAME, no integrity, a plain Binding request, an error, a malformed USERNAME.
  std::vector<uint8_t> no_fp(kCheckRequest.begin(), kCheckRequest.end() - 8);
  no_fp[3] = uint8_t(no_fp.size() - kStunHeaderLen);
  assert_false(parse_stun_check(no_fp).has_value());
  assert_false(parse_stun_check(kSampleRequest).has_value());  // MESSAGE-INTEGRITY (SHA-1), not SHA-256
  std::vector<uint8_t> plain(kStunRequestLen);
  write_stun_binding_request(plain, sample_id());
  assert_false(parse_stun_check(plain).has_value());
  std::vector<uint8_t> bad_user = kCheckRequest;
  bad_user[30] = 'G';  // not a hex digit
  store_be32(bad_user.data() + bad_user.size() - 4, stun_fingerprint({bad_user.data(), bad_user.size() - 8}));
  assert_false(parse_stun_check(bad_user).has_value());
  assert_false(parse_stun_check(respond(parse_ok(kSampleRequest), 1, 2)).has_value());  // a 420
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(sample_request),
      cmocka_unit_test(sample_response),
      cmocka_unit_test(success_response_for_rfc_address),
      cmocka_unit_test(unknown_attribute_answer),
      cmocka_unit_test(unknown_attributes),
      cmocka_unit_test(classic_client),
      cmocka_unit_test(truncated_and_garbled),
      cmocka_unit_test(bad_lengths),
      cmocka_unit_test(attribute_overrun),
      cmocka_unit_test(fingerprint_checked),
      cmocka_unit_test(type_fields),
      cmocka_unit_test(client_request),
      cmocka_unit_test(client_reads_sample_response),
      cmocka_unit_test(client_refusals),
      cmocka_unit_test(client_mapped_address),
      cmocka_unit_test(check_messages_byte_for_byte),
      cmocka_unit_test(checks_read_and_authenticated),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
