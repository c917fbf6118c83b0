// A QUIC server for tests/e2e/test_agent_quic_datagrams.sh that stands where dpctld and dpgw stand for one dpagent
// --transport quic: ngtcp2 (a standard QUIC stack, not dptun's code) with GnuTLS and the given certificate, ALPN
// "dptun". It answers the agent's registration line with a `registered` reply carrying "framing":"quic" (or not,
// --framing relay), and once the agent acknowledged it, it sends inner UDP packets in DATAGRAM frames, one per size
// given, from --source to --target for flow --flow, built here byte by byte from docs/protocol.md ("Inner header",
// not dptun's code): 8-byte flow id, protocol 17, flags FLOW_NEW, 2 reserved bytes, then the IPv4/UDP packet.
// Something at --target in the agent's namespace echoes them (a size written SIZEx3 goes to the next port, where the
// echo carries the payload three times: bigger than the agent's TUN MTU, so the agent sends it on in inner IPv4
// fragments); the agent sends the echoes back as DATAGRAM frames, which this program checks: inner header (the
// flow's tag, protocol 17), a UDP packet from the target carrying the expected payload, whole or in inner IPv4
// fragments it puts together. One line on stdout per echo:
//   echo SIZE ok (N datagrams, largest D bytes)
// then "all echoed" and, with --hold S, it keeps the connection S seconds more (answering PINGs) before it exits 0.
// Exits 1 when an echo does not come within 3 s (after 3 sends) or does not match, or the connection fails.
//
//   quic_datagram_peer --listen IP:PORT --cert CERT --key KEY --session N --gateway IP:PORT --flow TAG
//                      --source IP:PORT --target IP:PORT --sizes N[x3],... [--framing quic|relay] [--hold S]
#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/ngtcp2_callbacks.hpp"

namespace {

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

struct Addr {
  uint32_t ip = 0;  // host order
  uint16_t port = 0;
};
bool parse_addr(const std::string& s, Addr& a) {
  const size_t colon = s.rfind(':');
  in_addr in{};
  if (colon == std::string::npos || inet_pton(AF_INET, s.substr(0, colon).c_str(), &in) != 1) return false;
  a.ip = ntohl(in.s_addr);
  a.port = uint16_t(std::stoi(s.substr(colon + 1)));
  return true;
}

uint16_t be16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
uint32_t be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }
void put16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v >> 8);
  p[1] = uint8_t(v);
}
void put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (24 - 8 * i));
}
uint16_t ip_checksum(const uint8_t* p, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += be16(p + i);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return uint16_t(~sum);
}

struct Peer {
  ngtcp2_crypto_conn_ref ref{};
  ngtcp2_conn* conn = nullptr;
  gnutls_session_t tls = nullptr;
  gnutls_certificate_credentials_t cred = nullptr;
  int fd = -1;
  sockaddr_in local{}, remote{};
  std::string in, out;  // the stream's bytes; `out` kept until the end (ngtcp2 refers to it until acknowledged)
  int64_t stream = -1;
  size_t sent = 0;
  bool replied = false, reply_acked = false;
  // The probes.
  std::vector<std::vector<uint8_t>> pending;  // DATAGRAM data to send
  std::vector<uint8_t> expect;                // the UDP payload the current echo must carry
  std::map<uint32_t, std::vector<uint8_t>> frags;  // inner fragments of the echo: offset -> bytes
  uint32_t frag_total = 0;                    // the UDP datagram's length once the last fragment came
  size_t datagrams = 0, largest = 0;
  bool echoed = false;
  std::string error;
  Addr source, target;
  uint16_t port = 0;  // the target port of the current probe
  uint32_t flow = 0;
  ~Peer() {
    if (conn) ngtcp2_conn_del(conn);
    if (tls) gnutls_deinit(tls);
    if (cred) gnutls_certificate_free_credentials(cred);
    if (fd >= 0) close(fd);
  }
};

ngtcp2_conn* get_conn(ngtcp2_crypto_conn_ref* ref) { return static_cast<Peer*>(ref->user_data)->conn; }

std::string g_reply;

