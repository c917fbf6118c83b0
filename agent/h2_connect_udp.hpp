// dpagent udp's HTTP/2 client of one CONNECT-UDP request (RFC 9298 over RFC 9113), without I/O: the HTTP/2 framing
// is nghttp2's client session; the owner feeds it the bytes the gateway sent (TLS plaintext) and writes what
// output() returns. The HTTP/2 fallback of `dpagent udp` when the gateway is unreachable over UDP
// (h2_masque_client.hpp carries it over TLS on TCP).
// The request is extended CONNECT (RFC 8441 4, RFC 9298 3.4: the fields of connect_udp_request_fields), sent only
// after the gateway's first SETTINGS carried SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 3); SETTINGS without it
// leave the state Failed with no_connect_udp(). The answer is read by parse_connect_udp_response: 2xx opens the
// request (Open), another final status refuses it (Refused, with the Proxy-Status field for refusal_text()).
// UDP payloads travel in DATAGRAM capsules (RFC 9297 3.5, type 0x00) with context ID 0 (RFC 9298 5) in the request
// stream's DATA frames, both ways. Received: read by CapsuleReader across DATA frames of any size; other capsule
// types are skipped (capsules_skipped()), a context ID other than 0 or a value cut short is dropped and counted
// (drops(), the same reasons as over HTTP/3). Sent: send() appends one capsule to a buffer of at most max_pending
// bytes that the stream's DATA frames drain as HTTP/2 flow control and the owner's socket allow; a capsule that does
// not fit is refused (Full: the caller drops and counts it), never queued without bound.
// Not thread-safe; one request per client (one per connection: h2_masque_client.hpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "proto/connect_udp.hpp"
#include "proto/masque_capsule.hpp"

struct nghttp2_session;

namespace dptun {

class H2ConnectUdpClient {
 public:
  enum class State : uint8_t {
    AwaitSettings,  // our preface and SETTINGS are out; waiting for the gateway's SETTINGS
    AwaitAnswer,    // the gateway offers extended CONNECT: the request is out
    Open,           // 2xx: capsules flow
    Refused,        // a final answer other than 2xx (answer(), refusal_text())
    Failed,         // an HTTP/2 connection error, a reset request, or a gateway without extended CONNECT
    Ended,          // the gateway ended or reset the request stream after the 2xx: the proxying is over
  };
  using Drop = ConnectUdpDrop;
  enum class Send : uint8_t { Queued, TooBig, Full, NotOpen };

  static constexpr size_t kMaxCapsule = 65535;        // received DATAGRAM capsules over this are skipped
  static constexpr size_t kMaxPayload = 65507;        // the biggest UDP payload send() takes (IPv4's limit)
  static constexpr size_t kMaxFieldSection = 16384;   // the answer's fields, names and values
  static constexpr uint32_t kWindow = 1u << 20;       // our stream and connection receive windows (bytes)
  static constexpr size_t kDefaultPending = 256 * 1024;  // capsule bytes waiting for the stream at most

  using Deliver = std::function<void(std::span<const uint8_t> udp_payload)>;

  H2ConnectUdpClient(std::string authority, std::string target_host, uint16_t target_port,
                     size_t max_pending = kDefaultPending);
  ~H2ConnectUdpClient();
  H2ConnectUdpClient(const H2ConnectUdpClient&) = delete;
  H2ConnectUdpClient& operator=(const H2ConnectUdpClient&) = delete;

  // The nghttp2 session with our SETTINGS (ENABLE_PUSH 0, INITIAL_WINDOW_SIZE kWindow) queued after the connection
  // preface. False with `error` when nghttp2 cannot allocate it.
  bool start(std::string& error);
  // Bytes the gateway sent, in any pieces; UDP payloads of DATAGRAM capsules go to `deliver` (valid during the
  // call). False when the connection must end (state Failed, or Ended/Refused with nothing more to do).
  bool receive(std::span<const uint8_t> bytes, const Deliver& deliver);
  // Appends what is to be sent to `out` until it holds at least `max` bytes or nothing is left; false on an
  // nghttp2 failure (state Failed).
  bool output(std::vector<uint8_t>& out, size_t max);
  // Something waits to be sent (output() would return bytes).
  bool wants_write() const;
  // The session is over both ways (after GOAWAY sent or received and nothing left to do).
  bool finished() const;
  // Queues GOAWAY (NO_ERROR): the session ends once output() has returned it.
  void terminate();
  // One UDP payload in one DATAGRAM capsule, queued on the request stream.
  Send send(std::span<const uint8_t> udp_payload);

  State state() const { return state_; }
  int32_t request_stream() const { return stream_; }
  const std::string& problem() const { return problem_; }  // one sentence for the log (Failed, Ended)
  bool no_connect_udp() const { return no_connect_udp_; }
  const ConnectUdpResponse& answer() const { return answer_; }
  std::string refusal_text() const { return connect_udp_refusal_text(answer_); }
  bool goaway() const { return goaway_; }
  uint64_t drops(Drop d) const { return drops_[size_t(d)]; }
  uint64_t capsules_rx() const { return capsules_rx_; }  // UDP payloads delivered
  uint64_t capsules_skipped() const { return capsules_.skipped() + capsules_.oversized(); }
  size_t pending() const { return pending_.size() - pending_off_; }  // capsule bytes not yet in DATA frames

 private:
  friend struct H2ConnectUdpCallbacks;  // nghttp2's callbacks (h2_connect_udp.cpp)
  void fail(std::string problem);
  void settings_received();
  void answer_received(bool end_stream);
  void capsule_value(std::span<const uint8_t> value);

  std::string authority_, host_;
  uint16_t port_;
  size_t max_pending_;
  nghttp2_session* session_ = nullptr;
  State state_ = State::AwaitSettings;
  std::string problem_;
  bool no_connect_udp_ = false, settings_seen_ = false, goaway_ = false, deferred_ = false;
  int32_t stream_ = -1;
  std::vector<HttpField> fields_;  // the answer being received
  size_t fields_size_ = 0;
  ConnectUdpResponse answer_;
  CapsuleReader capsules_{kMaxCapsule};
  std::vector<uint8_t> pending_;  // DATAGRAM capsules to send, from pending_off_
  size_t pending_off_ = 0;
  const Deliver* deliver_ = nullptr;  // during receive()
  uint64_t capsules_rx_ = 0;
  uint64_t drops_[size_t(Drop::Count)] = {};
};

const char* h2_connect_udp_state_name(H2ConnectUdpClient::State s);

}  // namespace dptun
