#include "proto/masque_capsule.hpp"

#include <algorithm>

#include "proto/quic_varint.hpp"

namespace dptun {

void append_capsule_header(std::vector<uint8_t>& out, uint64_t type, uint64_t value_len) {
  uint8_t buf[16];
  size_t n = quic_write_varint(buf, type);
  n += quic_write_varint(buf + n, value_len);
  out.insert(out.end(), buf, buf + n);
}

void append_datagram_capsule(std::vector<uint8_t>& out, uint64_t context_id, std::span<const uint8_t> payload) {
  append_capsule_header(out, kDatagramCapsuleType, quic_varint_len(context_id) + payload.size());
  uint8_t buf[8];
  out.insert(out.end(), buf, buf + quic_write_varint(buf, context_id));
  out.insert(out.end(), payload.begin(), payload.end());
}

void CapsuleReader::feed(std::span<const uint8_t> bytes,
                         const std::function<void(std::span<const uint8_t> value)>& on_datagram) {
  size_t i = 0;
  while (i < bytes.size() || (state_ == State::Value && remaining_ == 0)) {
    switch (state_) {
      case State::Header: {
        uint64_t type = 0, length = 0;
        if (!quic_varint_pair_push(header_, header_len_, bytes[i++], type, length)) break;
        remaining_ = length;
        if (type != kDatagramCapsuleType) {
          ++skipped_;
          state_ = State::Skip;
        } else if (length > max_datagram_) {
          ++oversized_;
          state_ = State::Skip;
        } else {
          value_.clear();
          value_.reserve(size_t(length));
          state_ = State::Value;
        }
        break;
      }
      case State::Value: {
        const size_t take = size_t(std::min<uint64_t>(remaining_, bytes.size() - i));
        value_.insert(value_.end(), bytes.begin() + ptrdiff_t(i), bytes.begin() + ptrdiff_t(i + take));
        i += take;
        remaining_ -= take;
        if (remaining_ == 0) {
          state_ = State::Header;
          ++datagrams_;
          on_datagram(value_);
        }
        break;
      }
      case State::Skip: {
        const size_t take = size_t(std::min<uint64_t>(remaining_, bytes.size() - i));
        i += take;
        remaining_ -= take;
        if (remaining_ == 0) state_ = State::Header;
        break;
      }
    }
    if (state_ == State::Skip && remaining_ == 0) state_ = State::Header;
  }
}

}  // namespace dptun
