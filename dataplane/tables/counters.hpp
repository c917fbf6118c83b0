// Counters written by exactly one worker and read by the control lcore while the worker runs.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>

#include "ingress/quic_initial.hpp"
#include "packet/parser.hpp"

namespace dptun {

// Single-writer counter: relaxed load + store compiles to a plain add, and readers never see a torn value.
class Counter {
 public:
  void add(uint64_t n = 1) { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// Why a packet was dropped. Names (drop_reason_name) are what stats and docs/operations.md show.
enum class Drop : uint8_t {
  ParseError,       // malformed L2-L4 headers (detail in parse_errors)
  Vlan,             // VLAN-tagged frame: no VLAN interfaces configured
  Ipv6,             // IPv6 is parsed but not forwarded yet
  Multiseg,         // multi-segment mbuf (jumbo frames are not supported yet)
  NotForUs,         // IPv4 not addressed to a gateway address
  UnsupportedProto, // IP protocol we do not serve
  Fragment,         // a reassembled datagram dpgw does not take: to the tunnel port, or too big for one mbuf where
                    // only single-buffer packets go (hostname entry points, the kernel path, from visitors)
  NoEntryPoint,     // TCP/UDP to a port without an entry point
  TcpNoFlow,        // TCP segment without SYN for a flow we do not know
  NoSession,        // the tunnel has no session with a known agent endpoint
  FlowTableFull,    // no free flow and none idle enough to evict
  NoRoute,          // no port reaches the destination
  NoNeighbor,       // next hop MAC unknown yet (ARP request sent)
  NoRoom,           // mbuf lacks head/tailroom for the encapsulation
  TooBig,           // does not fit the MTU and DF is set (ICMP fragmentation-needed sent when possible)
  FrameMalformed,   // relay frame header invalid
  UnknownSession,   // relay frame for a receiver index we do not have
  Replay,           // counter already seen or behind the window
  StaleCounter,     // static peer's counter older than the freshness limit: a replay, or clocks far apart
  AuthFail,         // AEAD tag did not verify (wrong key, tampering)
  KeyUnavailable,   // no key for the frame's epoch yet (derivation requested)
  BadInner,         // decrypted inner packet is not IPv4 TCP/UDP
  StaleFlow,        // reply for a flow that has expired
  FlowMismatch,     // reply not from the flow's target/tunnel/protocol, or with IP options
  HandoffFull,      // another worker's handoff ring was full
  ControlFull,      // the control lcore's ring was full
  KernelFull,       // the kernel path's ring was full (packets for our address that dpgw does not serve)
  KernelRate,       // over the port's kernel_rate (a flood towards the kernel path)
  TxFull,           // the TX queue did not take the packet
  NoMbuf,           // mbuf pool empty
  CryptoError,      // the AEAD engine failed to encrypt
  NoHostname,       // hostname entry point: no usable name in the client's first packet (see quic_initials)
  NoRule,           // hostname entry point: no ingress rule matches the name
  PrivateRule,      // the name's rule is private: never reachable from a public entry point
  BadCookie,        // an ACK to a hostname entry point whose SYN cookie is not ours (or too old)
  BindingFull,      // no buffer free to hold another connection while its hostname is read
  TargetRefused,    // the target answered the SYN of a hostname-routed connection with RST
  DirectDisabled,   // a visitor asked for an address directly, and the gateway's direct_mode is off
  BadChecksum,      // a TCP segment dpgw answers itself (hostname entry points) with a wrong checksum
  AmbiguousHost,    // HTTP request head naming its host in conflicting or unclear ways (answered 400)
  HeadTooBig,       // request head / ClientHello larger than dpgw reads (HTTP 431, TLS reset)
  HostnameTimeout,  // hostname entry point: no name within 10 s of the connection's first byte (reset)
  TargetTimeout,    // hostname entry point: the target did not answer our SYN, or take the first bytes, in 10 s
  TargetUnreachable,  // an agent's ICMP error about a flow's target that ends there: a hostname connection's target
                      // could not be reached (the client gets a 502 or a RST), a visitor's flow, over the rate
  // IPv4 reassembly (fragments.cpp), in FragDrop's order (packet/ipv4_reassembly.hpp)
  FragMalformed,    // empty, not a multiple of 8 bytes before the last, fragments disagreeing about the end,
                    // or a first fragment without the whole TCP/UDP header
  FragDuplicate,    // the same range as a fragment already held
  FragOverlap,      // overlaps another fragment: its datagram is dropped
  FragOversize,     // its datagram would pass reassembly.max_size
  FragTooMany,      // its datagram needs more than 128 fragments
  FragTimeout,      // its datagram did not complete within reassembly.timeout
  FragEvicted,      // its datagram was given up for newer ones (reassembly.datagrams / .fragments reached)
  NoSnat,           // edge: a LAN packet to edge.snat_net that names no flow (outside the mapping), or an ICMP error
                    // quoting one
  QuicBadConnectionId,  // a short-header packet to the QUIC port whose DCID tail is not its session's
  QuicSlowPathFull, // the frames of a QUIC session's packet that the fast path does not handle (STREAM, PATH_*,
                    // CONNECTION_CLOSE, ...) could not go to the control lcore: its ring was full (its DATAGRAM is
                    // delivered all the same)
  QuicSlowPathLimit,  // as quic_slow_path_full, but the session had sent its share to the control lcore already
                      // (QuicSessionState::kSlowPathPerWindow per kSlowPathWindowNs)
  // MASQUE clients' HTTP Datagrams (dataplane/masque/, docs/masque.md "Datagrams on the fast path")
  MasqueUnknownStream,  // the datagram's Quarter Stream ID names another request stream than the session's
  MasqueContext,        // a context ID other than 0 (an extension dptun has not registered, RFC 9298 4)
  MasqueMalformed,      // a varint cut short, or a Quarter Stream ID over 2^60 - 1 (RFC 9297 2.1: H3_DATAGRAM_ERROR;
                        // dpgw drops it and keeps the connection)
  MasqueTooLarge,       // a target's reply too big for one DATAGRAM frame to the client (its max_datagram_frame_size,
                        // max_udp_payload_size or the link's MTU): never fragmented (RFC 9298 5)
  MasqueTargetUnreachable,  // an agent's ICMP error about a MASQUE flow's target: RFC 9298 has no way to tell the
                            // client
  // MASQUE clients whose DATAGRAM capsules dpctld carries (docs/masque.md "HTTP/2 and HTTP/1.1 fallback")
  MasqueCapsuleFrame,  // a relay frame naming such a client's session index: it takes nothing from the network
  MasqueCapsuleFull,   // a target's reply to such a client could not go to the control lcore: its ring was full
  // STUN (dataplane/nat/stun_input.hpp, proto/stun.hpp)
  StunMalformed,   // to the STUN port (or STUN on the tunnel or QUIC port): not a STUN message (too short, a length that
                   // is not the datagram's, an attribute past the end, a FINGERPRINT wrong or not last), a wrong UDP
                   // checksum, or from a source that cannot be a host (0.0.0.0, 127/8, multicast, broadcast, port 0)
  StunNotRequest,  // a STUN message that is no Binding request: an indication, a response, another method
  StunLimited,     // a Binding request over this worker's answer rate (StunInput::kAnswersPerSecond): not answered
  // Pair frames relayed between the two ends of a direct-path pair (dataplane/relay/pair_relay.hpp)
  PairUnknown,      // a pair frame whose pair id is in no pair dpctld sent (pair_set)
  PairWrongSource,  // a pair frame from an address and port that is neither of its pair's sessions' current endpoint
  PairNoPeer,       // the pair's other session is not on this dpgw (yet), or its endpoint is not known
  PairBadSession,   // the pair's sessions cannot carry pair frames: not a visitor and an agent of one tunnel, or one
                    // of them speaks the QUIC framing or is a MASQUE client
  Count
};

const char* drop_reason_name(Drop d);

struct alignas(64) WorkerStats {
  Counter rx_packets, rx_bytes, tx_packets, tx_bytes;
  Counter encap_packets, encap_bytes, decap_packets, decap_bytes;
  Counter flows_created, flows_expired, flows_evicted, flows_repinned;
  Counter keepalives_rx, keepalives_tx, icmp_echo_replies, icmp_frag_needed;
  Counter fragments_tx;  // IPv4 fragments made: inner fragments in frames to agents, fragments to clients
  // Reassembly of client fragments (steered: handed to the worker their datagram hashes to) and of fragments in
  // agents' frames (inner_*): fragments taken in, datagrams completed, datagrams timed out or evicted.
  Counter frag_rx, frag_steered, frag_reassembled, frag_timeouts, frag_evictions;
  Counter inner_frag_rx, inner_frag_reassembled, inner_frag_timeouts, inner_frag_evictions;
  Counter to_control, to_kernel, handoff_tx, handoff_rx, idle_sleeps, polls;
  Counter hostname_routed;  // new flows routed by an ingress rule
  Counter syn_cookies_sent, bindings_started, bindings_spliced, bindings_refused, bindings_evicted;  // delayed binding
  // first bytes that outgrew a small buffer; segments dpgw sent again (SYN or first bytes to targets, answers)
  Counter bindings_grown, binding_retransmits;
  // QUIC flows held until their ClientHello named a host; datagrams sent on after a hold; holds given up for newer
  Counter quic_flows_held, quic_held_sent, quic_holds_evicted;
  Counter visitor_packets, visitor_flows;  // from visitors (dpagent visit)
  // Failed flows, told to the client: ICMP errors from agents (a target could not be reached) passed on to clients;
  // TCP/UDP to a port without an entry point answered with a RST / an ICMP port unreachable, or not (over the rate);
  // TCP flows that ended in SYN state without a single answer from their target.
  Counter icmp_errors_forwarded, closed_port_rsts, closed_port_unreachables, closed_port_limited, flows_unanswered;
  // The edge role (dataplane/edge/): data frames to and from the concentrator and their inner bytes, keepalives
  // sent and answers received, the targets' ICMP errors passed on, frames from the concentrator that failed
  // authentication (also counted as the drop auth_fail).
  Counter edge_to_concentrator_packets, edge_to_concentrator_bytes, edge_from_concentrator_packets,
      edge_from_concentrator_bytes, edge_keepalives_tx, edge_keepalives_rx, edge_icmp_errors_forwarded, edge_auth_fail;
  Counter quic_acks_tx;  // ACK-only packets to QUIC sessions' agents (docs/protocol.md "ACK generation")
  Counter quic_control_tx;  // the QUIC slow path's packets (PATH_CHALLENGE, PATH_RESPONSE) sent for the control lcore
  // QUIC key updates (docs/protocol.md "Key updates"): the agent's, followed; dpgw's own, started
  Counter quic_key_updates_rx, quic_key_updates_tx;
  // MASQUE clients (docs/masque.md): HTTP Datagrams whose UDP payloads went into the tunnel; targets' replies sent
  // back to clients in DATAGRAM frames
  Counter masque_datagrams_rx, masque_datagrams_tx;
  // STUN (dataplane/nat/stun_input.hpp): Binding requests taken; answers sent (Binding success, or 420 errors for
  // requests with attributes dpgw does not understand)
  Counter stun_requests, stun_responses;
  // Pair frames (dataplane/relay/pair_relay.hpp) sent on to the other end of their pair, and their UDP payloads' bytes
  Counter pair_frames_relayed, pair_bytes_relayed;
  std::array<Counter, 6> quic_initials;  // by QuicStatus: what reading first packets on QUIC entry points found
  std::array<Counter, size_t(Drop::Count)> drops;
  std::array<Counter, size_t(ParseStatus::Count)> parse_errors;
};

struct alignas(64) PortStats {
  Counter rx_packets, rx_bytes, tx_packets, tx_bytes, tx_dropped;
};

// The kernel path of one port (written by the control lcore only).
struct alignas(64) KernelPathStats {
  Counter to_kernel_packets, to_kernel_bytes, from_kernel_packets, from_kernel_bytes;
  Counter write_errors;    // the TAP did not take a frame (kernel side down, queue full)
  Counter refused;         // from the kernel, not sent: not from the port's MAC and address (forwarded or
                           // spoofed traffic), not IPv4/ARP, or an ARP reply (dpgw answers ARP itself)
  Counter dropped;         // from the kernel, not sent: too big, no mbuf, transmit ring full
};

// The QUIC slow path on the control lcore (main_lcore/quic_slow_path.hpp; written by it only): packets taken from the
// workers, the packets carrying each frame type (slot: the frame type for 0x00..0x1e, STREAM's 0x08..0x0f in 0x08, DATAGRAM in
// kQuicFrameSlotDatagram), packets whose frames did not parse, path validation, CONNECTION_CLOSE.
inline constexpr size_t kQuicFrameSlots = 32;
inline constexpr size_t kQuicFrameSlotDatagram = 31;
struct alignas(64) QuicControlStats {
  Counter slow_path_rx;          // packets whose frames reached the control lcore
  Counter frames_malformed;      // of those, packets whose frames did not parse
  std::array<Counter, kQuicFrameSlots> frames_rx;
  Counter path_challenges_tx;    // PATH_CHALLENGE frames sent to a candidate address (retries included)
  Counter path_responses_tx;     // PATH_RESPONSE frames sent (answers to the agent's PATH_CHALLENGE)
  Counter paths_validated;       // candidates validated: the session's endpoint moved there
  Counter path_validation_failed;  // candidates given up (no PATH_RESPONSE in time): the endpoint stayed
  Counter paths_abandoned;       // candidates dropped: a newer non-probing packet came from the endpoint meanwhile
  Counter path_probes_limited;   // PATH_CHALLENGE/PATH_RESPONSE not sent or not padded: 3x anti-amplification limit
  Counter connection_closes_rx;  // sessions ended by the agent's CONNECTION_CLOSE
  Counter peer_cid_retired;      // the agent's NEW_CONNECTION_ID retired the connection ID dpgw sends with
  Counter send_full;             // frames not handed to a worker: its handoff ring was full, or no mbuf
};

// MASQUE clients whose DATAGRAM capsules dpctld carries (docs/masque.md "HTTP/2 and HTTP/1.1 fallback"), on the control
// lcore (main_lcore/masque_capsules.hpp; written by it only). Payloads, except `malformed` (messages).
struct alignas(64) MasqueControlStats {
  Counter rx;             // payloads from dpctld handed to their session's RX worker
  Counter tx;             // targets' replies sent to dpctld in masque_datagrams messages
  Counter unknown;        // payloads of messages naming no such session, or another request id: dropped whole
  Counter malformed;      // masque_datagrams messages that did not decode (messages)
  Counter too_large;      // payloads whose IPv4/UDP packet does not fit one mbuf (as a frame received would)
  Counter send_full;      // payloads not handed to the worker: its handoff ring was full, or no mbuf
  Counter backlog;        // replies dropped: the controller's connection had kMaxBacklog bytes queued already
  Counter no_controller;  // replies dropped: no controller connected
};

struct alignas(64) TunnelStats {
  // Data frames sent and received in the tunnel's sessions (its visitors' too), once each; bytes of their plaintext
  // after the inner header.
  Counter to_agent_packets, to_agent_bytes, from_agent_packets, from_agent_bytes;
  Counter flows_created, auth_fail, replay, key_unavailable, keepalives;
  Counter targets_unreachable;  // ICMP errors from the tunnel's agents about its flows' targets
  Counter flows_unanswered;     // TCP flows that expired in SYN state: their target never answered
};

}  // namespace dptun
