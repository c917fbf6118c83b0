// Name slots: the hostname of a flow whose agent picks the target (a hostname rule without a target), kept from the
// flow's first packet until the agent has answered, so that it rides in the flow's frames as the name trailer
// (docs/protocol.md). 4096 slots of 256 bytes per worker (1 MiB). Touches the worker's flow table: a slot belongs
// to a flow id, and the sweep gives back the slots of flows that ended. Counts nothing: a flow without a slot is
// refused by flow setup (binding_full).
#pragma once
#include <cstdint>
#include <span>
#include <string_view>

#include "dataplane/hostname/binding_buffers.hpp"
#include "dataplane/tables/flow_table.hpp"

namespace dptun {

class NameSlots {
 public:
  static constexpr uint32_t kSlots = 4096;
  static constexpr uint32_t kSlotBytes = 256;  // a 253-byte name
  explicit NameSlots(FlowTable& flows) : flows_(flows), slots_(kSlots, kSlotBytes) {}
  bool hold(Flow& f, std::string_view name);  // keeps `name` for flow `f`; false when no slot is free
  std::span<const uint8_t> held(const Flow& f) const;  // the name `f` holds, or empty
  void release(Flow& f);                               // the agent has answered, or the flow ends
  // Gives back the slots of flows that ended, looking at the next `budget` slots. The worker paces it by time: all
  // kSlots once per kSweepPeriodNs (a flow that finds none free is refused, so a tenth of a second: 40 960 a second).
  static constexpr uint64_t kSweepPeriodNs = 100'000'000ull;
  void sweep(uint32_t budget, uint64_t now_ns) {
    release_unheld(slots_, cursor_, budget, flows_, now_ns, [](const Flow& f, uint32_t b) { return f.name_slot == b; });
  }

 private:
  FlowTable& flows_;
  BindingBuffers slots_;
  uint32_t cursor_ = 0;
};

}  // namespace dptun
