// The gateway's tunnels, sessions and entry points as the control lcore manages them: created from the config
// at start, changed at runtime by dpctld over the control socket, and published to the workers after every
// change (new immutable tables, the old ones retired after an RCU grace period; workers never pause).
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/inet.hpp"
#include "common/uuid.hpp"
#include "dataplane/tables/dataplane.hpp"
#include "dataplane/main_lcore/gateway_config.hpp"
#include "dataplane/hostname/ingress_table.hpp"
#include "dataplane/tables/reclaimer.hpp"
#include "dataplane/tables/session.hpp"
#include "proto/gateway_specs.hpp"

namespace dptun {

class GatewayState {
 public:
  GatewayState(Dataplane& dp, SessionKeyManager& keys, Reclaimer& reclaimer);
  ~GatewayState();  // workers must be stopped
  GatewayState(const GatewayState&) = delete;
  GatewayState& operator=(const GatewayState&) = delete;

  // Each returns false with `error` set (and changes nothing) when the request is invalid.
  bool set_tunnel(const TunnelSpec& t, std::string& error);
  bool remove_tunnel(const Uuid& id, std::string& error);  // with its sessions and entry points
  bool add_session(const SessionSpec& s, std::string& error);
  bool remove_session(uint32_t index, std::string& error);
  bool set_entry(const EntrySpec& e, std::string& error);
  bool remove_entry(uint8_t proto, uint16_t port, std::string& error);
  // Makes what dpctld owns equal to the given sets; config-owned objects stay. Sessions missing from the set
  // that still carry traffic stay as orphans until they go quiet (a restarted dpctld does not cut agents off).
  bool sync(const std::vector<TunnelSpec>& tunnels, const std::vector<SessionSpec>& sessions,
            const std::vector<EntrySpec>& entries, std::string& error);
  // Makes what dpgw's own config defines (static tunnels, their peers, entry points) equal to `cfg`: at start,
  // and again when the config is reloaded (SIGHUP). Unchanged objects are left alone, so their flows go on; a
  // peer whose key or endpoint changed is replaced. All or nothing: on error (say, a tunnel name dpctld already
  // uses) nothing changed. `changes` gets one line per change, for the log.
  bool apply_config(const GatewayConfig& cfg, std::string& error, std::vector<std::string>* changes = nullptr);
  // The hostname rules (the whole list): compiled off the control lcore, published when ready.
  void set_ingress(std::vector<IngressRuleSpec> rules) { ingress_.set_rules(std::move(rules)); }
  const IngressTableBuilder& ingress() const { return ingress_; }
  // The direct-path pairs whose pair frames the workers relay (the whole list, as pair_set carries it): a new pair
  // table is published at once (dataplane/tables/pair_table.hpp), the old one retired. A pair may name a session dpgw
  // does not have (yet): it is kept, and relays nothing until both sessions are there. Neither sync nor a session's
  // removal changes the list; only the next set_pairs does.
  void set_pairs(std::vector<PairSpec> pairs);
  const std::vector<PairSpec>& pairs() const { return pairs_; }

  // Publishes the entry table even when it is empty (called once at start).
  void publish_all() { publish_entries(); }
  // Control tick: keys for every session, orphans that went quiet removed.
  void maintain(uint64_t now_ns, uint64_t real_ns);

  struct TunnelRec {
    Uuid id;
    std::string name;
    uint16_t slot = 0;
    uint32_t generation = 0;
    bool from_config = false;
    std::vector<uint32_t> sessions;  // agents: the pool
    std::vector<uint32_t> visitors;  // visitors: not in the pool
  };
  const std::map<std::string, TunnelRec>& tunnels() const { return tunnels_; }
  const std::map<uint32_t, TunnelSession*>& sessions() const { return sessions_; }
  const std::vector<EntrySpec>& entries() const { return entries_; }
  bool orphaned(uint32_t index) const { return orphans_.count(index) != 0; }

 private:
  // Why a UDP entry point may not take `port` (it is dpgw's tunnel or STUN port), or nullptr when it may.
  const char* reserved_udp_port(uint16_t port) const;
  TunnelRec* find_tunnel(const Uuid& id);
  void publish_tunnel(TunnelRec& t);
  void publish_entries();
  void drop_session(uint32_t index);

  Dataplane& dp_;
  SessionKeyManager& keys_;
  Reclaimer& reclaimer_;
  std::vector<bool> slot_used_;
  uint32_t next_generation_ = 1;
  uint32_t next_session_serial_ = 1;
  std::map<std::string, TunnelRec> tunnels_;     // by id text
  std::map<uint32_t, TunnelSession*> sessions_;  // owned; published in dp_.sessions
  std::map<uint32_t, bool> orphans_;
  std::vector<EntrySpec> entries_;
  IngressTableBuilder ingress_;
  std::vector<PairSpec> pairs_;
};

}  // namespace dptun
