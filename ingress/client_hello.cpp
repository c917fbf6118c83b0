#include "ingress/client_hello.hpp"

#include <cstring>

namespace dptun {

namespace {

constexpr uint8_t kContentHandshake = 22;
constexpr uint8_t kClientHello = 1;
constexpr uint16_t kExtServerName = 0;

// A cursor over bytes that may stop short: `short_` marks running out (more bytes may come), `bad` a rule break.
struct Reader {
  const uint8_t* p;
  size_t left;
  bool short_ = false;
  bool need(size_t n) {
    if (left >= n) return true;
    short_ = true;
    return false;
  }
  bool u8(uint8_t& v) {
    if (!need(1)) return false;
    v = p[0];
    ++p;
    --left;
    return true;
  }
  bool u16(uint16_t& v) {
    if (!need(2)) return false;
    v = uint16_t(p[0] << 8 | p[1]);
    p += 2;
    left -= 2;
    return true;
  }
  bool u24(uint32_t& v) {
    if (!need(3)) return false;
    v = uint32_t(p[0]) << 16 | uint32_t(p[1]) << 8 | p[2];
    p += 3;
    left -= 3;
    return true;
  }
  bool skip(size_t n) {
    if (!need(n)) return false;
    p += n;
    left -= n;
    return true;
  }
};

}  // namespace

const char* sni_status_name(SniStatus s) {
  switch (s) {
    case SniStatus::Found: return "found";
    case SniStatus::NoName: return "no_name";
    case SniStatus::NeedMore: return "need_more";
    case SniStatus::NotTls: return "not_tls";
    case SniStatus::Malformed: return "malformed";
    case SniStatus::TooBig: return "too_big";
  }
  return "unknown";
}

bool plausible_hostname(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  char prev = '.';
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.';
    if (!ok || (c == '.' && prev == '.')) return false;
    prev = c;
  }
  return name.back() != '.' || name.size() > 1;
}

SniResult sni_from_handshake(std::span<const uint8_t> msg) {
  const SniResult more{SniStatus::NeedMore, {}}, bad{SniStatus::Malformed, {}};
  Reader r{msg.data(), msg.size()};
  uint8_t type;
  uint32_t len;
  if (!r.u8(type)) return more;
  if (type != kClientHello) return {SniStatus::NotTls, {}};
  if (!r.u24(len)) return more;
  if (len < 38 || len > kMaxClientHello) return len > kMaxClientHello ? SniResult{SniStatus::TooBig, {}} : bad;
  // Within the message from here on: a bound of `len` bytes, of which `r.left` may have arrived.
  const size_t have = r.left < len ? r.left : len;
  Reader b{r.p, have};
  const bool complete = have == len;
  auto stop = [&]() { return b.short_ && !complete ? more : bad; };
  uint8_t sid_len;
  uint16_t suites_len, ext_total;
  uint8_t comp_len;
  if (!b.skip(2 + 32) || !b.u8(sid_len) || sid_len > 32 || !b.skip(sid_len)) return b.short_ ? stop() : bad;
  if (!b.u16(suites_len) || suites_len < 2 || (suites_len & 1) || !b.skip(suites_len)) return b.short_ ? stop() : bad;
  if (!b.u8(comp_len) || comp_len < 1 || !b.skip(comp_len)) return b.short_ ? stop() : bad;
  if (b.left == 0 && complete) return {SniStatus::NoName, {}};  // no extensions at all
  if (!b.u16(ext_total)) return stop();
  if (complete && ext_total != b.left) return bad;
  while (b.left) {
    uint16_t ext_type, ext_len;
    if (!b.u16(ext_type) || !b.u16(ext_len)) return stop();
    if (ext_type != kExtServerName) {
      if (!b.skip(ext_len)) return stop();
      continue;
    }
    // server_name: list length, then entries of (type, length, name); host_name is type 0.
    if (!b.need(ext_len)) return stop();
    Reader e{b.p, ext_len};
    uint16_t list_len;
    if (!e.u16(list_len) || list_len != e.left) return bad;
    while (e.left) {
      uint8_t name_type;
      uint16_t name_len;
      if (!e.u8(name_type) || !e.u16(name_len) || !e.need(name_len)) return bad;
      if (name_type == 0) {
        std::string_view name(reinterpret_cast<const char*>(e.p), name_len);
        if (name.size() > 1 && name.back() == '.') name.remove_suffix(1);  // "example.com." is example.com
        return plausible_hostname(name) ? SniResult{SniStatus::Found, name} : SniResult{SniStatus::NoName, {}};
      }
      e.skip(name_len);
    }
    return {SniStatus::NoName, {}};
  }
  return complete ? SniResult{SniStatus::NoName, {}} : more;
}

