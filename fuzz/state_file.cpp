// dpctld's state file (control/state_store.hpp), read by load_state() from a file as dpctld does at start.
// load_state() turns every problem into an error message, so anything escaping it is a finding, as are crashes
// and sanitizer reports. Property: a state that loads is written back (encode_state, as save_state writes it)
// into a document that loads again to the same state: dpctld can always read what it wrote.
#include <cstdio>
#include <string>

#include "control/state_store.hpp"
#include "fuzz/fuzz.hpp"

using namespace dptun;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::TempFile file;
  std::string error;
  const auto state = load_state(file.write({data, size}), error);
  if (!state) {
    FUZZ_CHECK(!error.empty());
    FUZZ_LOG("%s\n", error.c_str());
    return 0;
  }
  FUZZ_LOG("loaded: %zu tunnels, %zu entry points, %zu rules\n", state->tunnels.size(), state->entry_points.size(),
           state->ingress.size());
  const nlohmann::json written = encode_state(*state);
  const std::string text = written.dump(2) + "\n";
  std::string again_error;
  const auto again = load_state(file.write({reinterpret_cast<const uint8_t*>(text.data()), text.size()}), again_error);
  if (!again) {
    std::fprintf(stderr, "the state written back does not load: %s\n%s", again_error.c_str(), text.c_str());
    FUZZ_CHECK(!"what dpctld writes loads back");
  }
  FUZZ_CHECK(encode_state(*again) == written);
  return 0;
}
