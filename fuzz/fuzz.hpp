// Shared by the fuzz harnesses (fuzz/<harness>.cpp, docs/testing.md "Fuzzing"). Each harness defines libFuzzer's
// entry point, LLVMFuzzerTestOneInput, and is linked either with libFuzzer (make fuzz, clang) or with
// fuzz/replay_main.cpp (the `fuzz` meson suite, any compiler), which feeds it the committed corpus.
// A harness returns 0 for every input it handles; a broken property aborts (FUZZ_CHECK), an uncaught exception
// terminates, and the sanitizers report memory errors and undefined behaviour: each of these is a finding.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace dptun::fuzz {

[[noreturn]] inline void check_failed(const char* what, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: fuzz property violated: %s\n", file, line, what);
  std::abort();
}

// A property of the code under test; unlike assert() it is never compiled out.
#define FUZZ_CHECK(cond) ((cond) ? void(0) : ::dptun::fuzz::check_failed(#cond, __FILE__, __LINE__))

// True when `inner` lies entirely inside `outer` (an empty view anywhere counts as inside).
inline bool within(std::span<const uint8_t> inner, std::span<const uint8_t> outer) {
  return inner.data() >= outer.data() && inner.data() + inner.size() <= outer.data() + outer.size();
}
inline bool within(std::string_view inner, std::span<const uint8_t> outer) {
  if (inner.empty()) return true;
  const auto* p = reinterpret_cast<const uint8_t*>(inner.data());
  return p >= outer.data() && p + inner.size() <= outer.data() + outer.size();
}

// Reads structured values off the front of the fuzz input; past its end every read gives zeros, so a harness
// never has to check lengths and every input means something.
class Input {
 public:
  explicit Input(std::span<const uint8_t> in) : rest_(in) {}
  size_t left() const { return rest_.size(); }
  uint8_t u8() {
    if (rest_.empty()) return 0;
    uint8_t v = rest_[0];
    rest_ = rest_.subspan(1);
    return v;
  }
  uint16_t u16() { return uint16_t(u8() << 8 | u8()); }
  uint32_t u32() { return uint32_t(u16()) << 16 | u16(); }
  uint64_t u64() { return uint64_t(u32()) << 32 | u32(); }
  // Up to n bytes (fewer when the input ends).
  std::span<const uint8_t> bytes(size_t n) {
    n = n < rest_.size() ? n : rest_.size();
    auto v = rest_.first(n);
    rest_ = rest_.subspan(n);
    return v;
  }
  std::span<const uint8_t> rest() { return bytes(rest_.size()); }

 private:
  std::span<const uint8_t> rest_;
};

// For loaders that take a path: one temporary file per process, rewritten for every input, removed at exit.
class TempFile {
 public:
  TempFile() {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir && *dir ? dir : "/tmp") + "/dptun-fuzz-XXXXXX";
    fd_ = mkstemp(path_.data());
    if (fd_ < 0) {
      std::perror("mkstemp");
      std::abort();
    }
  }
  ~TempFile() {
    close(fd_);
    unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  // Replaces the file's contents with `data`; returns its path.
  const std::string& write(std::span<const uint8_t> data) {
    if (ftruncate(fd_, 0) != 0 || pwrite(fd_, data.data(), data.size(), 0) != ssize_t(data.size())) {
      std::perror("writing the temporary file");
      std::abort();
    }
    return path_;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

// FUZZ_VERBOSE=1 in the environment: harnesses print what they made of each input (one line to stderr), to see
// what a seed reaches: `FUZZ_VERBOSE=1 build/fuzz/replay_<harness> fuzz/corpus/<harness>`.
inline bool verbose() {
  static const bool on = [] {
    const char* v = std::getenv("FUZZ_VERBOSE");
    return v && *v && *v != '0';
  }();
  return on;
}
#define FUZZ_LOG(...) (::dptun::fuzz::verbose() ? void(std::fprintf(stderr, "  " __VA_ARGS__)) : void(0))

// Findings in code being reworked elsewhere, whose fix is pending (docs/testing.md, "Fuzzing"), keep their inputs
// in fuzz/corpus/<harness>/pending/ (not replayed) and, while they last, a guard in the harness that skips such
// inputs so that fuzzing goes on past them:
//     if (fuzz::pending_guards() && <the input has the known problem>) return 0;  // issue N: what, pending/x
// FUZZ_PENDING=1 in the environment turns the guards off, to reproduce the findings or to see they are fixed.
inline bool pending_guards() {
  static const bool on = [] {
    const char* v = std::getenv("FUZZ_PENDING");
    return !(v && *v == '1');
  }();
  return on;
}

inline bool contains(std::span<const uint8_t> data, std::string_view needle) {
  return std::string_view(reinterpret_cast<const char*>(data.data()), data.size()).find(needle) != std::string_view::npos;
}

}  // namespace dptun::fuzz
