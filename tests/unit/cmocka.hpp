// cmocka for C++ test programs: the headers it expects first, and small helpers shared by the tests.
#pragma once
// clang-format off
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <csetjmp>
extern "C" {
#include <cmocka.h>
}
// clang-format on

#include <string>
#include <vector>

namespace dptun::test {

inline std::vector<uint8_t> from_hex(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(uint8_t(std::stoul(hex.substr(i, 2), nullptr, 16)));
  return out;
}

}  // namespace dptun::test
