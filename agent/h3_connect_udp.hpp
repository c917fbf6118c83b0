// The HTTP/3 client side of one CONNECT-UDP request, without I/O (the QUIC connection is masque_client.hpp's): what
// `dpagent udp` writes on its streams and how it reads the gateway's. RFC 9114 6.2 and 7.2.4: our control stream
// (type 0x00, then one SETTINGS frame: SETTINGS_H3_DATAGRAM = 1 (RFC 9297 2.1.1), SETTINGS_QPACK_MAX_TABLE_CAPACITY
// = 0), the QPACK encoder and decoder streams (types 0x02 / 0x03, RFC 9204 4.2; nothing follows the type, since no
// dynamic table is used either way); the gateway's control stream must start with SETTINGS, and only one carrying
// SETTINGS_H3_DATAGRAM = 1 and SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 9220 3) lets the request go (state Ready).
// The request is extended CONNECT with :protocol connect-udp (proto/connect_udp.hpp) on a client bidirectional
// stream, and stays open: its end ends the proxying (RFC 9298 3). After a 2xx answer, UDP payloads travel as HTTP
// Datagrams (RFC 9297 2.1, RFC 9298 5) with the request stream's Quarter Stream ID and context ID 0, and may also
// come as DATAGRAM capsules in the request stream's DATA frames (RFC 9297 3.5), which are read too.
// Receive rules (each drop counted by reason): a datagram for another stream, with a context ID other than 0, or
// before the 2xx answer is dropped; a Quarter Stream ID over 2^60 - 1 is the connection error H3_DATAGRAM_ERROR.
// Connection errors (RFC 9114 8.1) leave the state Failed with error_code() to close with and problem() to log.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "proto/connect_udp.hpp"
#include "proto/h3_frame.hpp"
#include "proto/masque_capsule.hpp"

namespace dptun {

class H3ConnectUdpClient {
 public:
  enum class State : uint8_t {
    AwaitSettings,  // waiting for the gateway's SETTINGS
    Ready,          // the gateway offers CONNECT-UDP: send request()
    AwaitAnswer,    // the request is out
    Open,           // 2xx: datagrams flow
    Refused,        // a final answer other than 2xx (answer(), refusal_text())
    Failed,         // a connection error, or a gateway without CONNECT-UDP (no_connect_udp())
    Ended,          // the gateway ended or reset the request stream after the 2xx: the proxying is over
  };
  // Why a received UDP payload was dropped (DATAGRAM frames and DATAGRAM capsules).
  using Drop = ConnectUdpDrop;
  static const char* drop_name(Drop d) { return connect_udp_drop_name(d); }

  static constexpr size_t kMaxFrame = 16384;         // the largest non-DATA frame read (a SETTINGS or HEADERS)
  static constexpr size_t kMaxFieldSection = 16384;  // the answer's field section, RFC 9114 4.2.2
  static constexpr size_t kMaxCapsule = 65535;       // DATAGRAM capsules over this are skipped (CapsuleReader)

  H3ConnectUdpClient(std::string authority, std::string target_host, uint16_t target_port);

  // The bytes each of our unidirectional streams starts with (written once, the streams stay open).
  static std::vector<uint8_t> control_stream_bytes();  // 0x00, SETTINGS
  static std::vector<uint8_t> encoder_stream_bytes();  // 0x02
  static std::vector<uint8_t> decoder_stream_bytes();  // 0x03

  using Deliver = std::function<void(std::span<const uint8_t> udp_payload)>;
  // Bytes the gateway sent on stream `id` (`fin`: the stream ends after them). UDP payloads from DATAGRAM capsules
  // go to `deliver`. False when the connection must end (state Failed).
  bool on_stream_data(int64_t id, std::span<const uint8_t> data, bool fin, const Deliver& deliver);
  // The gateway reset stream `id` (RESET_STREAM with `app_error`). False when the connection must end.
  bool on_stream_reset(int64_t id, uint64_t app_error);
  // The request's HEADERS frame for client bidirectional stream `stream_id` (state Ready -> AwaitAnswer); empty
  // when the state is not Ready or QPACK encoding failed (state Failed).
  std::vector<uint8_t> request(int64_t stream_id);

