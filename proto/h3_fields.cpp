#include "proto/h3_fields.hpp"

#include <nghttp3/nghttp3.h>

#include <memory>

namespace dptun {

namespace {

// nghttp3's objects, each freed by its own function.
struct EncoderDel {
  void operator()(nghttp3_qpack_encoder* e) const { nghttp3_qpack_encoder_del(e); }
};
struct DecoderDel {
  void operator()(nghttp3_qpack_decoder* d) const { nghttp3_qpack_decoder_del(d); }
};
struct StreamContextDel {
  void operator()(nghttp3_qpack_stream_context* s) const { nghttp3_qpack_stream_context_del(s); }
};
struct RcbufDel {
  void operator()(nghttp3_rcbuf* b) const { nghttp3_rcbuf_decref(b); }
};
using Rcbuf = std::unique_ptr<nghttp3_rcbuf, RcbufDel>;

// A buffer the encoder (re)allocates with the default allocator, freed with it.
class Buf {
 public:
  Buf() { nghttp3_buf_init(&b_); }
  ~Buf() { nghttp3_buf_free(&b_, nghttp3_mem_default()); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  nghttp3_buf* get() { return &b_; }
  std::span<const uint8_t> data() const { return {b_.pos, size_t(b_.last - b_.pos)}; }

 private:
  nghttp3_buf b_;
};

std::string string_of(const nghttp3_rcbuf* b) {
  const nghttp3_vec v = nghttp3_rcbuf_get_buf(b);
  return std::string(reinterpret_cast<const char*>(v.base), v.len);
}

}  // namespace

const char* field_section_error_name(FieldSectionError e) {
  switch (e) {
    case FieldSectionError::Malformed: return "malformed";
    case FieldSectionError::TooLarge: return "too_large";
    case FieldSectionError::Count: break;
  }
  return "?";
}

bool encode_h3_field_section(std::span<const HttpField> fields, std::vector<uint8_t>& out) {
  const nghttp3_mem* mem = nghttp3_mem_default();
  nghttp3_qpack_encoder* raw = nullptr;
  // Hard maximum dynamic table capacity 0: only the static table and literals.
  if (nghttp3_qpack_encoder_new(&raw, 0, mem) != 0) return false;
  const std::unique_ptr<nghttp3_qpack_encoder, EncoderDel> encoder(raw);

  std::vector<nghttp3_nv> nva;
  nva.reserve(fields.size());
  for (const HttpField& f : fields)
    nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(f.name.data())),
                   reinterpret_cast<uint8_t*>(const_cast<char*>(f.value.data())), f.name.size(), f.value.size(),
                   NGHTTP3_NV_FLAG_NONE});
  Buf prefix, rest, encoder_stream;
  if (nghttp3_qpack_encoder_encode(encoder.get(), prefix.get(), rest.get(), encoder_stream.get(), 0, nva.data(),
                                   nva.size()) != 0)
    return false;
  // Capacity 0: nothing for the encoder stream, so the section stands alone.
  if (!encoder_stream.data().empty()) return false;
  out.insert(out.end(), prefix.data().begin(), prefix.data().end());
  out.insert(out.end(), rest.data().begin(), rest.data().end());
  return true;
}

std::optional<std::vector<HttpField>> decode_h3_field_section(std::span<const uint8_t> payload, size_t max_size,
                                                              FieldSectionError* why) {
  auto fail = [&](FieldSectionError e) -> std::optional<std::vector<HttpField>> {
    if (why) *why = e;
    return std::nullopt;
  };
  const nghttp3_mem* mem = nghttp3_mem_default();
  nghttp3_qpack_decoder* raw_decoder = nullptr;
  // Dynamic table capacity 0 and no blocked streams: a section that needs the table cannot be read.
  if (nghttp3_qpack_decoder_new(&raw_decoder, 0, 0, mem) != 0) return fail(FieldSectionError::Malformed);
  const std::unique_ptr<nghttp3_qpack_decoder, DecoderDel> decoder(raw_decoder);
  nghttp3_qpack_stream_context* raw_sctx = nullptr;
  if (nghttp3_qpack_stream_context_new(&raw_sctx, 0, mem) != 0) return fail(FieldSectionError::Malformed);
  const std::unique_ptr<nghttp3_qpack_stream_context, StreamContextDel> sctx(raw_sctx);

  std::vector<HttpField> fields;
  size_t size = 0;  // RFC 9114 4.2.2: name + value + 32 per field
  const uint8_t* p = payload.data();
  size_t left = payload.size();
  for (;;) {
    nghttp3_qpack_nv nv{};
    uint8_t flags = NGHTTP3_QPACK_DECODE_FLAG_NONE;
    // fin: the payload is the whole section, so one cut short is malformed rather than awaited.
    const nghttp3_ssize n = nghttp3_qpack_decoder_read_request(decoder.get(), sctx.get(), &nv, &flags, p, left, 1);
    if (n < 0) {
      // nghttp3 bounds a single name or value itself; one over that is too large as well.
      return fail(n == NGHTTP3_ERR_QPACK_HEADER_TOO_LARGE ? FieldSectionError::TooLarge
                                                           : FieldSectionError::Malformed);
    }
    p += n;
    left -= size_t(n);
    if (flags & NGHTTP3_QPACK_DECODE_FLAG_EMIT) {
      const Rcbuf name(nv.name), value(nv.value);
      const size_t name_len = nghttp3_rcbuf_get_buf(nv.name).len, value_len = nghttp3_rcbuf_get_buf(nv.value).len;
      size += name_len + value_len + 32;
      if (size > max_size) return fail(FieldSectionError::TooLarge);  // stop here: nothing more is decoded
      fields.push_back({string_of(nv.name), string_of(nv.value)});
    }
    if (flags & NGHTTP3_QPACK_DECODE_FLAG_FINAL) break;
    // Blocked: waits for dynamic table entries that never come (capacity 0). No progress: cannot end well.
    if ((flags & NGHTTP3_QPACK_DECODE_FLAG_BLOCKED) || (!(flags & NGHTTP3_QPACK_DECODE_FLAG_EMIT) && n == 0))
      return fail(FieldSectionError::Malformed);
  }
  if (left != 0) return fail(FieldSectionError::Malformed);
  return fields;
}

}  // namespace dptun
