#include "packet/tcp_segment.hpp"

#include <cstring>

#include "common/bytes.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"

namespace dptun {

TcpHandshakeOptions tcp_read_options(const uint8_t* tcp, size_t header_len) {
  TcpHandshakeOptions o;
  size_t i = kTcpHeaderLen;
  while (i < header_len) {
    const uint8_t kind = tcp[i];
    if (kind == 0) break;
    if (kind == 1) {
      ++i;
      continue;
    }
    if (i + 1 >= header_len) break;
    const uint8_t len = tcp[i + 1];
    if (len < 2 || i + len > header_len) break;
    const uint8_t* v = tcp + i + 2;
    if (kind == 2 && len == 4) o.mss = load_be16(v);
    else if (kind == 3 && len == 3) o.wscale = v[0] > 14 ? 14 : v[0];  // RFC 7323: larger shifts mean 14
    else if (kind == 4 && len == 2) o.sack_ok = true;
    else if (kind == 8 && len == 10) {
      o.has_ts = true;
      o.tsval = load_be32(v);
      o.tsecr = load_be32(v + 4);
    }
    i += len;
  }
  return o;
}

size_t tcp_write_timestamps(uint8_t* out, uint32_t tsval, uint32_t tsecr) {
  out[0] = 1;
  out[1] = 1;
  out[2] = 8;
  out[3] = 10;
  store_be32(out + 4, tsval);
  store_be32(out + 8, tsecr);
  return 12;
}

size_t tcp_write_handshake_options(uint8_t* out, const TcpHandshakeOptions& o) {
  size_t n = 0;
  if (o.mss) {
    out[n++] = 2;
    out[n++] = 4;
    store_be16(out + n, o.mss);
    n += 2;
  }
  // SACK-permitted and timestamps share a word as Linux sends them: SACK_PERM, TS (10) = 12 bytes.
  if (o.sack_ok && o.has_ts) {
    out[n++] = 4;
    out[n++] = 2;
    out[n++] = 8;
    out[n++] = 10;
    store_be32(out + n, o.tsval);
    store_be32(out + n + 4, o.tsecr);
    n += 8;
  } else if (o.has_ts) {
    n += tcp_write_timestamps(out + n, o.tsval, o.tsecr);
  } else if (o.sack_ok) {
    out[n++] = 1;
    out[n++] = 1;
    out[n++] = 4;
    out[n++] = 2;
  }
  if (o.wscale != 0xff) {
    out[n++] = 1;
    out[n++] = 3;
    out[n++] = 3;
    out[n++] = o.wscale;
  }
  return n;
}

size_t tcp_write_packet(std::span<uint8_t> out, const TcpSegmentSpec& s) {
  const size_t tcp_len = kTcpHeaderLen + s.options.size();
  const size_t total = kIpv4HeaderLen + tcp_len + s.payload.size();
  if (out.size() < total || s.options.size() > 40 || s.options.size() % 4 || total > 0xffff) return 0;
  uint8_t* ip = out.data();
  write_ipv4_header(ip, uint16_t(total), s.ip_id, kIpProtoTcp, s.src_ip, s.dst_ip);
  uint8_t* t = ip + kIpv4HeaderLen;
  store_be16(t, s.src_port);
  store_be16(t + 2, s.dst_port);
  store_be32(t + 4, s.seq);
  store_be32(t + 8, s.ack);
  t[12] = uint8_t((tcp_len / 4) << 4);
  t[13] = s.flags;
  store_be16(t + 14, s.window);
  store_be16(t + 16, 0);
  store_be16(t + 18, 0);
  if (!s.options.empty()) std::memcpy(t + kTcpHeaderLen, s.options.data(), s.options.size());
  if (!s.payload.empty()) std::memcpy(t + tcp_len, s.payload.data(), s.payload.size());
  store_be16(t + kTcpOffChecksum, ipv4_l4_checksum(s.src_ip, s.dst_ip, kIpProtoTcp, {t, tcp_len + s.payload.size()}));
  return total;
}

}  // namespace dptun