  // One received DATAGRAM frame's payload: the UDP payload it carries (pointing into `frame`), or nullopt with
  // *why counted. A Quarter Stream ID over 2^60 - 1 leaves the state Failed (H3_DATAGRAM_ERROR).
  std::optional<std::span<const uint8_t>> datagram_payload(std::span<const uint8_t> frame, Drop* why = nullptr);
  // The bytes before a UDP payload in our HTTP/3 datagrams (Quarter Stream ID, context ID 0); 0 before request().
  size_t datagram_header_len() const;
  // Writes them at the start of `out`; their length, 0 when `out` is too short or there is no request yet.
  size_t write_datagram_header(std::span<uint8_t> out) const;

  State state() const { return state_; }
  int64_t request_stream() const { return request_stream_; }
  uint64_t error_code() const { return error_code_; }   // to close the connection with (state Failed)
  const std::string& problem() const { return problem_; }  // one sentence for the log
  // The gateway's SETTINGS lack H3_DATAGRAM or ENABLE_CONNECT_PROTOCOL (state Failed): retrying will not help.
  bool no_connect_udp() const { return no_connect_udp_; }
  const H3Settings& peer_settings() const { return peer_settings_; }
  const ConnectUdpResponse& answer() const { return answer_; }
  // "404 (dptun; error=destination_not_found; details=\"...\")": the status and the Proxy-Status field if any.
  std::string refusal_text() const { return connect_udp_refusal_text(answer_); }
  bool goaway() const { return goaway_; }  // the gateway sent GOAWAY: no new request on this connection
  uint64_t drops(Drop d) const { return drops_[size_t(d)]; }
  // Capsules of other types (RFC 9297 3.2) and DATAGRAM capsules over kMaxCapsule, skipped.
  uint64_t capsules_skipped() const { return capsules_.skipped() + capsules_.oversized(); }

 private:
  enum class UniKind : uint8_t { Unknown, Control, Encoder, Decoder, Ignored };
  struct UniStream {
    UniKind kind = UniKind::Unknown;
    uint8_t type_bytes[8];
    size_t type_len = 0;
  };
  bool connection_error(uint64_t code, std::string problem);
  bool drop(Drop d, Drop* why);
  bool uni_data(int64_t id, std::span<const uint8_t> data, bool fin);
  bool control_frame(uint64_t type, std::span<const uint8_t> payload);
  bool request_data(std::span<const uint8_t> data, bool fin, const Deliver& deliver);
  bool request_frame(uint64_t type, std::span<const uint8_t> payload);
  void capsule_payload(std::span<const uint8_t> value, const Deliver& deliver);

  std::string authority_, host_;
  uint16_t port_;
  State state_ = State::AwaitSettings;
  uint64_t error_code_ = 0;
  std::string problem_;
  bool no_connect_udp_ = false;
  std::map<int64_t, UniStream> uni_;
  bool have_control_ = false, have_encoder_ = false, have_decoder_ = false, settings_seen_ = false;
  H3FrameReader control_reader_{kMaxFrame};
  H3Settings peer_settings_;
  int64_t request_stream_ = -1;
  H3FrameReader request_reader_{kMaxFrame};
  CapsuleReader capsules_{kMaxCapsule};
  ConnectUdpResponse answer_;
  bool goaway_ = false;
  uint64_t drops_[size_t(Drop::Count)] = {};
};

const char* h3_connect_udp_state_name(H3ConnectUdpClient::State s);
// The name of an HTTP/3 or QPACK application error code (RFC 9114 8.1, RFC 9204 6, RFC 9297 2.1), nullptr when it
// is none of them.
const char* h3_error_name(uint64_t code);

}  // namespace dptun
