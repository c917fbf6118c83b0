// dpgw's packet trace (`dpgw trace N`), in the manner of VPP's `trace add`: the next N packets received (that match
// a filter) are followed through the worker pipeline, and each stage they pass writes a record: RX port and worker,
// the classify result, entry point, flow (new or not) and session, NAT, encapsulation or decapsulation, handoffs to
// other workers, answers dpgw made for them, and the TX port or the drop reason.
//
// Cost on the fast path. No trace armed: each worker loads one atomic word per poll (Tracer::armed); the burst stages
// (classify, entry_input, tunnel_input) are compiled with and without their trace points and pick one per burst;
// other trace points (send, drop, handoffs, delivery) test a worker-local flag that is false (one predictable
// branch). Armed: a packet taken for the trace
// carries a dynamic mbuf flag, and its number in a dynamic field, across handoffs; each worker writes its records
// into a fixed buffer of its own (no allocation, no syscall, no lock) and publishes how many once per poll; the
// control lcore collects them. A trace ends when its N packets have been taken and have ended (sent, dropped, held,
// handed to the kernel or the control lcore), when nothing more happens to them for 200 ms, or at its timeout.
//
// The control socket's side and `dpgw trace`, the client: main_lcore/trace_command.hpp; docs/operations.md
// "Packet trace".
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "packet/parser.hpp"

struct rte_mbuf;

namespace dptun {

struct Dataplane;
class TscClock;

enum class TraceStage : uint8_t {
  Rx,          // received on `port` (len, addresses, ports, protocol, TCP flags)
  Classify,    // code: TraceClass; for an entry point, its protocol/port and tunnel
  HandoffOut,  // handed to worker `aux` (code: HandoffMeta stage)
  HandoffIn,   // taken from this worker's handoff ring (code: HandoffMeta stage)
  Flow,        // flow_id, tunnel, session; flags bit 0: a new flow, bit 1: re-pinned to another session
  Nat,         // destination rewritten to dst_ip:dst_port (the target)
  Encap,       // relay frame to agent dst_ip:dst_port over `session`, out `port`, `len` bytes; code 1: as fragments
  Decap,       // relay frame from `session` opened: code = frame type, flow_id = the inner header's
  Deliver,     // the inner packet goes to the client dst_ip:dst_port from src_ip:src_port (flow_id)
  IcmpError,   // an agent's ICMP error about flow_id's target dst_ip:dst_port: code = IcmpErrorReason
  Answer,      // dpgw answered this packet itself: code = TraceAnswer
  Hostname,    // a hostname entry point's connection (delayed binding): code = Binding
  Held,        // kept for later: a fragment awaiting the rest of its datagram
  Consumed,    // taken in, nothing to send: an agent's answer to a keepalive
  Tx,          // queued for transmission on `port`
  ToKernel,    // handed to the kernel path of `port`
  ToControl,   // handed to the control lcore (ARP)
  Drop,        // dropped: code = Drop reason
  Count
};

// EdgeFrame: a frame from the concentrator (edge role); EdgeReply: a target's packet to a translated source; Stun: a
// STUN message to the gateway (dataplane/nat/stun_input.hpp); PairFrame: a pair frame to relay
// (dataplane/relay/pair_relay.hpp).
enum class TraceClass : uint8_t {
  EntryPoint, TunnelFrame, Local, Fragment, NoEntryPoint, EdgeFrame, EdgeReply, Stun, PairFrame, Count
};
enum class TraceAnswer : uint8_t { EchoReply, Rst, PortUnreachable, FragNeeded, KeepaliveReply, StunResponse, Count };

const char* trace_stage_name(TraceStage s);

// One step of one packet: 48 bytes. Fields mean what the stage says (above); the rest are 0.
struct TraceRecord {
  uint64_t ns;       // the worker's clock
  uint64_t flow_id;
  uint32_t packet;   // 1..N, in the order the packets were taken
  uint32_t session;
  uint32_t src_ip, dst_ip;
  uint16_t src_port, dst_port;
  uint16_t len;
  uint16_t tunnel;   // TunnelTable slot
  uint16_t aux;
  uint8_t worker, stage, port, proto, flags, code;
};

// Which packets a trace takes, tested on what arrives from a port: all conditions must hold (0 / 0xff: any).
struct TraceFilter {
  uint8_t proto = 0;        // IP protocol
  uint8_t rx_port = 0xff;   // dpgw port index
  uint16_t port = 0;        // TCP/UDP source or destination port
  uint32_t host = 0;        // IPv4 source or destination address
  bool matches(const PacketInfo& pi, bool parsed, uint8_t rx) const;
  uint64_t pack() const { return uint64_t(host) << 32 | uint64_t(port) << 16 | uint64_t(rx_port) << 8 | proto; }
  static TraceFilter unpack(uint64_t w) {
    return TraceFilter{uint8_t(w), uint8_t(w >> 8), uint16_t(w >> 16), uint32_t(w >> 32)};
  }
};

// Parses a filter: terms separated by commas or spaces, each one of `tcp`, `udp`, `icmp`, `proto=N`, `port=N`,
// `host=A.B.C.D`, `rx=PORT` (a dpgw port's name from `port_names`). "" takes everything. False with `error`.
bool parse_trace_filter(std::string_view text, const std::vector<std::string>& port_names, TraceFilter& out,
                        std::string& error);

// A worker's records of the trace in progress: written by the worker only, published once per poll.
struct TraceBuffer {
  static constexpr uint32_t kRecords = 8192;
  alignas(64) std::atomic<uint32_t> generation{0};  // the trace these records belong to (set before any record)
  std::atomic<uint32_t> published{0};               // records the control lcore may read
  std::atomic<uint32_t> lost{0};                    // records that did not fit
  uint32_t used = 0;                                // (worker only) records written
  std::vector<TraceRecord> records = std::vector<TraceRecord>(kRecords);
};

class Tracer {
 public:
  static constexpr uint32_t kMaxPackets = 1000;
  static constexpr uint64_t kQuietNs = 200'000'000ull;  // a trace whose packets have all been taken ends after this
                                                        // long without a record, even without a final step
  explicit Tracer(size_t workers);
  // Registers the mbuf flag and field the traced packets carry (once per process; false with `error`).
  bool register_mbuf_fields(std::string& error);

