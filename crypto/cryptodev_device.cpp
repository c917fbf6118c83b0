#include "crypto/cryptodev_device.hpp"

#include <rte_bus_vdev.h>
#include <rte_cryptodev.h>
#include <rte_dev.h>

#include <regex>

namespace dptun {

namespace {

// Every crypto device EAL knows, "name (driver)", for error messages.
std::string present_devices() {
  std::string out;
  for (unsigned d = 0; d < RTE_CRYPTO_MAX_DEVS; ++d) {
    if (!rte_cryptodev_is_valid_dev(uint8_t(d))) continue;
    rte_cryptodev_info info;
    rte_cryptodev_info_get(uint8_t(d), &info);
    out += std::string(out.empty() ? "" : ", ") + rte_cryptodev_name_get(uint8_t(d)) + " (" + info.driver_name + ")";
  }
  return out.empty() ? "none" : out;
}

}  // namespace

std::string cryptodev_pci_address(const std::string& device) {
  static const std::regex pci("^(([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}:[0-9a-fA-F]{2}\\.[0-7])(_.*)?$");
  std::smatch m;
  const std::string head = device.substr(0, device.find(','));
  if (!std::regex_match(head, m, pci)) return "";
  return (m[2].matched ? m[2].str() : std::string("0000")) + ":" + m[3].str();
}

bool cryptodev_has_gcm(uint8_t dev_id, uint32_t aad_len, std::string& error) {
  rte_cryptodev_info info;
  rte_cryptodev_info_get(dev_id, &info);
  rte_cryptodev_sym_capability_idx idx{};
  idx.type = RTE_CRYPTO_SYM_XFORM_AEAD;
  idx.algo.aead = RTE_CRYPTO_AEAD_AES_GCM;
  const rte_cryptodev_symmetric_capability* cap = rte_cryptodev_sym_capability_get(dev_id, &idx);
  const std::string who = std::string("crypto device ") + rte_cryptodev_name_get(dev_id) + " (" + info.driver_name + ")";
  if (!cap) {
    error = who + " lacks AES-GCM";
    return false;
  }
  const uint16_t aad = uint16_t(aad_len);
  if (rte_cryptodev_sym_capability_check_aead(cap, 16, 16, aad, 12) != 0 ||
      rte_cryptodev_sym_capability_check_aead(cap, 32, 16, aad, 12) != 0) {
    error = who + " lacks AES-GCM with 128- and 256-bit keys, a 16-byte tag, a 12-byte IV and " +
            std::to_string(aad_len) + " bytes of AAD";
    return false;
  }
  return true;
}

std::optional<uint8_t> cryptodev_find(const std::string& device, std::string& error) {
  const size_t comma = device.find(',');
  const std::string name = device.substr(0, comma);
  if (name.empty()) {
    error = "no crypto device named (empty name)";
    return std::nullopt;
  }
  int id = rte_cryptodev_get_dev_id(name.c_str());
  if (id >= 0) return uint8_t(id);

  const std::string pci = cryptodev_pci_address(name);
  if (!pci.empty() && name.find('_') == std::string::npos) {
    // A PCI address: its crypto device with symmetric AES-GCM (a QAT function also has an asymmetric one).
    for (unsigned d = 0; d < RTE_CRYPTO_MAX_DEVS; ++d) {
      if (!rte_cryptodev_is_valid_dev(uint8_t(d))) continue;
      rte_cryptodev_info info;
      rte_cryptodev_info_get(uint8_t(d), &info);
      std::string unused;
      if (info.device && pci == rte_dev_name(info.device) && cryptodev_has_gcm(uint8_t(d), 16, unused))
        return uint8_t(d);
    }
    error = "no crypto device with AES-GCM on PCI device " + pci +
            " (is it bound to vfio-pci and allowed with -a? crypto devices present: " + present_devices() + ")";
    return std::nullopt;
  }
  if (!pci.empty()) {
    error = "no crypto device '" + name + "' (crypto devices present: " + present_devices() +
            "; a PCI device's must be bound to vfio-pci and allowed with -a)";
    return std::nullopt;
  }
  const std::string args = comma == std::string::npos ? "" : device.substr(comma + 1);
  if (rte_vdev_init(name.c_str(), args.c_str()) != 0) {
    error = "no crypto device '" + name + "', and no vdev driver creates one (crypto devices present: " +
            present_devices() + "; a software one needs DPDK's PMD, e.g. crypto_aesni_gcm from ipsec_mb)";
    return std::nullopt;
  }
  id = rte_cryptodev_get_dev_id(name.c_str());
  if (id < 0) {
    rte_vdev_uninit(name.c_str());
    error = "vdev '" + name + "' is not a crypto device (crypto devices present: " + present_devices() + ")";
    return std::nullopt;
  }
  return uint8_t(id);
}

void* cryptodev_gcm_session(uint8_t dev_id, rte_mempool* pool, std::span<const uint8_t> key, AeadDirection dir,
                            uint32_t aad_len, uint16_t iv_offset) {
  rte_crypto_sym_xform xform{};
  xform.type = RTE_CRYPTO_SYM_XFORM_AEAD;
  xform.aead.op = dir == AeadDirection::Encrypt ? RTE_CRYPTO_AEAD_OP_ENCRYPT : RTE_CRYPTO_AEAD_OP_DECRYPT;
  xform.aead.algo = RTE_CRYPTO_AEAD_AES_GCM;
  xform.aead.key.data = key.data();
  xform.aead.key.length = uint16_t(key.size());
  xform.aead.iv.offset = iv_offset;
  xform.aead.iv.length = kAeadIvLen;
  xform.aead.digest_length = kAeadTagLen;
  xform.aead.aad_length = uint16_t(aad_len);
  return rte_cryptodev_sym_session_create(dev_id, &xform, pool);
}

}  // namespace dptun
