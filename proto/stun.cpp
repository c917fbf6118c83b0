#include "proto/stun.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <zlib.h>

#include <cstdio>
#include <cstring>

namespace dptun {

const char* stun_error_name(StunError e) {
  switch (e) {
    case StunError::TooShort: return "too_short";
    case StunError::NotStun: return "not_stun";
    case StunError::BadLength: return "bad_length";
    case StunError::AttributeOverrun: return "attribute_overrun";
    case StunError::FingerprintNotLast: return "fingerprint_not_last";
    case StunError::BadFingerprint: return "bad_fingerprint";
    case StunError::Count: break;
  }
  return "unknown";
}

uint32_t stun_fingerprint(std::span<const uint8_t> msg_up_to_it) {
  return uint32_t(crc32(0, msg_up_to_it.data(), uInt(msg_up_to_it.size()))) ^ kStunFingerprintXor;
}

namespace {

// A comprehension-required attribute the Binding server understands (StunMessage::unknown has the list and why).
bool understood(uint16_t type, const uint8_t* value, uint16_t len) {
  switch (type) {
    case kStunAttrMappedAddress:
    case kStunAttrUsername:
    case kStunAttrErrorCode:
    case kStunAttrUnknownAttributes:
    case kStunAttrRealm:
    case kStunAttrNonce:
    case kStunAttrPasswordAlgorithm:
    case kStunAttrUserhash:
    case kStunAttrXorMappedAddress:
      return true;
    case kStunAttrChangeRequest:  // flags: 0x4 change IP, 0x2 change port (RFC 5780 7.2)
      return len == 4 && (load_be32(value) & 0x6) == 0;
    default:
      return false;
  }
}

std::optional<StunMessage> fail(StunError e, StunError* why) {
  if (why) *why = e;
  return std::nullopt;
}

}  // namespace

std::optional<StunMessage> parse_stun(std::span<const uint8_t> msg, bool classic_ok, StunError* why) {
  const uint8_t* p = msg.data();
  const size_t size = msg.size();
  if (size < kStunHeaderLen) return fail(StunError::TooShort, why);
  if (p[0] & 0xc0) return fail(StunError::NotStun, why);
  const size_t len = load_be16(p + 2);
  if (len % 4 != 0 || len != size - kStunHeaderLen) return fail(StunError::BadLength, why);
  StunMessage m;
  m.classic = load_be32(p + 4) != kStunMagicCookie;
  if (m.classic && !classic_ok) return fail(StunError::NotStun, why);
  m.type = load_be16(p);
  std::memcpy(m.id.data(), p + 4, m.id.size());
  bool after_integrity = false;  // RFC 8489 14.5: what follows MESSAGE-INTEGRITY is ignored, but for these two
  for (size_t off = kStunHeaderLen; off < size;) {
    if (size - off < 4) return fail(StunError::AttributeOverrun, why);
    const uint16_t type = load_be16(p + off);
    const uint16_t vlen = load_be16(p + off + 2);
    const size_t padded = (size_t(vlen) + 3) & ~size_t(3);
    if (padded > size - off - 4) return fail(StunError::AttributeOverrun, why);
    const uint8_t* value = p + off + 4;
    if (type == kStunAttrFingerprint) {
      if (vlen != 4 || off + 8 != size) return fail(StunError::FingerprintNotLast, why);
      if (load_be32(value) != stun_fingerprint(msg.first(off))) return fail(StunError::BadFingerprint, why);
      m.fingerprint = true;
    } else if (type == kStunAttrMessageIntegrity || type == kStunAttrMessageIntegritySha256) {
      after_integrity = true;
    } else if (!after_integrity && type < 0x8000 && !understood(type, value, vlen)) {
      if (m.n_unknown < kStunMaxUnknown) m.unknown[m.n_unknown++] = type;
    }
    off += 4 + padded;
  }
  return m;
}

size_t stun_response_len(const StunMessage& req) {
  const size_t fingerprint = req.classic ? 0 : 8;
  if (!req.has_unknown()) return kStunHeaderLen + 12 + fingerprint;
  return kStunHeaderLen + 28 + 4 + ((2 * size_t(req.n_unknown) + 3) & ~size_t(3)) + fingerprint;
}

size_t write_stun_response(std::span<uint8_t> out, const StunMessage& req, uint32_t ip, uint16_t port) {
  const size_t total = stun_response_len(req);
  if (out.size() < total) return 0;
  uint8_t* o = out.data();
  store_be16(o, req.has_unknown() ? kStunBindingError : kStunBindingSuccess);
  store_be16(o + 2, uint16_t(total - kStunHeaderLen));
  std::memcpy(o + 4, req.id.data(), req.id.size());
  size_t off = kStunHeaderLen;
  if (!req.has_unknown()) {
    // RFC 8489 14.1 / 14.2: 0 | family 0x01 (IPv4) | port | address; XOR'd with the cookie's top 16 / 32 bits.
    store_be16(o + off, req.classic ? kStunAttrMappedAddress : kStunAttrXorMappedAddress);
    store_be16(o + off + 2, 8);
    o[off + 4] = 0;
    o[off + 5] = 0x01;
    store_be16(o + off + 6, req.classic ? port : uint16_t(port ^ (kStunMagicCookie >> 16)));
    store_be32(o + off + 8, req.classic ? ip : ip ^ kStunMagicCookie);
    off += 12;
  } else {
    // RFC 8489 14.8: 21 reserved bits, class 4, number 20, the reason phrase; 14.13: the types, padded.
    static constexpr char kReason[] = "Unknown Attribute";
    constexpr size_t kReasonLen = sizeof kReason - 1;  // 17: the value, 21 bytes, takes 24 with its padding
    store_be16(o + off, kStunAttrErrorCode);
    store_be16(o + off + 2, uint16_t(4 + kReasonLen));
    store_be16(o + off + 4, 0);
    o[off + 6] = 4;
    o[off + 7] = 20;
    std::memcpy(o + off + 8, kReason, kReasonLen);
    std::memset(o + off + 8 + kReasonLen, 0, 3);
    off += 28;
    const size_t list = 2 * size_t(req.n_unknown);
    const size_t padded = (list + 3) & ~size_t(3);
    for (size_t i = 0; i < req.n_unknown; ++i) store_be16(o + off + 4 + 2 * i, req.unknown[i]);
    store_be16(o + off, kStunAttrUnknownAttributes);
    if (req.classic && padded > list) {
      // RFC 3489 11.2.11: an odd count repeats one type, so that the length itself is a multiple of 4.
      store_be16(o + off + 4 + list, req.unknown[req.n_unknown - 1]);
      store_be16(o + off + 2, uint16_t(padded));
    } else {
      store_be16(o + off + 2, uint16_t(list));
      std::memset(o + off + 4 + list, 0, padded - list);
    }
    off += 4 + padded;
  }
  if (!req.classic) {
    store_be16(o + off, kStunAttrFingerprint);
    store_be16(o + off + 2, 4);
    store_be32(o + off + 4, stun_fingerprint({o, off}));
    off += 8;
  }
  return off;
}

size_t write_stun_binding_request(std::span<uint8_t> out, const StunTransactionId& id) {
  if (out.size() < kStunRequestLen) return 0;
  uint8_t* o = out.data();
  store_be16(o, kStunBindingRequest);
  store_be16(o + 2, 8);
  store_be32(o + 4, kStunMagicCookie);
  std::memcpy(o + 8, id.data(), id.size());
  store_be16(o + kStunHeaderLen, kStunAttrFingerprint);
  store_be16(o + kStunHeaderLen + 2, 4);
  store_be32(o + kStunHeaderLen + 4, stun_fingerprint({o, kStunHeaderLen}));
  return kStunRequestLen;
}

const char* stun_answer_error_name(StunAnswerError e) {
  switch (e) {
    case StunAnswerError::Malformed: return "malformed";
    case StunAnswerError::OtherTransaction: return "other_transaction";
    case StunAnswerError::ErrorResponse: return "error_response";
    case StunAnswerError::NoAddress: return "no_address";
    case StunAnswerError::Count: break;
  }
  return "unknown";
}

namespace {

std::optional<StunMapped> answer_fail(StunAnswerError e, StunAnswerError* why) {
  if (why) *why = e;
  return std::nullopt;
}

// An IPv4 (XOR-)MAPPED-ADDRESS value (RFC 8489 14.1, 14.2): 0 | family | port | address.
std::optional<StunMapped> read_address(const uint8_t* v, uint16_t len, bool xored) {
  if (len != 8 || v[1] != 0x01) return std::nullopt;  // IPv6 (0x02, 20 bytes) or garbage
  StunMapped m;
  m.port = load_be16(v + 2);
  m.ip = load_be32(v + 4);
  if (xored) {
    m.port ^= uint16_t(kStunMagicCookie >> 16);
    m.ip ^= kStunMagicCookie;
  }
  return m;
}

}  // namespace

std::optional<StunMapped> parse_stun_binding_answer(std::span<const uint8_t> msg, const StunTransactionId& id,
                                                    StunAnswerError* why) {
  const std::optional<StunMessage> m = parse_stun(msg, false);
  if (!m) return answer_fail(StunAnswerError::Malformed, why);
  if (std::memcmp(m->id.data() + 4, id.data(), id.size()) != 0 ||
      (m->type != kStunBindingSuccess && m->type != kStunBindingError))
    return answer_fail(StunAnswerError::OtherTransaction, why);
  if (m->type == kStunBindingError) return answer_fail(StunAnswerError::ErrorResponse, why);
  // parse_stun checked that every attribute lies within the message.
  std::optional<StunMapped> xored, plain;
  for (size_t off = kStunHeaderLen; off + 4 <= msg.size();) {
    const uint16_t type = load_be16(msg.data() + off);
    const uint16_t vlen = load_be16(msg.data() + off + 2);
    if (type == kStunAttrMessageIntegrity || type == kStunAttrMessageIntegritySha256) break;  // 14.5: ignore the rest
    if (type == kStunAttrXorMappedAddress && !xored) xored = read_address(msg.data() + off + 4, vlen, true);
    if (type == kStunAttrMappedAddress && !plain) plain = read_address(msg.data() + off + 4, vlen, false);
    off += 4 + ((size_t(vlen) + 3) & ~size_t(3));
  }
  if (xored) return xored;
  if (plain) return plain;
  return answer_fail(StunAnswerError::NoAddress, why);
}

namespace {

inline constexpr size_t kIntegrityLen = 32;  // MESSAGE-INTEGRITY-SHA256, untruncated

// HMAC-SHA256 of `key` over msg[0, at) with the header's length counting the MESSAGE-INTEGRITY-SHA256 at `at`
// (RFC 8489 14.6): the length is patched in a copy of the header.
bool check_hmac(std::span<const uint8_t> msg, size_t at, StunCheckKey key, uint8_t out[kIntegrityLen]) {
  uint8_t buf[256];
  if (at > sizeof buf || at < kStunHeaderLen || at > msg.size()) return false;
  std::memcpy(buf, msg.data(), at);
  store_be16(buf + 2, uint16_t(at + 4 + kIntegrityLen - kStunHeaderLen));
  unsigned len = 0;
  const bool ok = HMAC(EVP_sha256(), key.data(), int(key.size()), buf, at, out, &len) && len == kIntegrityLen;
  OPENSSL_cleanse(buf, at);
  return ok;
}

// Appends MESSAGE-INTEGRITY-SHA256 then FINGERPRINT at `off`, sets the header's length; returns the total.
size_t seal_check(uint8_t* o, size_t off, StunCheckKey key) {
  store_be16(o + 2, uint16_t(off + 4 + kIntegrityLen - kStunHeaderLen));
  store_be16(o + off, kStunAttrMessageIntegritySha256);
  store_be16(o + off + 2, uint16_t(kIntegrityLen));
  if (!check_hmac({o, off}, off, key, o + off + 4)) return 0;
  off += 4 + kIntegrityLen;
  store_be16(o + 2, uint16_t(off + 8 - kStunHeaderLen));
  store_be16(o + off, kStunAttrFingerprint);
  store_be16(o + off + 2, 4);
  store_be32(o + off + 4, stun_fingerprint({o, off}));
  return off + 8;
}

void write_check_header(uint8_t* o, uint16_t type, const StunTransactionId& id) {
  store_be16(o, type);
  store_be16(o + 2, 0);
  store_be32(o + 4, kStunMagicCookie);
  std::memcpy(o + 8, id.data(), id.size());
}

}  // namespace

size_t write_stun_check_request(std::span<uint8_t> out, const StunTransactionId& id, uint32_t pair, char role,
                                StunCheckKey key) {
  if (out.size() < kStunCheckRequestLen || (role != 'c' && role != 'd')) return 0;
  uint8_t* o = out.data();
  write_check_header(o, kStunBindingRequest, id);
  char user[11];
  std::snprintf(user, sizeof user, "%08x:%c", pair, role);
  store_be16(o + kStunHeaderLen, kStunAttrUsername);
  store_be16(o + kStunHeaderLen + 2, 10);
  std::memcpy(o + kStunHeaderLen + 4, user, 10);
  std::memset(o + kStunHeaderLen + 14, 0, 2);
  return seal_check(o, kStunHeaderLen + 16, key);
}

size_t write_stun_check_response(std::span<uint8_t> out, const StunTransactionId& id, uint32_t ip, uint16_t port,
                                 StunCheckKey key) {
  if (out.size() < kStunCheckResponseLen) return 0;
  uint8_t* o = out.data();
  write_check_header(o, kStunBindingSuccess, id);
  const size_t off = kStunHeaderLen;
  store_be16(o + off, kStunAttrXorMappedAddress);
  store_be16(o + off + 2, 8);
  o[off + 4] = 0;
  o[off + 5] = 0x01;
  store_be16(o + off + 6, uint16_t(port ^ (kStunMagicCookie >> 16)));
  store_be32(o + off + 8, ip ^ kStunMagicCookie);
  return seal_check(o, off + 12, key);
}

namespace {

std::optional<uint32_t> hex32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 8; ++i) {
    const uint8_t c = p[i];
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return std::nullopt;
    v = v << 4 | uint32_t(d);
  }
  return v;
}

}  // namespace

