// Name slots: the hostname of a flow whose agent picks the target (hostname rules without a target), kept until
// the agent has answered, so that it can ride along in the flow's first frames (docs/protocol.md, name trailer).
#include <algorithm>

#include "dataplane/hostname/name_slots.hpp"

namespace dptun {

bool NameSlots::hold(Flow& f, std::string_view name) {
  const uint32_t slot = slots_.acquire(flows_.id_of(f));
  if (slot == BindingBuffers::kNone) return false;
  slots_.append(slot, {reinterpret_cast<const uint8_t*>(name.data()), std::min<size_t>(name.size(), 253)});
  f.name_slot = slot;
  f.agent_routed = true;
  return true;
}

std::span<const uint8_t> NameSlots::held(const Flow& f) const {
  const uint32_t b = f.name_slot;
  // Only a slot this flow still owns (the sweep gives back slots of flows that expired, and they get reused).
  if (b == BindingBuffers::kNone || !slots_.used(b) || slots_.owner(b) != flows_.id_of(f)) return {};
  return slots_.bytes(b);
}

void NameSlots::release(Flow& f) {
  const uint32_t b = f.name_slot;
  if (b != BindingBuffers::kNone && slots_.used(b) && slots_.owner(b) == flows_.id_of(f)) slots_.release(b);
  f.name_slot = BindingBuffers::kNone;
}

}  // namespace dptun