bool tls_hello_complete(std::span<const uint8_t> stream, uint32_t& next_record, uint32_t& hello_bytes) {
  const size_t n = stream.size();
  size_t partial = 0;  // bytes of a record that has not arrived whole
  while (next_record + 5 <= n) {
    const uint8_t* rec = stream.data() + next_record;
    if (rec[0] != kContentHandshake || rec[1] != 3) return true;  // the reader refuses it
    const size_t rec_len = size_t(rec[3]) << 8 | rec[4];
    if (rec_len == 0 || rec_len > 16384 + 256) return true;
    if (next_record + 5 + rec_len > n) {
      partial = n - next_record - 5;
      break;
    }
    hello_bytes += uint32_t(rec_len);
    next_record += uint32_t(5 + rec_len);
  }
  const size_t have = hello_bytes + partial;
  if (have < 4) return false;
  // The message's type and length: its first 4 bytes, which may straddle records (at most 4 of them).
  uint8_t h[4];
  size_t got = 0;
  for (size_t off = 0; got < 4 && off + 5 <= n;) {
    const size_t rec_len = size_t(stream[off + 3]) << 8 | stream[off + 4];
    for (size_t k = 0; k < rec_len && off + 5 + k < n && got < 4; ++k) h[got++] = stream[off + 5 + k];
    off += 5 + rec_len;
  }
  if (got < 4 || h[0] != kClientHello) return true;
  const size_t len = size_t(h[1]) << 16 | size_t(h[2]) << 8 | h[3];
  return len > kMaxClientHello || have >= 4 + len;
}

SniResult sni_from_tls_stream(std::span<const uint8_t> stream, std::span<uint8_t> buffer) {
  // Gather the handshake bytes of consecutive handshake records into `buffer` until the ClientHello is
  // complete (or holds its server name already).
  size_t off = 0, got = 0;
  while (true) {
    if (stream.size() - off < 5) break;
    const uint8_t* rec = stream.data() + off;
    if (rec[0] != kContentHandshake) return {got ? SniStatus::Malformed : SniStatus::NotTls, {}};
    if (rec[1] != 3 || rec[2] > 4) return {got ? SniStatus::Malformed : SniStatus::NotTls, {}};
    const size_t rec_len = size_t(rec[3]) << 8 | rec[4];
    if (rec_len == 0 || rec_len > 16384 + 256) return {SniStatus::Malformed, {}};
    const size_t avail = stream.size() - off - 5 < rec_len ? stream.size() - off - 5 : rec_len;
    if (got + avail > buffer.size()) return {SniStatus::TooBig, {}};
    std::memcpy(buffer.data() + got, rec + 5, avail);
    got += avail;
    off += 5 + avail;
    if (avail < rec_len) break;  // the rest of this record is still on its way
    const SniResult r = sni_from_handshake(buffer.first(got));
    if (r.status != SniStatus::NeedMore) return r;
  }
  if (got == 0) {
    // Not even one record header: judge by what there is.
    if (!stream.empty() && stream[0] != kContentHandshake) return {SniStatus::NotTls, {}};
    if (stream.size() >= 2 && stream[1] != 3) return {SniStatus::NotTls, {}};
    return {SniStatus::NeedMore, {}};
  }
  return sni_from_handshake(buffer.first(got));
}

}  // namespace dptun
