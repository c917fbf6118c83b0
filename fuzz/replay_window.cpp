// The anti-replay windows (crypto/replay_window.hpp) against a reference model that keeps every accepted
// counter in a std::set instead of a bitmap. The input is a sequence of counters, each given as a step from the
// previous one ([u8 step][argument]: +1, small and large moves both ways, rekeys to a later epoch, the end of
// the previous epoch, any value, the same again). Both ReplayWindow and EpochReplayWindow see the sequence;
// for each counter check() must agree with the model and not change anything, accept() must agree with it,
// and no counter is ever accepted twice.
#include <set>

#include "crypto/key_schedule.hpp"
#include "crypto/replay_window.hpp"
#include "fuzz/fuzz.hpp"

using namespace dptun;

namespace {

constexpr uint64_t kTracked = ReplayWindow::kTracked;

// One window: accepts a counter above the top, or within kTracked below it when not seen before.
struct ModelWindow {
  bool any = false;
  uint64_t top = 0;
  std::set<uint64_t> seen;
  bool check(uint64_t c) const { return !any || c > top || (top - c < kTracked && !seen.count(c)); }
  bool accept(uint64_t c) {
    if (!check(c)) return false;
    if (!any || c > top) top = c;
    any = true;
    seen.insert(c);
    return true;
  }
};

// Two windows: the newest epoch's and the one that was newest before it.
struct ModelEpochWindow {
  bool any = false, has_previous = false;
  uint64_t epoch = 0, previous_epoch = 0;
  ModelWindow current, previous;
  bool check(uint64_t c) const {
    const uint64_t e = c >> 32;
    if (!any || e > epoch) return true;
    if (e == epoch) return current.check(c);
    return has_previous && e == previous_epoch && previous.check(c);
  }
  bool accept(uint64_t c) {
    const uint64_t e = c >> 32;
    if (!any || e > epoch) {
      has_previous = any;
      if (any) {
        previous = std::move(current);
        previous_epoch = epoch;
      }
      current = ModelWindow{};
      epoch = e;
      any = true;
    }
    if (e == epoch) return current.accept(c);
    return has_previous && e == previous_epoch && previous.accept(c);
  }
};

uint64_t next_counter(fuzz::Input& in, uint64_t c) {
  switch (in.u8() & 7) {
    case 0: return c + 1;
    case 1: return c - in.u8();
    case 2: return c + in.u16();
    case 3: return c - in.u16();  // past the window's edge (4032) and the bitmap's (4096)
    case 4: return first_counter_of(epoch_of(c) + 1 + (in.u8() & 3)) + in.u8();
    case 5: return in.u64();
    case 6: return first_counter_of(epoch_of(c)) - 1 - in.u8();
    default: return c;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in({data, size});
  ReplayWindow w;
  EpochReplayWindow ew;
  ModelWindow mw;
  ModelEpochWindow mew;
  std::set<uint64_t> accepted, accepted_epoch;
  uint64_t c = in.u64();
  for (int step = 0; step < 4096 && in.left(); ++step) {
    const bool want = mw.check(c);
    FUZZ_CHECK(w.check(c) == want);
    FUZZ_CHECK(w.check(c) == want);  // check() changes nothing
    FUZZ_CHECK(w.accept(c) == mw.accept(c));
    if (want) FUZZ_CHECK(accepted.insert(c).second);
    FUZZ_CHECK(w.empty() == !mw.any);
    if (mw.any) FUZZ_CHECK(w.top() == mw.top);

    const bool ewant = mew.check(c);
    FUZZ_CHECK(ew.check(c) == ewant);
    FUZZ_CHECK(ew.accept(c) == mew.accept(c));
    if (ewant) FUZZ_CHECK(accepted_epoch.insert(c).second);
    FUZZ_CHECK(ew.top() == (mew.any ? mew.current.top : 0));

    c = next_counter(in, c);
  }
  FUZZ_LOG("%zu counters accepted by the window, %zu by the epoch window\n", accepted.size(), accepted_epoch.size());
  return 0;
}
