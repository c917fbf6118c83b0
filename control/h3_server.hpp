// dpctld's HTTP/3 server side of one QUIC connection on the `h3` ALPN (docs/masque.md, "HTTP/3 layer"): the control
// stream with dptun's SETTINGS (RFC 9114 6.2.1, 7.2.4; ENABLE_CONNECT_PROTOCOL RFC 9220 3, H3_DATAGRAM RFC 9297
// 2.1.1, QPACK table capacity 0), the client's control and QPACK streams read, and each request stream's HEADERS
// answered: extended CONNECT with :protocol connect-udp goes to the owner's decision (route and certificate), the
// rest gets the status proto/connect_udp.hpp gives it. Transport-free: the QUIC connection feeds it stream data
// (on_stream_data) and carries out what it asks through H3Transport, so it is tested with bytes alone.
//
// Errors (RFC 9114 8): a connection error (a second control stream, a control stream not starting with SETTINGS,
// a critical stream closed, a frame where it may not be, a field section QPACK cannot read, bad SETTINGS) ends the
// connection with its code through H3Transport::close_connection; a request stream's own faults (a field section too
// big: 431; a malformed request: 400) are answered on that stream. Bounds: frames other than DATA up to kMaxFrame
// bytes, field sections up to kMaxFieldSection, at most kMaxRequests requests answered per connection.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "proto/connect_udp.hpp"
#include "proto/h3_frame.hpp"

namespace dptun {

// What an H3ServerSession needs of its QUIC connection.
class H3Transport {
 public:
  virtual ~H3Transport() = default;
  // Opens a server-initiated unidirectional stream; its ID, or -1 when the peer's limit allows none.
  virtual int64_t open_uni_stream() = 0;
  // Queues `bytes` on stream `id` (then its end when `fin`).
  virtual void write(int64_t id, std::span<const uint8_t> bytes, bool fin) = 0;
  // Stops reading stream `id` and resets its sending side with `app_error` (STOP_SENDING, RESET_STREAM).
  virtual void reset_stream(int64_t id, uint64_t app_error) = 0;
  // Ends the connection with HTTP/3 error `app_error` (CONNECTION_CLOSE of the application); `reason` is logged.
  virtual void close_connection(uint64_t app_error, const std::string& reason) = 0;
};

// The owner's answer to a CONNECT-UDP request: a status (2xx: accepted; 0: given later with
// H3ServerSession::complete) and, on a refusal, the Proxy-Status error type (RFC 9209 2.3) and details.
struct ConnectUdpAnswer {
  static constexpr uint16_t kLater = 0;
  uint16_t status = 200;
  std::string proxy_error;
  std::string details;
};

class H3ServerSession {
 public:
  static constexpr size_t kMaxFrame = 16 * 1024;          // a HEADERS or SETTINGS frame's payload
  static constexpr size_t kMaxFieldSection = 16 * 1024;   // RFC 9114 4.2.2 size of a request's fields
  static constexpr size_t kMaxRequests = 16;

  struct Callbacks {
    // A well-formed CONNECT-UDP request on stream `stream_id` of a client that offered HTTP Datagrams: the answer.
    std::function<ConnectUdpAnswer(int64_t stream_id, const ConnectUdpRequest&)> connect_udp;
    // A request refused before any route was looked at (not CONNECT-UDP, malformed, too big, no HTTP Datagrams):
    // its status and why, for the log and the counters.
    std::function<void(int64_t stream_id, uint16_t status, const std::string& why)> bad_request;
    // A 2xx answer was queued on `stream_id`: the stream is a tunnel now.
    std::function<void(int64_t stream_id)> accepted;
    // The request stream of an accepted CONNECT-UDP request ended (the client closed or reset it).
    std::function<void(int64_t stream_id)> request_ended;
  };
  struct Stats {
    uint64_t requests = 0;             // HEADERS of requests read
    uint64_t capsule_bytes = 0;        // DATA bytes read on accepted request streams (capsules; slice 3 carries them)
    uint64_t unknown_frames = 0;       // frames of types dptun does not know, skipped (RFC 9114 9)
    uint64_t unknown_streams = 0;      // unidirectional streams of unknown types, ignored (RFC 9114 6.2)
  };

  // `quic_datagrams`: the client's transport parameters allow DATAGRAM frames (max_datagram_frame_size > 0, RFC 9221
  // 3); SETTINGS_H3_DATAGRAM = 1 without them is H3_SETTINGS_ERROR (RFC 9297 2.1.1).
  H3ServerSession(H3Transport& transport, Callbacks callbacks, bool quic_datagrams);
  // Opens the control stream with SETTINGS and the QPACK encoder and decoder streams. False when the transport
  // refused a stream (the connection is closed then).
  bool start();
  // Data of client stream `id` (in order, as QUIC delivers it), `fin` at its end.
  void on_stream_data(int64_t id, std::span<const uint8_t> data, bool fin);
  // The client reset stream `id` (RESET_STREAM).
  void on_stream_reset(int64_t id);
  // The answer to the request on `stream_id` that connect_udp left for later (kLater); nothing when that stream is
  // gone meanwhile or was answered.
  void complete(int64_t stream_id, const ConnectUdpAnswer& a);
  bool waiting(int64_t stream_id) const {
    auto it = requests_.find(stream_id);
    return !closed_ && it != requests_.end() && it->second.waiting_owner && !it->second.answered;
  }
  // The client's SETTINGS, once its control stream brought them.
  const std::optional<H3Settings>& peer_settings() const { return peer_settings_; }
  bool closed() const { return closed_; }
  const Stats& stats() const { return stats_; }
  // Request streams whose CONNECT-UDP request was accepted and that are still open.
  const std::vector<int64_t>& open_tunnels() const { return tunnels_; }

 private:
  enum class UniKind : uint8_t { Unknown, Control, QpackEncoder, QpackDecoder, Ignored };
  struct UniStream {
    bool typed = false;
    UniKind kind = UniKind::Unknown;
    std::vector<uint8_t> type_bytes;  // the stream type varint until it is whole
    H3FrameReader frames{kMaxFrame};
  };
  struct RequestStream {
    H3FrameReader frames{kMaxFrame};
    bool headers = false;   // its HEADERS came (what follows is its body, or the tunnel's capsules)
    bool answered = false;
    bool accepted = false;
    bool waiting_settings = false;  // HEADERS read before the client's SETTINGS: answered once they come
    bool waiting_owner = false;     // connect_udp answers later (complete)
    std::optional<ConnectUdpRequest> request;
  };
  void fail(uint64_t code, const std::string& reason);
  void on_uni_data(int64_t id, std::span<const uint8_t> data, bool fin);
  bool on_control_frame(uint64_t type, std::span<const uint8_t> payload);
  void on_request_data(int64_t id, std::span<const uint8_t> data, bool fin);
  bool on_request_frame(int64_t id, RequestStream& rs, uint64_t type, std::span<const uint8_t> payload);
  void decide(int64_t id, RequestStream& rs);
  void answer(int64_t id, RequestStream& rs, const ConnectUdpAnswer& a);
  void refuse(int64_t id, RequestStream& rs, uint16_t status, const std::string& why);

  H3Transport& transport_;
  Callbacks cb_;
  bool quic_datagrams_;
  bool closed_ = false;
  bool control_seen_ = false, encoder_seen_ = false, decoder_seen_ = false;
  std::optional<H3Settings> peer_settings_;
  std::map<int64_t, UniStream> uni_;
  std::map<int64_t, RequestStream> requests_;
  std::vector<int64_t> tunnels_;
  size_t requests_answered_ = 0;
  Stats stats_;
};

}  // namespace dptun
