// TLS server names from real ClientHellos (made by OpenSSL's client in memory): whole, cut at every byte
// (need more, never a wrong answer), spread over many small records, without SNI; and hostile input (bad
// lengths, other record types, oversized messages, random bytes).
#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tests/unit/cmocka.hpp"

#include "ingress/client_hello.hpp"

using namespace dptun;

namespace {

// The bytes an OpenSSL client sends first (TLS records holding its ClientHello), asking for `sni` (none if empty).
// `alpn_bytes`: an ALPN list of about that many bytes (a way to make big ClientHellos).
std::vector<uint8_t> real_client_hello(const char* sni, int max_version = TLS1_3_VERSION, size_t alpn_bytes = 0) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_max_proto_version(ctx, max_version);
  SSL* ssl = SSL_new(ctx);
  if (alpn_bytes) {
    std::vector<uint8_t> alpn;
    for (int i = 0; alpn.size() < alpn_bytes; ++i) {
      const std::string p = "proto-" + std::to_string(i) + std::string(200, 'x');
      alpn.push_back(uint8_t(p.size()));
      alpn.insert(alpn.end(), p.begin(), p.end());
    }
    SSL_set_alpn_protos(ssl, alpn.data(), unsigned(alpn.size()));
  }
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, rbio, wbio);
  if (sni && *sni) SSL_set_tlsext_host_name(ssl, sni);
  SSL_connect(ssl);  // writes the ClientHello, then wants to read
  std::vector<uint8_t> out(size_t(BIO_pending(wbio)));
  BIO_read(wbio, out.data(), int(out.size()));
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return out;
}

std::string sni_of(const std::vector<uint8_t>& stream, SniStatus* status = nullptr) {
  std::vector<uint8_t> buf(kMaxClientHello + 4);
  SniResult r = sni_from_tls_stream(stream, buf);
  if (status) *status = r.status;
  return r.status == SniStatus::Found ? std::string(r.name) : std::string("<") + sni_status_name(r.status) + ">";
}

void whole_hello(void**) {
  auto hello = real_client_hello("App.Example.org");
  assert_true(hello.size() > 100);
  assert_string_equal(sni_of(hello).c_str(), "App.Example.org");
  assert_string_equal(sni_of(real_client_hello("tls12.example", TLS1_2_VERSION)).c_str(), "tls12.example");
  assert_string_equal(sni_of(real_client_hello("")).c_str(), "<no_name>");
  // Followed by more bytes (say, early data the client pipelined): the ClientHello alone decides.
  hello.insert(hello.end(), {23, 3, 3, 0, 5, 1, 2, 3, 4, 5});
  assert_string_equal(sni_of(hello).c_str(), "App.Example.org");
}

void cut_at_every_byte(void**) {
  const auto hello = real_client_hello("cut.example.net");
  for (size_t n = 0; n < hello.size(); ++n) {
    SniStatus st;
    std::string got = sni_of(std::vector<uint8_t>(hello.begin(), hello.begin() + long(n)), &st);
    // A prefix either asks for more or already found the name (the name may come before the end).
    if (st != SniStatus::NeedMore && !(st == SniStatus::Found && got == "cut.example.net"))
      fail_msg("prefix of %zu/%zu bytes: %s", n, hello.size(), got.c_str());
  }
}

void many_small_records(void**) {
  // The handshake message re-framed into records of 7 bytes each (legal, and used to evade naive readers).
  const auto hello = real_client_hello("split.example.com");
  const std::vector<uint8_t> msg(hello.begin() + 5, hello.end());
  std::vector<uint8_t> stream;
  for (size_t off = 0; off < msg.size(); off += 7) {
    const size_t n = std::min<size_t>(7, msg.size() - off);
    stream.insert(stream.end(), {22, 3, 1, 0, uint8_t(n)});
    stream.insert(stream.end(), msg.begin() + long(off), msg.begin() + long(off + n));
  }
  assert_string_equal(sni_of(stream).c_str(), "split.example.com");
  // The same, but a buffer too small to hold the message: refused, not overrun.
  std::vector<uint8_t> tiny(64);
  assert_int_equal(int(sni_from_tls_stream(stream, tiny).status), int(SniStatus::TooBig));
}

