// STUN messages (proto/stun.hpp, RFC 8489): the input is a UDP payload as a dpgw worker would get it on the STUN
// port (classic RFC 3489 clients allowed) and on the tunnel or QUIC port (the magic cookie required).
// Properties: what the cookie-requiring read accepts, the other accepts the same way; an accepted message has a
// whole header, a length that is the input's, at most kStunMaxUnknown unknown attributes listed, `classic` exactly
// when the cookie is absent; the answer to a Binding request fits kStunMaxResponseLen, is the same written apart or
// over the request's own bytes, reads back (its FINGERPRINT verifying) as a Binding success carrying the client's
// address and port, or a 420 when the request had unknown attributes; a refusal has a reason. Client side
// (parse_stun_binding_answer), the input taken as the answer to the transaction ID it carries: what it takes the
// strict read takes as a Binding success, and the same bytes under another ID are refused; a success response
// written here reads back as the address it carries. Connectivity checks (parse_stun_check): what it takes the strict
// read takes, its integrity ends the message but for FINGERPRINT, and written again with a key it reads back the
// same and is authentic with that key and no other.
#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "fuzz/fuzz.hpp"
#include "proto/stun.hpp"

using namespace dptun;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  StunError why = StunError::Count;
  const auto strict = parse_stun(in, false, &why);
  if (!strict) FUZZ_CHECK(why != StunError::Count);
  if (size >= kStunHeaderLen) {
    StunTransactionId id;
    std::memcpy(id.data(), data + 8, id.size());
    StunAnswerError answer_why = StunAnswerError::Count;
    const auto mapped = parse_stun_binding_answer(in, id, &answer_why);
    if (mapped) {
      FUZZ_CHECK(strict && strict->type == kStunBindingSuccess);
      id[0] ^= 1;
      answer_why = StunAnswerError::Count;
      FUZZ_CHECK(!parse_stun_binding_answer(in, id, &answer_why) && answer_why == StunAnswerError::OtherTransaction);
    } else {
      FUZZ_CHECK(answer_why != StunAnswerError::Count);
    }
  }
  if (const auto c = parse_stun_check(in)) {
    FUZZ_CHECK(strict && c->integrity_at + 4 + 32 + 8 == size);
    FUZZ_CHECK(!c->request || c->role == 'c' || c->role == 'd');
    std::array<uint8_t, kStunCheckKeyLen> key{};
    (void)stun_check_authentic(in, *c, key);
    std::vector<uint8_t> w(kStunCheckRequestLen);
    const size_t n = c->request ? write_stun_check_request(w, c->id, c->pair, c->role, key)
                                : write_stun_check_response(w, c->id, c->mapped.ip, c->mapped.port, key);
    FUZZ_CHECK(n != 0);
    w.resize(n);
    const auto back = parse_stun_check(w);
    FUZZ_CHECK(back && back->request == c->request && back->id == c->id && back->pair == c->pair &&
               back->mapped.ip == c->mapped.ip && back->mapped.port == c->mapped.port);
    FUZZ_CHECK(stun_check_authentic(w, *back, key));
    key[31] ^= 1;
    FUZZ_CHECK(!stun_check_authentic(w, *back, key));
  }
  why = StunError::Count;
  const auto m = parse_stun(in, true, &why);
  if (!m) {
    FUZZ_CHECK(why != StunError::Count);
    FUZZ_CHECK(!strict);
    FUZZ_LOG("refused: %s\n", stun_error_name(why));
    return 0;
  }
  FUZZ_CHECK(size >= kStunHeaderLen && size % 4 == 0 && load_be16(data + 2) == size - kStunHeaderLen);
  FUZZ_CHECK(m->classic == !stun_has_cookie(in));
  FUZZ_CHECK(m->n_unknown <= kStunMaxUnknown);
  FUZZ_CHECK(std::memcmp(m->id.data(), data + 4, 16) == 0);
  if (strict) {
    FUZZ_CHECK(!m->classic && strict->type == m->type && strict->n_unknown == m->n_unknown &&
               strict->fingerprint == m->fingerprint);
  } else {
    FUZZ_CHECK(m->classic);
  }
  FUZZ_LOG("type 0x%04x classic %d fingerprint %d unknown %u\n", m->type, m->classic, m->fingerprint, m->n_unknown);
  if (!m->is_binding_request()) return 0;
  const uint32_t ip = 0x0a000000u | uint32_t(size);
  const uint16_t port = uint16_t(40000 + size);
  std::vector<uint8_t> out(kStunMaxResponseLen);
  const size_t n = write_stun_response(out, *m, ip, port);
  FUZZ_CHECK(n == stun_response_len(*m) && n <= kStunMaxResponseLen && n >= kStunHeaderLen + 12);
  std::vector<uint8_t> over(data, data + size);
  over.resize(std::max(size, kStunMaxResponseLen));
  FUZZ_CHECK(write_stun_response(over, *m, ip, port) == n && std::memcmp(over.data(), out.data(), n) == 0);
  out.resize(n);
  const auto back = parse_stun(out, m->classic);
  FUZZ_CHECK(back && back->classic == m->classic && back->fingerprint == !m->classic && back->id == m->id);
  if (m->has_unknown()) {
    FUZZ_CHECK(back->type == kStunBindingError);
  } else {
    FUZZ_CHECK(back->type == kStunBindingSuccess && back->n_unknown == 0);
    const uint16_t got_port = load_be16(out.data() + 26);
    const uint32_t got_ip = load_be32(out.data() + 28);
    FUZZ_CHECK(m->classic ? got_ip == ip && got_port == port
                          : (got_ip ^ kStunMagicCookie) == ip && uint16_t(got_port ^ (kStunMagicCookie >> 16)) == port);
    if (!m->classic) {
      StunTransactionId id;
      std::memcpy(id.data(), m->id.data() + 4, id.size());
      const auto mapped = parse_stun_binding_answer(out, id);
      FUZZ_CHECK(mapped && mapped->ip == ip && mapped->port == port);
    }
  }
  return 0;
}
