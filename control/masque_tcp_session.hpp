// CONNECT-UDP on TCP (docs/masque.md "HTTP/2 and HTTP/1.1 fallback"): the HTTP layer of one client connection after
// its TLS handshake, without I/O. Bytes the client sent go in (feed), bytes to send come out (take_output); the owner
// (control/masque_tcp.hpp) carries them over TLS and decides each request (Callbacks::connect_udp).
//
// HTTP/2 (RFC 9113, nghttp2's server session): dpctld's SETTINGS carry SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441
// 3), SETTINGS_MAX_CONCURRENT_STREAMS kMaxStreams and SETTINGS_MAX_HEADER_LIST_SIZE kMaxFieldSection; an extended
// CONNECT (RFC 8441 4, RFC 9298 3.4) is read by proto/connect_udp.hpp exactly as HTTP/3's. Up to kMaxTunnels accepted
// CONNECT-UDP streams per connection; a request beyond them is answered 429 (Proxy-Status connection_limit_reached)
// and counted. What nghttp2 itself finds malformed (RFC 9113 8.2-8.3: upper-case names, connection-specific fields,
// pseudo-headers out of place) resets the stream (PROTOCOL_ERROR) before any answer; connection errors end the
// connection with GOAWAY.
// HTTP/1.1 (RFC 9298 3.2, RFC 9110 7.8): `GET <path> HTTP/1.1` with Host, `Connection: Upgrade`, `Upgrade:
// connect-udp`, read with Debian's http-parser and mapped to the HTTP/2 form's fields (`:method CONNECT`, `:protocol
// connect-udp`, `:scheme https`, `:authority` = Host, `:path`) so that the same rules apply. A request whose head is
// over kMaxFieldSection bytes is answered 431. An accepted request gets `101 Switching Protocols` (Connection:
// Upgrade, Upgrade: connect-udp, Capsule-Protocol: ?1) and the connection carries capsules both ways; a refusal is a
// normal response with Proxy-Status and `Connection: close`, and the connection ends after it. One request per
// connection; the stream ID of its tunnel is 0.
//
// Capsules (RFC 9297 3.2) on a tunnel are read with proto/masque_capsule.hpp's CapsuleReader: a DATAGRAM capsule with
// context ID 0 is a UDP payload (Callbacks::datagram), another context ID is dropped and counted (RFC 9298 4), other
// capsule types are skipped whole, a DATAGRAM capsule over kMaxCapsuleValue bytes is skipped unbuffered and counted.
// A malformed capsule (a DATAGRAM capsule too short for its context ID, a stream that ends inside a capsule) ends the
// tunnel: RST_STREAM PROTOCOL_ERROR on HTTP/2 (RFC 9297 3.3), the connection closed on HTTP/1.1; counted.
// Replies (send_datagram) become DATAGRAM capsules with context ID 0; what the client does not read is queued up to
// kMaxPendingOutput bytes per connection, beyond which replies are dropped and counted (slow_client).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "control/h3_server.hpp"  // ConnectUdpAnswer
#include "proto/connect_udp.hpp"
#include "proto/masque_capsule.hpp"

namespace dptun {

// What the capsules of one connection did (monotonic counts).
struct CapsuleStats {
  uint64_t requests = 0;           // requests read (HTTP/2 streams with a request, or the HTTP/1.1 request)
  uint64_t datagrams_in = 0;       // DATAGRAM capsules with context ID 0: UDP payloads from the client
  uint64_t datagrams_out = 0;      // DATAGRAM capsules queued to the client (replies)
  uint64_t drop_context = 0;       // DATAGRAM capsules with a context ID other than 0
  uint64_t drop_too_large = 0;     // DATAGRAM capsules over kMaxCapsuleValue, skipped without buffering
  uint64_t drop_malformed = 0;     // tunnels ended by a malformed capsule
  uint64_t drop_slow_client = 0;   // replies dropped: the connection's queue over kMaxPendingOutput
  uint64_t skipped_capsules = 0;   // capsules of other types, skipped
  uint64_t over_tunnel_limit = 0;  // HTTP/2 requests answered 429: kMaxTunnels tunnels open already

