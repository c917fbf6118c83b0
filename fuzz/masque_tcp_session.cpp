// dpctld's CONNECT-UDP sessions on TCP (control/masque_tcp_session.hpp): the bytes a client sends after the TLS
// handshake. The input's first byte picks HTTP/2 (odd) or HTTP/1.1 (even) and the size of the pieces the rest is fed
// in (1 + its bits 1..7); for HTTP/2 the client preface is put in front so that frames are reached. Every request is
// accepted (200), every UDP payload is echoed back at once.
// Properties: no crash, no leak; a payload handed on is at most 65535 bytes minus its context ID; what the session
// queues for the client stays under its bound (kMaxPendingOutput plus one piece of protocol output); no callback
// after the session says it is closing; HTTP/1.1 output starts with a status line.
#include <string>

#include "control/masque_tcp_session.hpp"
#include "fuzz/fuzz.hpp"

using namespace dptun;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool h2 = data[0] & 1;
  const size_t piece = 1 + (data[0] >> 1);
  std::unique_ptr<MasqueTcpSession> s;
  MasqueTcpSession::Callbacks cb;
  size_t payloads = 0;
  cb.connect_udp = [](int32_t, const ConnectUdpRequest& req) {
    FUZZ_CHECK(req.target.port != 0);
    return ConnectUdpAnswer{200, {}, {}};
  };
  cb.datagram = [&](int32_t stream, std::span<const uint8_t> p) {
    FUZZ_CHECK(p.size() < MasqueTcpSession::kMaxCapsuleValue);
    ++payloads;
    s->send_datagram(stream, p);
  };
  s = h2 ? make_h2_session(cb) : make_h1_session(cb);
  FUZZ_CHECK(s != nullptr);
  std::string out;
  std::string input;
  if (h2) input = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  input.append(reinterpret_cast<const char*>(data + 1), size - 1);
  for (size_t i = 0; i < input.size() && !s->closing(); i += piece) {
    const size_t n = std::min(piece, input.size() - i);
    s->feed({reinterpret_cast<const uint8_t*>(input.data()) + i, n});
    std::string chunk;
    s->take_output(chunk, 64 * 1024);
    FUZZ_CHECK(chunk.size() <= MasqueTcpSession::kMaxPendingOutput + 64 * 1024);
    if (out.size() < 64) out += chunk.substr(0, 64);
  }
  if (!h2 && !out.empty()) FUZZ_CHECK(out.rfind("HTTP/1.1 ", 0) == 0);
  s->peer_closed();
  FUZZ_CHECK(s->tunnels() == 0);
  FUZZ_LOG("%s: %zu payloads, closing %d\n", h2 ? "h2" : "http/1.1", payloads, int(s->closing()));
  return 0;
}
