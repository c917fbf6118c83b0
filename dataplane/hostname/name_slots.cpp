// Name slots: the hostname of a flow whose agent picks the target (hostname rules without a target), kept until
// the agent has answered, so that it can ride along in the flow's first frames (docs/protocol.md, name trailer).
#include <algorithm>

#include "dataplane/loop/worker.hpp"

namespace dptun {

// Keeps the hostname of a flow whose agent picks the target, until the agent has answered.
bool Worker::hold_name(Flow& f, std::string_view name) {
  const uint32_t slot = names_.acquire(flows_.id_of(f));
  if (slot == BindingBuffers::kNone) return false;
  names_.append(slot, {reinterpret_cast<const uint8_t*>(name.data()), std::min<size_t>(name.size(), 253)});
  f.name_slot = slot;
  f.agent_routed = true;
  return true;
}

std::span<const uint8_t> Worker::held_name(const Flow& f) const {
  const uint32_t b = f.name_slot;
  // Only a slot this flow still owns (the sweep gives back slots of flows that expired, and they get reused).
  if (b == BindingBuffers::kNone || !names_.used(b) || names_.owner(b) != flows_.id_of(f)) return {};
  return names_.bytes(b);
}

void Worker::release_name(Flow& f) {
  const uint32_t b = f.name_slot;
  if (b != BindingBuffers::kNone && names_.used(b) && names_.owner(b) == flows_.id_of(f)) names_.release(b);
  f.name_slot = BindingBuffers::kNone;
}

}  // namespace dptun
