// The server name in a QUIC version 1 client's Initials (RFC 9000 17.2.2, RFC 9001 5): each packet is
// unprotected with the Initial keys its Destination Connection ID gives (anyone can derive them; that is by
// design), its CRYPTO frames are put back in order, and the ClientHello in them is read. A ClientHello may span
// several Initials (post-quantum key shares make it ~1.8 kB; browsers scatter its pieces over both packets):
// begin(), then add() each datagram of the connection. One reader per worker: the OpenSSL contexts are made
// once, and reading never allocates.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string_view>

#include "crypto/quic_keys.hpp"
#include "ingress/client_hello.hpp"

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace dptun {

enum class QuicStatus : uint8_t {
  Found,         // `name` holds the server name
  NoName,        // a ClientHello without a usable server name
  NeedMore,      // the ClientHello goes on in a later packet
  NotInitial,    // not a QUIC v1 client Initial (short header, other version or type)
  Malformed,     // an Initial that breaks the rules
  DecryptFailed, // the payload does not authenticate with the Initial keys
};

const char* quic_status_name(QuicStatus s);

struct QuicResult {
  QuicStatus status;
  std::string_view name;  // points into the reader: valid until its next begin(), read(), add() or result()
};

struct QuicInitialKeys {
  std::array<uint8_t, 16> key;
  std::array<uint8_t, 12> iv;
  std::array<uint8_t, 16> hp;
};

// The Destination Connection ID of a datagram that starts with a QUIC v1 client Initial (long header, type
// Initial, at least 1200 bytes), without decrypting anything; empty when it does not.
std::span<const uint8_t> quic_initial_dcid(std::span<const uint8_t> datagram);

class QuicInitialReader {
 public:
  QuicInitialReader();
  ~QuicInitialReader();
  QuicInitialReader(const QuicInitialReader&) = delete;
  QuicInitialReader& operator=(const QuicInitialReader&) = delete;
  bool ok() const { return ecb_ && gcm_ && kdf_.ok(); }

  // `datagram`: one UDP payload; its first QUIC packet is read, alone.
  QuicResult read(std::span<const uint8_t> datagram) {
    begin();
    return add(datagram);
  }
  // Starts on a connection's Initials: forgets what earlier add() calls read (and the connection's keys).
  void begin() { pieces_ = 0; dcid_len_ = 0xff; }
  // Reads the first QUIC packet of one more datagram of the connection (in any order) into its CRYPTO stream
  // and says what the stream gives so far. NotInitial, Malformed or DecryptFailed: this datagram could not be
  // read (a different Destination Connection ID counts as Malformed); what earlier ones gave stays.
  QuicResult add(std::span<const uint8_t> datagram);
  // What the CRYPTO stream read since begin() gives.
  QuicResult result();

  // The client's Initial keys for a Destination Connection ID (RFC 9001 5.2); false on a crypto failure.
  bool client_keys(std::span<const uint8_t> dcid, QuicInitialKeys& out);
  // AES-ECB(hp, sample): the header protection mask (RFC 9001 5.4.3).
  bool header_mask(const std::array<uint8_t, 16>& hp, const uint8_t* sample, uint8_t mask[16]);

 private:

  EVP_CIPHER_CTX* ecb_ = nullptr;
  EVP_CIPHER_CTX* gcm_ = nullptr;
  QuicKdf kdf_;  // the Initial secrets and keys (crypto/quic_keys.hpp)
  std::array<uint8_t, 2048> plain_;               // the decrypted payload
  std::array<uint8_t, 2112> header_;              // the unprotected header (tokens can be long)
  std::array<uint8_t, kMaxClientHello> crypto_;   // CRYPTO stream bytes from offset 0
  // Which ranges of crypto_ the Initials read since begin() filled. Browsers scatter a ClientHello over many
  // CRYPTO frames (Chrome's chaos protection: up to 11 per packet).
  static constexpr size_t kMaxPieces = 128;
  std::array<uint64_t, kMaxPieces> piece_start_, piece_end_;
  size_t pieces_ = 0;
  std::array<uint8_t, 20> dcid_{};  // the connection's Destination Connection ID (its first Initial's)
  uint8_t dcid_len_ = 0xff;         // 0xff: no Initial read yet
  QuicInitialKeys keys_{};          // the client's Initial keys for dcid_
};

}  // namespace dptun