void hostile(void**) {
  assert_string_equal(sni_of({'G', 'E', 'T', ' ', '/'}).c_str(), "<not_tls>");
  assert_string_equal(sni_of({0x16}).c_str(), "<need_more>");
  assert_string_equal(sni_of({0x16, 0x07}).c_str(), "<not_tls>");
  assert_string_equal(sni_of({0x17, 3, 3, 0, 1, 0}).c_str(), "<not_tls>");  // application data first
  assert_string_equal(sni_of({0x16, 3, 1, 0, 0}).c_str(), "<malformed>");   // empty record
  assert_string_equal(sni_of({0x16, 3, 1, 0, 4, 2, 0, 0, 0}).c_str(), "<not_tls>");  // ServerHello
  // A ClientHello claiming more than 32 KB.
  assert_string_equal(sni_of({0x16, 3, 1, 0, 4, 1, 0x01, 0x00, 0x00}).c_str(), "<too_big>");
  // Lengths that lie: the server_name list longer than its extension.
  auto hello = real_client_hello("lie.example");
  std::vector<uint8_t> msg(hello.begin() + 5, hello.end());
  // Find the SNI extension (type 0, then length) and break its inner list length.
  bool broken = false;
  for (size_t i = 40; i + 9 < msg.size(); ++i)
    if (msg[i] == 0 && msg[i + 1] == 0 && msg[i + 6] == 0 && std::memcmp(&msg[i + 9], "lie.example", 11) == 0) {
      msg[i + 4] = 0x7f;  // the list length, high byte
      broken = true;
      break;
    }
  assert_true(broken);
  std::vector<uint8_t> stream = {22, 3, 1, uint8_t(msg.size() >> 8), uint8_t(msg.size())};
  stream.insert(stream.end(), msg.begin(), msg.end());
  assert_string_equal(sni_of(stream).c_str(), "<malformed>");
  // Names that are not hostnames are not names.
  assert_false(plausible_hostname("a..b"));
  assert_false(plausible_hostname(std::string("a\0b", 3)));
  assert_false(plausible_hostname("a b"));
  assert_true(plausible_hostname("xn--bcher-kva.example"));
  // Random bytes after a valid record header never crash and never find a name that is not there.
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> junk = {22, 3, 1, 0, uint8_t(rng() % 200 + 1), 1};
    for (int k = 0; k < int(rng() % 220); ++k) junk.push_back(uint8_t(rng()));
    std::vector<uint8_t> buf(kMaxClientHello);
    SniResult r = sni_from_tls_stream(junk, buf);
    if (r.status == SniStatus::Found) assert_true(plausible_hostname(r.name));
  }
}

// ClientHellos up to kMaxClientHello (32 KiB) are read, over several records; larger ones are too big.
void big_hellos(void**) {
  const auto big = real_client_hello("big.example", TLS1_3_VERSION, 20000);
  assert_true(big.size() > 20000);
  assert_true(big[3] == 0x40 && big[4] == 0x00);  // a first record of 16 kB: the message spans two
  assert_string_equal(sni_of(big).c_str(), "big.example");
  const auto huge = real_client_hello("huge.example", TLS1_3_VERSION, 40000);
  assert_true(huge.size() > 40000);
  assert_string_equal(sni_of(huge).c_str(), "<too_big>");
}

// tls_hello_complete says "complete" once the whole ClientHello is there (and not before), however the stream is
// cut and framed; whole-stream reading at that point finds the name.
void incremental_complete(void**) {
  const auto hello = real_client_hello("inc.example.net");
  const std::vector<uint8_t> msg(hello.begin() + 5, hello.end());
  std::vector<uint8_t> small_records;
  for (size_t off = 0; off < msg.size(); off += 3) {
    const size_t n = std::min<size_t>(3, msg.size() - off);
    small_records.insert(small_records.end(), {22, 3, 1, 0, uint8_t(n)});
    small_records.insert(small_records.end(), msg.begin() + long(off), msg.begin() + long(off + n));
  }
  const auto big = real_client_hello("inc.example.net", TLS1_3_VERSION, 20000);
  const std::vector<uint8_t>* streams[] = {&hello, &small_records, &big};
  for (const std::vector<uint8_t>* stream : streams) {
    for (size_t step : {size_t(1), size_t(5), size_t(64), size_t(1400)}) {
      uint32_t next_record = 0, hello_bytes = 0;
      bool done = false;
      for (size_t n = step; !done; n += step) {
        const size_t at = std::min(n, stream->size());
        done = tls_hello_complete({stream->data(), at}, next_record, hello_bytes);
        if (done != (at == stream->size())) fail_msg("cut at %zu of %zu: complete=%d", at, stream->size(), done);
      }
      assert_string_equal(sni_of(*stream).c_str(), "inc.example.net");
    }
  }
  // What the reader refuses at once is "complete" too (so that it gets read).
  uint32_t a = 0, b = 0;
  const std::vector<uint8_t> app = {23, 3, 3, 0, 1, 0};
  assert_true(tls_hello_complete(app, a, b));
  a = b = 0;
  const std::vector<uint8_t> server_hello = {22, 3, 3, 0, 4, 2, 0, 0, 0};
  assert_true(tls_hello_complete(server_hello, a, b));
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(whole_hello),
      cmocka_unit_test(cut_at_every_byte),
      cmocka_unit_test(many_small_records),
      cmocka_unit_test(hostile),
      cmocka_unit_test(big_hellos),
      cmocka_unit_test(incremental_complete),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
