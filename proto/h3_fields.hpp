// HTTP/3 field sections (RFC 9114 4.2) encoded with QPACK (RFC 9204) by nghttp3's QPACK encoder and decoder, with
// the static table only: dptun's dynamic table capacity is 0 both ways (SETTINGS_QPACK_MAX_TABLE_CAPACITY 0, and no
// encoder-stream instruction is ever sent), so a field section needs no state of the connection. Slow path.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace dptun {

struct HttpField {
  std::string name;  // lower case (RFC 9114 4.2); pseudo-header fields start with ':'
  std::string value;
};

enum class FieldSectionError : uint8_t {
  Malformed,     // not QPACK, or a reference to a dynamic table entry (capacity 0): QPACK_DECOMPRESSION_FAILED
  TooLarge,      // over max_size (RFC 9114 4.2.2: each field counts name + value + 32 bytes), or one name or value
                 // over nghttp3's own bound for a string: answered 431
  Count
};
const char* field_section_error_name(FieldSectionError e);

// Encodes `fields` in order as one field section (a HEADERS frame's payload, without the frame header). Names must
// be lower case. False only when nghttp3 fails (out of memory).
bool encode_h3_field_section(std::span<const HttpField> fields, std::vector<uint8_t>& out);
// Decodes a HEADERS frame's payload. nullopt with *why when it is malformed or its fields add up to more than
// `max_size` bytes.
std::optional<std::vector<HttpField>> decode_h3_field_section(std::span<const uint8_t> payload, size_t max_size,
                                                              FieldSectionError* why = nullptr);

}  // namespace dptun
