// Runs a fuzz harness without libFuzzer: every file named on the command line, and every regular file directly
// inside a directory named there, is fed once to LLVMFuzzerTestOneInput. Subdirectories are not read:
// fuzz/corpus/<harness>/pending/ keeps crashing inputs whose fix is still to come (docs/testing.md).
// Exit status 0 when every input went through, 1 when there was nothing to replay; a finding aborts.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "fuzz/fuzz.hpp"

namespace {

bool is_regular(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::vector<std::string> files_of(const std::string& arg) {
  std::vector<std::string> out;
  if (DIR* d = opendir(arg.c_str())) {
    while (const dirent* e = readdir(d)) {
      const std::string path = arg + "/" + e->d_name;
      if (e->d_name[0] != '.' && is_regular(path)) out.push_back(path);
    }
    closedir(d);
    std::sort(out.begin(), out.end());
  } else if (is_regular(arg)) {
    out.push_back(arg);
  } else {
    std::fprintf(stderr, "%s: neither a file nor a directory\n", arg.c_str());
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE_OR_DIRECTORY...\n", argv[0]);
    return 2;
  }
  size_t replayed = 0;
  for (int i = 1; i < argc; ++i) {
    for (const std::string& path : files_of(argv[i])) {
      std::ifstream in(path, std::ios::binary);
      std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (!in.eof() && in.fail()) {
        std::fprintf(stderr, "%s: cannot read\n", path.c_str());
        return 1;
      }
      std::fprintf(stderr, "replaying %s (%zu bytes)\n", path.c_str(), data.size());
      // A copy of exactly the input's size on the heap (never a null pointer, even when empty), as libFuzzer
      // passes it: ASan sees any read past it.
      std::unique_ptr<uint8_t[]> exact(new uint8_t[data.size()]);
      std::copy(data.begin(), data.end(), exact.get());
      LLVMFuzzerTestOneInput(exact.get(), data.size());
      ++replayed;
    }
  }
  std::printf("%zu inputs replayed\n", replayed);
  return replayed ? 0 : 1;
}
