// The ngtcp2 callbacks every dptun QUIC endpoint takes from ngtcp2's crypto helper (ngtcp2_crypto.h, GnuTLS
// backend): packet protection, header protection, key updates, path challenges, version negotiation, and the
// Initial's for the endpoint's role; a client also gets GnuTLS's randomness and random connection IDs and reset
// tokens. Callers set their own (streams; a server its connection IDs and randomness) afterwards.
// Header-only: included by code that links libngtcp2 and libngtcp2_crypto_gnutls (dpctld, dpagent, test clients).
#pragma once
#include <gnutls/crypto.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

namespace dptun {

enum class QuicRole : uint8_t { Client, Server };

// ngtcp2's rand callback from GnuTLS's generator.
inline void ngtcp2_gnutls_rand(uint8_t* dest, size_t len, const ngtcp2_rand_ctx*) {
  gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
}
// A random connection ID of `cidlen` bytes and a random stateless reset token (a client's, which nobody resets).
inline int ngtcp2_random_cid(ngtcp2_conn*, ngtcp2_cid* cid, uint8_t* token, size_t cidlen, void*) {
  gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cidlen);
  cid->datalen = cidlen;
  gnutls_rnd(GNUTLS_RND_RANDOM, token, NGTCP2_STATELESS_RESET_TOKENLEN);
  return 0;
}

inline ngtcp2_callbacks ngtcp2_crypto_callbacks(QuicRole role) {
  ngtcp2_callbacks cb{};
  if (role == QuicRole::Client) {
    cb.client_initial = ngtcp2_crypto_client_initial_cb;
    cb.recv_retry = ngtcp2_crypto_recv_retry_cb;
    cb.rand = ngtcp2_gnutls_rand;
    cb.get_new_connection_id = ngtcp2_random_cid;
  } else {
    cb.recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
  }
  cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
  cb.encrypt = ngtcp2_crypto_encrypt_cb;
  cb.decrypt = ngtcp2_crypto_decrypt_cb;
  cb.hp_mask = ngtcp2_crypto_hp_mask_cb;
  cb.update_key = ngtcp2_crypto_update_key_cb;
  cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
  cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
  cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
  cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb;
  return cb;
}

}  // namespace dptun