int recv_stream(ngtcp2_conn* conn, uint32_t, int64_t id, uint64_t, const uint8_t* data, size_t len, void* user, void*) {
  auto* p = static_cast<Peer*>(user);
  ngtcp2_conn_extend_max_stream_offset(conn, id, len);
  ngtcp2_conn_extend_max_offset(conn, len);
  p->in.append(reinterpret_cast<const char*>(data), len);
  if (!p->replied && p->in.find('\n') != std::string::npos) {
    fprintf(stderr, "quic_datagram_peer: registration: %s", p->in.c_str());
    p->stream = id;
    p->out = g_reply + "\n";
    p->replied = true;
  }
  return 0;
}

int acked(ngtcp2_conn*, int64_t id, uint64_t offset, uint64_t len, void* user, void*) {
  auto* p = static_cast<Peer*>(user);
  if (id == p->stream && p->replied && offset + len >= p->out.size()) p->reply_acked = true;
  return 0;
}

// An echo from the agent: inner header, then the IPv4/UDP packet (or a fragment of it) from the target.
int recv_datagram(ngtcp2_conn*, uint32_t, const uint8_t* d, size_t len, void* user) {
  auto* p = static_cast<Peer*>(user);
  p->datagrams++;
  p->largest = std::max(p->largest, len);
  if (len < 12 + 20) {
    p->error = "a DATAGRAM frame of " + std::to_string(len) + " bytes";
    return 0;
  }
  uint64_t flow = 0;
  for (int i = 0; i < 8; ++i) flow = flow << 8 | d[i];
  if (flow != p->flow || d[8] != 17) {
    p->error = "inner header: flow " + std::to_string(flow) + " protocol " + std::to_string(d[8]);
    return 0;
  }
  const uint8_t* ip = d + 12;
  const size_t hl = size_t(ip[0] & 0x0f) * 4;
  const size_t total = be16(ip + 2);
  if ((ip[0] >> 4) != 4 || total > len - 12 || ip[9] != 17 || be32(ip + 12) != p->target.ip) {
    char b[160];
    snprintf(b, sizeof b, "inner packet: not IPv4/UDP from the target (%zu bytes: version %u, total %zu, protocol %u, from %08x)",
             len - 12, unsigned(ip[0] >> 4), total, unsigned(ip[9]), be32(ip + 12));
    p->error = b;
    return 0;
  }
  const uint16_t fo = be16(ip + 6);
  const uint32_t offset = uint32_t(fo & 0x1fff) * 8;
  const bool more = fo & 0x2000;
  p->frags[offset].assign(ip + hl, ip + total);
  if (!more) p->frag_total = offset + uint32_t(total - hl);
  if (!p->frag_total) return 0;
  std::vector<uint8_t> udp;
  for (const auto& [off, bytes] : p->frags) {
    if (off != udp.size()) return 0;  // a hole: more to come
    udp.insert(udp.end(), bytes.begin(), bytes.end());
  }
  if (udp.size() != p->frag_total) return 0;
  if (udp.size() < 8 || be16(udp.data()) != p->port ||
      !std::equal(udp.begin() + 8, udp.end(), p->expect.begin(), p->expect.end())) {
    p->error = "the echo's UDP datagram differs from what was sent (" + std::to_string(udp.size()) + " bytes)";
    return 0;
  }
  p->echoed = true;
  return 0;
}

// The DATAGRAM data of an inner UDP packet of `size` bytes (IPv4 header included), as protocol.md lays it out.
std::vector<uint8_t> probe(Peer& p, size_t size, uint16_t id, int repeat) {
  p.port = uint16_t(p.target.port + (repeat > 1 ? 1 : 0));
  std::vector<uint8_t> d(12 + size);
  for (int i = 0; i < 8; ++i) d[i] = uint8_t(uint64_t(p.flow) >> (56 - 8 * i));
  d[8] = 17;
  d[9] = 0x01;  // FLOW_NEW
  uint8_t* ip = d.data() + 12;
  ip[0] = 0x45;
  put16(ip + 2, uint16_t(size));
  put16(ip + 4, id);
  ip[8] = 64;
  ip[9] = 17;
  put32(ip + 12, p.source.ip);
  put32(ip + 16, p.target.ip);
  put16(ip + 10, ip_checksum(ip, 20));
  uint8_t* udp = ip + 20;
  put16(udp, p.source.port);
  put16(udp + 2, p.port);
  put16(udp + 4, uint16_t(size - 20));
  put16(udp + 6, 0);  // no checksum (RFC 768)
  for (size_t i = 28; i < size; ++i) ip[i] = uint8_t(i * 7 + id);
  p.expect.clear();
  for (int r = 0; r < repeat; ++r) p.expect.insert(p.expect.end(), ip + 28, ip + size);
  return d;
}

