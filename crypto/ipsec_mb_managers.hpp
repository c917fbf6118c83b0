// Per-thread ipsec-mb managers (IMB_MGR), shared by dptun's ipsec-mb engines (AES-GCM, header protection): one
// manager per thread value, initialised for the best instruction set the library finds; freed on destruction.
#pragma once
#include <memory>
#include <string>

struct IMB_MGR;

namespace dptun {

class IpsecMbManagers {
 public:
  // `threads` managers; false and `error` when the library cannot run here (no AES-NI, out of memory).
  bool open(unsigned threads, std::string& error);
  ~IpsecMbManagers();
  IpsecMbManagers() = default;
  IpsecMbManagers(const IpsecMbManagers&) = delete;
  IpsecMbManagers& operator=(const IpsecMbManagers&) = delete;

  IMB_MGR* operator[](unsigned thread) const { return mgrs_[thread]; }
  IMB_MGR** data() const { return mgrs_.get(); }
  unsigned size() const { return threads_; }
  // The instruction set the library chose (sse, avx, avx2, avx512).
  const char* arch() const { return arch_; }

 private:
  std::unique_ptr<IMB_MGR*[]> mgrs_;
  unsigned threads_ = 0;
  const char* arch_ = "";
};

}  // namespace dptun
