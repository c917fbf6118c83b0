// The capsule protocol (RFC 9297 3.2) on a CONNECT-UDP request stream (HTTP/2 DATA frames, HTTP/1.1 after
// `Upgrade: connect-udp`, or the HTTP/3 request stream): Capsule { Type (varint), Length (varint), Value }.
// The DATAGRAM capsule (type 0x00, RFC 9297 3.5) carries an HTTP Datagram Payload (proto/masque_datagram.hpp);
// capsules of other types are skipped whole, as RFC 9297 3.2 requires of unknown ones. Varints: RFC 9000 16.
// The reader takes the stream in pieces of any size (a capsule split across reads, or many in one), never
// buffers more than one DATAGRAM capsule of at most max_datagram bytes, and skips (counting) longer ones without
// buffering them: a client cannot make dpctld hold more than that per stream. Slow path (it copies).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace dptun {

inline constexpr uint64_t kDatagramCapsuleType = 0x00;  // RFC 9297 3.5

// Appends a capsule's Type and Length varints for a value of `value_len` bytes to `out`.
void append_capsule_header(std::vector<uint8_t>& out, uint64_t type, uint64_t value_len);
// Appends a DATAGRAM capsule carrying context ID `context_id` and `payload` (RFC 9298 5) to `out`.
void append_datagram_capsule(std::vector<uint8_t>& out, uint64_t context_id, std::span<const uint8_t> payload);

class CapsuleReader {
 public:
  // DATAGRAM capsules with a value over `max_datagram` bytes are skipped and counted in oversized().
  explicit CapsuleReader(size_t max_datagram) : max_datagram_(max_datagram) {}

  // Reads `bytes`, the next part of the stream; calls `on_datagram` with the value of each complete DATAGRAM
  // capsule (valid only during the call).
  void feed(std::span<const uint8_t> bytes, const std::function<void(std::span<const uint8_t> value)>& on_datagram);
  // True when the stream may end here: not inside a capsule (RFC 9297 3.2: a stream ending mid-capsule is
  // malformed).
  bool at_boundary() const { return state_ == State::Header && header_len_ == 0; }

  uint64_t datagrams() const { return datagrams_; }
  uint64_t skipped() const { return skipped_; }      // capsules of other types, skipped
  uint64_t oversized() const { return oversized_; }  // DATAGRAM capsules over max_datagram, skipped

 private:
  enum class State : uint8_t { Header, Value, Skip };
  size_t max_datagram_;
  State state_ = State::Header;
  uint8_t header_[16];  // Type and Length varints: at most 8 bytes each
  size_t header_len_ = 0;
  uint64_t remaining_ = 0;  // value bytes still to buffer or skip
  std::vector<uint8_t> value_;
  uint64_t datagrams_ = 0, skipped_ = 0, oversized_ = 0;
};

}  // namespace dptun
