#include "crypto/ipsec_mb_managers.hpp"

#include <intel-ipsec-mb.h>

namespace dptun {

bool IpsecMbManagers::open(unsigned threads, std::string& error) {
  mgrs_ = std::make_unique<IMB_MGR*[]>(threads);
  for (unsigned t = 0; t < threads; ++t) {
    IMB_MGR* m = alloc_mb_mgr(0);
    if (!m) {
      error = "ipsec-mb: cannot allocate a manager";
      return false;
    }
    mgrs_[t] = m;
    threads_ = t + 1;
    IMB_ARCH arch = IMB_ARCH_NONE;
    init_mb_mgr_auto(m, &arch);
    if (imb_get_errno(m) != 0 || arch == IMB_ARCH_NONE || arch == IMB_ARCH_NOAESNI) {
      error = std::string("ipsec-mb cannot run on this CPU: ") +
              (imb_get_errno(m) ? imb_get_strerror(imb_get_errno(m)) : "no AES-NI");
      return false;
    }
    arch_ = arch == IMB_ARCH_SSE ? "sse" : arch == IMB_ARCH_AVX ? "avx" : arch == IMB_ARCH_AVX2 ? "avx2" : "avx512";
  }
  return true;
}

IpsecMbManagers::~IpsecMbManagers() {
  for (unsigned t = 0; t < threads_; ++t) free_mb_mgr(mgrs_[t]);
}

}  // namespace dptun
