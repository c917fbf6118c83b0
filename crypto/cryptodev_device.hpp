// Finding the DPDK crypto device a config names, for both cryptodev engines. Needs an initialised EAL.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "crypto/aead.hpp"

struct rte_mempool;

namespace dptun {

// `device` is one of:
//   - a cryptodev that exists ("crypto_aesni_gcm0", or a PCI device's "0000:3d:01.0_qat_sym");
//   - a PCI address ("0000:3d:01.0" or "3d:01.0"): the first crypto device on it with symmetric AES-GCM
//     (EAL must have probed it: dpgw allow-lists it with -a);
//   - a vdev to create, "name[,args]" ("crypto_aesni_gcm1,max_nb_queue_pairs=4").
// Returns its id, or nullopt with `error` saying what was tried and which crypto devices exist.
std::optional<uint8_t> cryptodev_find(const std::string& device, std::string& error);

// The PCI address (with its domain, "0000:3d:01.0") a device string starts with: a PCI address alone, or a
// cryptodev name made from one ("0000:3d:01.0_qat_sym"); "" when it names no PCI device.
std::string cryptodev_pci_address(const std::string& device);

// AES-GCM with 128- and 256-bit keys, a 16-byte tag, a 12-byte IV and `aad_len` bytes of AAD; `error` names the
// device and what it lacks.
bool cryptodev_has_gcm(uint8_t dev_id, uint32_t aad_len, std::string& error);

// A symmetric AES-GCM session (key 16 or 32 bytes, kAeadTagLen tag, kAeadIvLen IV read at `iv_offset` of each op:
// 0 for CPU crypto, which takes IV pointers) from `pool`; nullptr when the device refuses or the pool is empty.
void* cryptodev_gcm_session(uint8_t dev_id, rte_mempool* pool, std::span<const uint8_t> key, AeadDirection dir,
                            uint32_t aad_len, uint16_t iv_offset);

}  // namespace dptun