constexpr size_t kMaxUdpPayload = 1472;  // a 1500-byte link

bool flush(Peer& p) {
  uint8_t buf[kMaxUdpPayload];
  for (int round = 0; round < 64; ++round) {
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi{};
    ngtcp2_ssize n;
    if (!p.pending.empty()) {
      ngtcp2_vec v{p.pending.front().data(), p.pending.front().size()};
      int accepted = 0;
      n = ngtcp2_conn_writev_datagram(p.conn, &ps.path, &pi, buf, sizeof buf, &accepted,
                                      NGTCP2_WRITE_DATAGRAM_FLAG_NONE, 0, &v, 1, now_ns());
      if (accepted) p.pending.erase(p.pending.begin());
    } else {
      ngtcp2_vec vec{};
      const bool data = p.stream >= 0 && p.sent < p.out.size();
      if (data) vec = {reinterpret_cast<uint8_t*>(p.out.data()) + p.sent, p.out.size() - p.sent};
      ngtcp2_ssize taken = -1;
      n = ngtcp2_conn_writev_stream(p.conn, &ps.path, &pi, buf, sizeof buf, &taken, NGTCP2_WRITE_STREAM_FLAG_NONE,
                                    data ? p.stream : -1, data ? &vec : nullptr, data ? 1 : 0, now_ns());
      if (taken > 0) p.sent += size_t(taken);
    }
    if (n < 0) {
      fprintf(stderr, "quic_datagram_peer: write: %s\n", ngtcp2_strerror(int(n)));
      return false;
    }
    if (n == 0) return true;
    send(p.fd, buf, size_t(n), 0);
  }
  return true;
}

