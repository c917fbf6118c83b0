// dpctld's view of agent sessions: which agent (certificate, control connection) serves which tunnel with
// which weight, under which receiver index, with which base secret. Indexes come from 32768..65535; 1..32767
// belong to static peers in dpgw's own config.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/inet.hpp"
#include "control/control_protocol.hpp"
#include "control/tls_server.hpp"
#include "common/uuid.hpp"
#include "proto/gateway_specs.hpp"

namespace dptun {

struct SessionRecord {
  uint32_t index = 0;
  Uuid tunnel;
  uint8_t weight = 1;
  bool visitor = false;  // dpagent visit: reaches the tunnel's services, does not serve them
  std::string service;   // a visitor's: the hostname it visits, as it registered (direct paths' data)
  bool pair_data = false;  // its dpagent carries a pair's data (registered with "features":["pair_data"])
  std::string agent_name;
  std::string certificate_subject;
  std::vector<std::string> identities;  // CN=, DNS:, URI: of its certificate (allow lists are checked again)
  X509Ptr certificate;                  // the agent's certificate and chain, verified again after a reload
  X509StackPtr chain;
  Endpoint control_peer;            // the agent's address on its TLS connection
  std::string control_transport = "tcp";  // "tcp" (agent_listen) or "quic" (agent_quic_listen)
  uint64_t registered_unix_ns = 0;
  uint64_t channel = 0;             // id of the live control connection; 0 once it closed (or was handed over)
  std::vector<uint8_t> base_secret; // TLS exporter output; wiped when the record goes
  // The QUIC framing (docs/protocol.md "Key hand-over"): the connection dpgw took over, its 1-RTT secrets wiped
  // when the record goes. Until the agent has acknowledged its registration reply, handover_pending: dpgw does not
  // know the session yet (no SessionAdd, left out of syncs), and dpctld still holds the connection.
  std::optional<QuicSessionSpec> quic;
  // A MASQUE client's session (docs/masque.md): a visitor whose QUIC connection carries HTTP Datagrams of one
  // CONNECT-UDP request to this target.
  std::optional<MasqueSpec> masque;
  std::string masque_host;  // the CONNECT-UDP target the client named (the route's key), checked again after changes
  uint16_t masque_port = 0;
  bool handover_pending = false;
  uint64_t handed_over_mono_ns = 0;
  // NAT traversal (docs/nat-traversal.md): the agent's latest candidates report, when it sent one; the count of
  // reports ignored for what they held.
  std::optional<CandidateReport> candidates;
  uint64_t candidates_gen = 0;  // counts the changes of `candidates` (a pair made before one is remade)
  uint64_t candidates_unix_ns = 0;
  uint64_t candidate_reports_rejected = 0;
  // From the gateway's status:
  bool live = false;                // the gateway hears from the agent (keepalives within its timeout)
  std::string data_endpoint;        // the agent's UDP endpoint as the gateway sees it
  uint64_t flows_pinned = 0;
  uint64_t last_live_mono_ns = 0;   // when it was last seen live (or registered)
};

class SessionRegistry {
 public:
  static constexpr uint32_t kFirstIndex = 32768;
  static constexpr uint32_t kLastIndex = 65535;

  SessionRegistry();  // starts at a random index, so a restarted dpctld rarely hands out an index agents still use
  ~SessionRegistry();
  // A free index, or nullopt when all 32768 are taken. Indexes the gateway still holds (sessions of an earlier
  // dpctld it keeps forwarding for until they fall quiet) and reserved ones are not free.
  std::optional<uint32_t> allocate_index();
  // A free index held for a QUIC connection from its first Initial (its connection IDs carry it) until it
  // registers (add() of a record with that index ends the reservation) or ends (release()). Callers bound how many
  // they hold (the QUIC port's limits on unfinished connections).
  std::optional<uint32_t> reserve_index();
  void release_index(uint32_t index) { reserved_.erase(index); }
  bool reserved(uint32_t index) const { return reserved_.count(index) != 0; }
  size_t reservations() const { return reserved_.size(); }
  void set_gateway_held(std::set<uint32_t> held) { gateway_held_ = std::move(held); }
  void add_gateway_held(uint32_t index) { gateway_held_.insert(index); }
  SessionRecord& add(SessionRecord rec);
  void remove(uint32_t index);
  SessionRecord* find(uint32_t index);
  SessionRecord* find_by_channel(uint64_t channel);
  const std::map<uint32_t, SessionRecord>& all() const { return sessions_; }
  size_t count_for(const Uuid& tunnel) const;

 private:
  std::map<uint32_t, SessionRecord> sessions_;
  std::set<uint32_t> gateway_held_;
  std::set<uint32_t> reserved_;
  uint32_t next_;
};

}  // namespace dptun