  // Workers.
  uint32_t armed() const { return armed_.load(std::memory_order_acquire); }  // 0: no trace
  uint64_t deadline_ns() const { return deadline_ns_.load(std::memory_order_relaxed); }
  uint64_t filter_word() const { return filter_.load(std::memory_order_relaxed); }
  // A packet number for the trace (1..N), or 0 once N packets were taken.
  uint32_t claim() {
    if (left_.load(std::memory_order_relaxed) <= 0) return 0;
    const int64_t before = left_.fetch_sub(1, std::memory_order_relaxed);
    return before > 0 ? uint32_t(total_.load(std::memory_order_relaxed) - before + 1) : 0;
  }
  bool exhausted() const { return left_.load(std::memory_order_relaxed) <= 0; }
  TraceBuffer& buffer(size_t worker) { return *buffers_[worker]; }
  int field_offset() const { return field_offset_; }
  uint64_t flag_mask() const { return flag_mask_; }

  // The control lcore. arm() replaces a trace in progress; returns the new trace's generation.
  uint32_t arm(uint32_t packets, const TraceFilter& f, uint64_t now_ns, uint64_t deadline_ns);
  void disarm() { armed_.store(0, std::memory_order_release); }
  uint32_t generation() const { return generation_; }
  uint32_t requested() const { return total_.load(std::memory_order_relaxed); }
  uint32_t taken() const;  // packets claimed so far (<= requested)
  // The published records of trace `gen`, sorted by packet and time; `lost` counts records that did not fit.
  std::vector<TraceRecord> collect(uint32_t gen, uint64_t& lost) const;
  // Whether trace `gen` is over (see above), given its records; updates the quiet-time bookkeeping.
  bool done(uint32_t gen, const std::vector<TraceRecord>& recs, uint64_t now_ns);

 private:
  alignas(64) std::atomic<uint32_t> armed_{0};
  std::atomic<uint64_t> deadline_ns_{0};
  std::atomic<uint64_t> filter_{0};
  alignas(64) std::atomic<int64_t> left_{0};
  std::atomic<uint32_t> total_{0};
  std::vector<std::unique_ptr<TraceBuffer>> buffers_;
  int field_offset_ = -1;
  uint64_t flag_mask_ = 0;
  // control lcore only
  uint32_t generation_ = 0;
  uint64_t started_ns_ = 0, deadline_local_ns_ = 0;
  size_t last_count_ = 0;
  uint64_t last_change_ns_ = 0;
};

// True for the stages after which nothing more happens to a packet.
bool trace_stage_final(TraceStage s, uint8_t code);

// One worker's trace points: the trace it follows, the packets it takes for it at RX and the records it writes into
// its own TraceBuffer. Touches the Tracer (armed trace, packet numbers) and that buffer; reads `clock` for the
// records' times. Without a Tracer (tests, benchmarks) it never traces.
class TracePoints {
 public:
  TracePoints(Tracer* tracer, uint16_t worker, const TscClock& clock);
  bool on() const { return tracing_; }  // a trace is armed and running: trace points look at packets
  void poll(uint64_t now_ns);            // once per poll: is a trace armed (one atomic load when not)
  void rx(uint8_t port, rte_mbuf* m);    // a packet just received: taken for the trace if it matches
  TraceRecord* record(const rte_mbuf* m, TraceStage st);  // a record for a traced packet, or nullptr

 private:
  Tracer* tracer_;
  uint16_t worker_;
  const TscClock& clock_;
  bool tracing_ = false;
  uint32_t gen_ = 0;        // the trace this worker's buffer holds
  TraceFilter filter_{};
  TraceBuffer* buf_ = nullptr;
  int field_ = -1;          // mbuf dynfield: trace generation << 32 | packet number
  uint64_t flag_ = 0;       // mbuf dynflag: the packet is traced
};


}  // namespace dptun