  CapsuleStats& operator+=(const CapsuleStats& o) {
    requests += o.requests;
    datagrams_in += o.datagrams_in;
    datagrams_out += o.datagrams_out;
    drop_context += o.drop_context;
    drop_too_large += o.drop_too_large;
    drop_malformed += o.drop_malformed;
    drop_slow_client += o.drop_slow_client;
    skipped_capsules += o.skipped_capsules;
    over_tunnel_limit += o.over_tunnel_limit;
    return *this;
  }
};

class MasqueTcpSession {
 public:
  static constexpr size_t kMaxFieldSection = 16 * 1024;  // bytes: a request's fields (RFC 9113 6.5.2 counting) or head
  static constexpr size_t kMaxTunnels = 16;              // accepted CONNECT-UDP streams open at once per connection
  static constexpr uint32_t kMaxStreams = 20;            // HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS
  static constexpr size_t kMaxPendingOutput = 256 * 1024;  // bytes of replies queued per connection
  static constexpr size_t kMaxCapsuleValue = 65527 + 8;    // a context ID varint and the largest UDP payload

  struct Callbacks {
    // A well-formed CONNECT-UDP request: the answer (status ConnectUdpAnswer::kLater: complete() follows).
    std::function<ConnectUdpAnswer(int32_t stream, const ConnectUdpRequest& req)> connect_udp;
    // A request refused before any route was looked at: its status and why (log, counters).
    std::function<void(int32_t stream, uint16_t status, const std::string& why)> bad_request;
    // A UDP payload from an accepted stream (valid during the call only).
    std::function<void(int32_t stream, std::span<const uint8_t> payload)> datagram;
    // An accepted stream ended by the client (closed, reset, a malformed capsule, the connection gone); not called
    // after cut().
    std::function<void(int32_t stream, const std::string& why)> tunnel_ended;
  };

  virtual ~MasqueTcpSession() = default;
  virtual const char* protocol() const = 0;  // "h2" / "http/1.1" (the session's control_transport)
  // The client's next bytes. False when the connection is done: what take_output still gives is sent, then it closes.
  virtual bool feed(std::span<const uint8_t> bytes) = 0;
  // The client closed its side (TCP FIN or TLS close_notify).
  virtual void peer_closed() = 0;
  // Appends bytes to send to `out` until it holds at least `max` bytes or nothing is left.
  virtual void take_output(std::string& out, size_t max) = 0;
  // The answer to a request that got kLater (ignored when the request or connection is gone).
  virtual void complete(int32_t stream, const ConnectUdpAnswer& a) = 0;
  // Queues a reply as a DATAGRAM capsule; false (dropped, counted when over the bound) when it cannot go.
  virtual bool send_datagram(int32_t stream, std::span<const uint8_t> payload) = 0;
  // Ends an accepted stream from dpctld's side (its session was revoked): HTTP/2 RST_STREAM CANCEL, HTTP/1.1 closes.
  virtual void cut(int32_t stream) = 0;
  // Nothing more will be read: flush the output and close.
  virtual bool closing() const = 0;
  // Accepted streams open, and requests whose answer is still to come.
  virtual size_t tunnels() const = 0;
  virtual size_t waiting() const = 0;
  // Whether `stream`'s request waits for its answer (complete()); false once it was answered, reset or closed.
  virtual bool waiting(int32_t stream) const = 0;
  const CapsuleStats& stats() const { return stats_; }

 protected:
  CapsuleStats stats_;
};

// The HTTP/2 server session (the client sends the connection preface first); nullptr when nghttp2 fails (memory).
std::unique_ptr<MasqueTcpSession> make_h2_session(MasqueTcpSession::Callbacks cb);
std::unique_ptr<MasqueTcpSession> make_h1_session(MasqueTcpSession::Callbacks cb);

// The capsules of one accepted stream: reads them (CapsuleReader), hands on UDP payloads, counts drops into `stats`.
class CapsuleStream {
 public:
  CapsuleStream() : reader_(MasqueTcpSession::kMaxCapsuleValue) {}
  // False when the capsules are malformed (counted); the tunnel must end.
  bool feed(std::span<const uint8_t> bytes, CapsuleStats& stats, const std::function<void(std::span<const uint8_t>)>& payload);
  bool at_boundary() const { return reader_.at_boundary(); }

 private:
  CapsuleReader reader_;
  uint64_t oversized_seen_ = 0, skipped_seen_ = 0;
};

}  // namespace dptun