std::optional<StunCheck> parse_stun_check(std::span<const uint8_t> msg) {
  const std::optional<StunMessage> m = parse_stun(msg, false);
  if (!m || !m->fingerprint) return std::nullopt;
  if (m->type != kStunBindingRequest && m->type != kStunBindingSuccess) return std::nullopt;
  StunCheck c;
  c.request = m->type == kStunBindingRequest;
  std::memcpy(c.id.data(), msg.data() + 8, c.id.size());
  bool user = false, mapped = false;
  for (size_t off = kStunHeaderLen; off + 4 <= msg.size();) {  // parse_stun checked the attributes' bounds
    const uint16_t type = load_be16(msg.data() + off);
    const uint16_t vlen = load_be16(msg.data() + off + 2);
    const uint8_t* v = msg.data() + off + 4;
    if (type == kStunAttrMessageIntegritySha256) {
      if (vlen != kIntegrityLen) return std::nullopt;
      c.integrity_at = off;
      break;  // 14.6: only FINGERPRINT may follow (checked above: parse_stun verified it and that it is last)
    }
    if (type == kStunAttrUsername && c.request && vlen == 10 && v[8] == ':' && (v[9] == 'c' || v[9] == 'd')) {
      const std::optional<uint32_t> pair = hex32(v);
      if (!pair) return std::nullopt;
      c.pair = *pair;
      c.role = char(v[9]);
      user = true;
    }
    if (type == kStunAttrXorMappedAddress && !c.request && vlen == 8 && v[1] == 0x01) {
      c.mapped.port = uint16_t(load_be16(v + 2) ^ (kStunMagicCookie >> 16));
      c.mapped.ip = load_be32(v + 4) ^ kStunMagicCookie;
      mapped = true;
    }
    off += 4 + ((size_t(vlen) + 3) & ~size_t(3));
  }
  if (!c.integrity_at || (c.request ? !user : !mapped)) return std::nullopt;
  // Nothing but FINGERPRINT after MESSAGE-INTEGRITY-SHA256: the integrity covers everything we read.
  if (c.integrity_at + 4 + kIntegrityLen + 8 != msg.size()) return std::nullopt;
  return c;
}

bool stun_check_authentic(std::span<const uint8_t> msg, const StunCheck& check, StunCheckKey key) {
  uint8_t want[kIntegrityLen];
  if (check.integrity_at + 4 + kIntegrityLen > msg.size()) return false;
  if (!check_hmac(msg, check.integrity_at, key, want)) return false;
  const bool ok = CRYPTO_memcmp(want, msg.data() + check.integrity_at + 4, kIntegrityLen) == 0;
  OPENSSL_cleanse(want, sizeof want);
  return ok;
}

}  // namespace dptun