// Serves the connection until `done` says so or `deadline`; false when the connection fails.
template <class Done>
bool serve(Peer& p, const ngtcp2_path& path, uint64_t deadline, Done done) {
  while (!done()) {
    if (now_ns() >= deadline) return true;
    const uint64_t expiry = ngtcp2_conn_get_expiry(p.conn), t = now_ns();
    const int wait_ms = expiry <= t ? 0 : int(std::min<uint64_t>((expiry - t) / 1'000'000 + 1, 50));
    pollfd pf{p.fd, POLLIN, 0};
    if (poll(&pf, 1, wait_ms) > 0) {
      uint8_t buf[65536];
      ssize_t n;
      while ((n = recv(p.fd, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
        ngtcp2_pkt_info pi{};
        if (const int rv = ngtcp2_conn_read_pkt(p.conn, &path, &pi, buf, size_t(n), now_ns()); rv != 0) {
          fprintf(stderr, "quic_datagram_peer: connection ended: %s\n", ngtcp2_strerror(rv));
          return false;
        }
      }
    }
    if (ngtcp2_conn_get_expiry(p.conn) <= now_ns() && ngtcp2_conn_handle_expiry(p.conn, now_ns()) != 0) {
      fprintf(stderr, "quic_datagram_peer: connection timed out\n");
      return false;
    }
    if (!flush(p)) return false;
  }
  return true;
}

int usage() {
  fprintf(stderr, "usage: quic_datagram_peer --listen IP:PORT --cert CERT --key KEY --session N --gateway IP:PORT "
                  "--flow TAG --source IP:PORT --target IP:PORT --sizes N,... [--framing quic|relay] [--hold S]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen, cert, key, gateway, sizes_arg, framing = "quic";
  unsigned session = 0;
  double hold = 0;
  Peer p;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--listen") listen = next();
    else if (a == "--cert") cert = next();
    else if (a == "--key") key = next();
    else if (a == "--session") session = unsigned(std::stoul(next()));
    else if (a == "--gateway") gateway = next();
    else if (a == "--flow") p.flow = uint32_t(std::stoul(next()));
    else if (a == "--source") {
      if (!parse_addr(next(), p.source)) return usage();
    } else if (a == "--target") {
      if (!parse_addr(next(), p.target)) return usage();
    } else if (a == "--sizes") sizes_arg = next();
    else if (a == "--framing") framing = next();
    else if (a == "--hold") hold = std::stod(next());
    else return usage();
  }
  Addr at;
  if (!parse_addr(listen, at) || cert.empty() || key.empty() || !session || gateway.empty()) return usage();
  std::vector<std::pair<size_t, int>> sizes;  // inner packet size, echo repeat
  std::stringstream ss(sizes_arg);
  for (std::string s; std::getline(ss, s, ',');)
    sizes.emplace_back(std::stoul(s), s.find("x3") != std::string::npos ? 3 : 1);
  g_reply = "{\"type\":\"registered\",\"session\":" + std::to_string(session) + ",\"gateway\":\"" + gateway +
            "\",\"cipher\":\"aes-128-gcm\",\"keepalive\":0.5" +
            (framing == "quic" ? std::string(",\"framing\":\"quic\"") : std::string()) + "}";

  p.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  p.local.sin_family = AF_INET;
  p.local.sin_addr.s_addr = htonl(at.ip);
  p.local.sin_port = htons(at.port);
  if (p.fd < 0 || bind(p.fd, reinterpret_cast<sockaddr*>(&p.local), sizeof p.local) != 0) {
    perror("quic_datagram_peer: bind");
    return 1;
  }
  printf("listening\n");
  fflush(stdout);
  // The agent's first Initial (within 60 s; packets of an earlier connection are ignored).
  uint8_t first[65536];
  ssize_t n0 = 0;
  ngtcp2_pkt_hd hd;
  for (const uint64_t end = now_ns() + 60'000'000'000ull;;) {
    pollfd pf{p.fd, POLLIN, 0};
    if (now_ns() >= end || poll(&pf, 1, 100) < 0) {
      fprintf(stderr, "quic_datagram_peer: no QUIC Initial\n");
      return 1;
    }
    socklen_t rlen = sizeof p.remote;
    n0 = recvfrom(p.fd, first, sizeof first, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&p.remote), &rlen);
    if (n0 > 0 && ngtcp2_accept(&hd, first, size_t(n0)) == 0) break;
  }
  connect(p.fd, reinterpret_cast<sockaddr*>(&p.remote), sizeof p.remote);

  gnutls_certificate_allocate_credentials(&p.cred);
  if (gnutls_certificate_set_x509_key_file(p.cred, cert.c_str(), key.c_str(), GNUTLS_X509_FMT_PEM) < 0) {
    fprintf(stderr, "quic_datagram_peer: cannot load %s / %s\n", cert.c_str(), key.c_str());
    return 1;
  }
  gnutls_init(&p.tls, GNUTLS_SERVER | GNUTLS_NO_AUTO_SEND_TICKET | GNUTLS_NO_END_OF_EARLY_DATA);
  p.ref.get_conn = get_conn;
  p.ref.user_data = &p;
  gnutls_session_set_ptr(p.tls, &p.ref);
  ngtcp2_crypto_gnutls_configure_server_session(p.tls);
  gnutls_priority_set_direct(p.tls, "NORMAL:-VERS-ALL:+VERS-TLS1.3:%DISABLE_TLS13_COMPAT_MODE", nullptr);
  gnutls_credentials_set(p.tls, GNUTLS_CRD_CERTIFICATE, p.cred);
  gnutls_certificate_server_set_request(p.tls, GNUTLS_CERT_REQUEST);
  gnutls_datum_t alpn{reinterpret_cast<unsigned char*>(const_cast<char*>("dptun")), 5};
  gnutls_alpn_set_protocols(p.tls, &alpn, 1, GNUTLS_ALPN_MANDATORY);

  ngtcp2_callbacks cb = dptun::ngtcp2_crypto_callbacks(dptun::QuicRole::Server);
  cb.rand = dptun::ngtcp2_gnutls_rand;
  cb.get_new_connection_id = dptun::ngtcp2_random_cid;
  cb.recv_stream_data = recv_stream;
  cb.acked_stream_data_offset = acked;
  cb.recv_datagram = recv_datagram;
  ngtcp2_settings settings;
  ngtcp2_settings_default(&settings);
  settings.initial_ts = now_ns();
  settings.max_tx_udp_payload_size = kMaxUdpPayload;
  settings.no_tx_udp_payload_size_shaping = 1;
  ngtcp2_transport_params params;
  ngtcp2_transport_params_default(&params);
  params.initial_max_stream_data_bidi_remote = 64 * 1024;
  params.initial_max_data = 256 * 1024;
  params.initial_max_streams_bidi = 1;
  params.max_idle_timeout = 30ull * 1'000'000'000ull;
  params.max_datagram_frame_size = 65535;
  params.original_dcid = hd.dcid;
  params.stateless_reset_token_present = 1;
  gnutls_rnd(GNUTLS_RND_RANDOM, params.stateless_reset_token, sizeof params.stateless_reset_token);
  ngtcp2_cid scid;
  scid.datalen = 8;  // dptun's connection IDs are 8 bytes
  gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen);
  socklen_t llen = sizeof p.local;
  getsockname(p.fd, reinterpret_cast<sockaddr*>(&p.local), &llen);
  ngtcp2_path path{{reinterpret_cast<sockaddr*>(&p.local), sizeof p.local},
                   {reinterpret_cast<sockaddr*>(&p.remote), sizeof p.remote},
                   nullptr};
  if (const int rv = ngtcp2_conn_server_new(&p.conn, &hd.scid, &scid, &path, hd.version, &cb, &settings, &params,
                                            nullptr, &p);
      rv != 0) {
    fprintf(stderr, "quic_datagram_peer: %s\n", ngtcp2_strerror(rv));
    return 1;
  }
  ngtcp2_conn_set_tls_native_handle(p.conn, p.tls);
  ngtcp2_pkt_info pi{};
  if (const int rv = ngtcp2_conn_read_pkt(p.conn, &path, &pi, first, size_t(n0), now_ns()); rv != 0) {
    fprintf(stderr, "quic_datagram_peer: Initial: %s\n", ngtcp2_strerror(rv));
    return 1;
  }
  if (!flush(p)) return 1;
  // The registration and its acknowledged reply.
  if (!serve(p, path, now_ns() + 10'000'000'000ull, [&] { return p.reply_acked; }) || !p.reply_acked) {
    fprintf(stderr, "quic_datagram_peer: no registration acknowledged\n");
    return 1;
  }
  printf("registered\n");
  fflush(stdout);
  uint16_t id = 1;
  for (const auto& [size, repeat] : sizes) {
    bool ok = false;
    for (int attempt = 0; attempt < 3 && !ok; ++attempt) {
      p.echoed = false;
      p.frags.clear();
      p.frag_total = 0;
      p.datagrams = p.largest = 0;
      p.pending.push_back(probe(p, size, id++, repeat));
      if (!serve(p, path, now_ns() + 1'000'000'000ull, [&] { return p.echoed || !p.error.empty(); })) return 1;
      if (!p.error.empty()) {
        fprintf(stderr, "quic_datagram_peer: echo of %zu bytes: %s\n", size, p.error.c_str());
        return 1;
      }
      ok = p.echoed;
    }
    if (!ok) {
      fprintf(stderr, "quic_datagram_peer: no echo of %zu bytes\n", size);
      return 1;
    }
    printf("echo %zu%s ok (%zu datagrams, largest %zu bytes)\n", size, repeat > 1 ? "x3" : "", p.datagrams,
           p.largest);
    fflush(stdout);
  }
  printf("all echoed\n");
  fflush(stdout);
  if (hold > 0 && !serve(p, path, now_ns() + uint64_t(hold * 1e9), [] { return false; })) return 1;
  return 0;
}
