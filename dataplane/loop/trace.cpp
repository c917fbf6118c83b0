// The packet trace (trace.hpp), the workers' side and the shared bookkeeping: arming once per poll, taking packets
// at RX, writing records; the Tracer the control lcore arms and collects (main_lcore/trace_command.cpp renders).
#include "dataplane/loop/trace.hpp"

#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>

#include <algorithm>
#include <cstring>

#include "common/inet.hpp"
#include "dataplane/tables/dataplane.hpp"

namespace dptun {

namespace {

const char* const kStageNames[] = {"rx",      "classify", "handoff_out", "handoff_in", "flow",     "nat",
                                   "encap",   "decap",    "deliver",     "icmp_error", "answer",   "hostname",
                                   "held",    "consumed", "tx",          "to_kernel",  "to_control", "drop"};
static_assert(sizeof kStageNames / sizeof kStageNames[0] == size_t(TraceStage::Count));
template <size_t N>
const char* name_of(const char* const (&names)[N], unsigned i) {
  return i < N ? names[i] : "?";
}

}  // namespace

const char* trace_stage_name(TraceStage s) { return name_of(kStageNames, unsigned(s)); }

bool trace_stage_final(TraceStage s, uint8_t code) {
  switch (s) {
    case TraceStage::Tx:
    case TraceStage::Drop:
    case TraceStage::ToKernel:
    case TraceStage::ToControl:
    case TraceStage::Held:
    case TraceStage::Consumed:
      return true;
    case TraceStage::Encap:
      return code == 1;  // sent as fragments: copies go out, the packet itself is freed
    default:
      return false;
  }
}

// ---- filter

bool TraceFilter::matches(const PacketInfo& pi, bool parsed, uint8_t rx) const {
  if (rx_port != 0xff && rx != rx_port) return false;
  if (!proto && !port && !host) return true;
  if (!parsed) return false;
  if (host && pi.src_ip != host && pi.dst_ip != host) return false;
  if (proto && (pi.l3 != L3Kind::Ipv4 || pi.l4_proto != proto)) return false;
  if (port && !(pi.l3 == L3Kind::Ipv4 && pi.has_l4 && (pi.l4_proto == kIpProtoTcp || pi.l4_proto == kIpProtoUdp) &&
                (pi.src_port == port || pi.dst_port == port)))
    return false;
  return true;
}

bool parse_trace_filter(std::string_view text, const std::vector<std::string>& port_names, TraceFilter& out,
                        std::string& error) {
  out = TraceFilter{};
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == ',' || text[i] == ' ') {
      ++i;
      continue;
    }
    size_t end = text.find_first_of(", ", i);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view term = text.substr(i, end - i);
    i = end;
    const size_t eq = term.find('=');
    const std::string_view key = term.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? std::string_view() : term.substr(eq + 1);
    if (eq == std::string_view::npos && (key == "tcp" || key == "udp" || key == "icmp")) {
      out.proto = key == "tcp" ? kIpProtoTcp : key == "udp" ? kIpProtoUdp : kIpProtoIcmp;
    } else if (key == "proto" && (value == "tcp" || value == "udp" || value == "icmp")) {
      out.proto = value == "tcp" ? kIpProtoTcp : value == "udp" ? kIpProtoUdp : kIpProtoIcmp;
    } else if (key == "proto" && parse_uint(value, 255) && *parse_uint(value, 255) > 0) {
      out.proto = uint8_t(*parse_uint(value, 255));
    } else if (key == "port" && parse_uint(value, 65535) && *parse_uint(value, 65535) > 0) {
      out.port = uint16_t(*parse_uint(value, 65535));
    } else if (key == "host" && Ipv4::parse(value) && Ipv4::parse(value)->value != 0) {
      out.host = Ipv4::parse(value)->value;
    } else if (key == "rx" && eq != std::string_view::npos) {
      const auto it = std::find(port_names.begin(), port_names.end(), value);
      if (it == port_names.end()) {
        error = "rx=" + std::string(value) + ": no such port (ports:";
        for (const auto& n : port_names) error += " " + n;
        error += ")";
        return false;
      }
      out.rx_port = uint8_t(it - port_names.begin());
    } else {
      error = "'" + std::string(term) +
              "': a filter term is tcp, udp, icmp, proto=N, port=1..65535, host=A.B.C.D or rx=PORT";
      return false;
    }
  }
  return true;
}

// ---- Tracer

Tracer::Tracer(size_t workers) {
  for (size_t w = 0; w < workers; ++w) buffers_.push_back(std::make_unique<TraceBuffer>());
}

bool Tracer::register_mbuf_fields(std::string& error) {
  static const rte_mbuf_dynfield field = {"dptun_trace", sizeof(uint64_t), alignof(uint64_t), 0};
  static const rte_mbuf_dynflag flag = {"dptun_traced", 0};
  field_offset_ = rte_mbuf_dynfield_register(&field);
  const int bit = rte_mbuf_dynflag_register(&flag);
  if (field_offset_ < 0 || bit < 0) {
    error = "cannot register the mbuf trace field and flag";
    return false;
  }
  flag_mask_ = uint64_t(1) << bit;
  return true;
}

uint32_t Tracer::arm(uint32_t packets, const TraceFilter& f, uint64_t now_ns, uint64_t deadline_ns) {
  armed_.store(0, std::memory_order_release);
  ++generation_;
  if (generation_ == 0) generation_ = 1;
  filter_.store(f.pack(), std::memory_order_relaxed);
  deadline_ns_.store(deadline_ns, std::memory_order_relaxed);
  total_.store(packets, std::memory_order_relaxed);
  left_.store(packets, std::memory_order_relaxed);
  started_ns_ = last_change_ns_ = now_ns;
  deadline_local_ns_ = deadline_ns;
  last_count_ = 0;
  armed_.store(generation_, std::memory_order_release);  // workers see everything above with it
  return generation_;
}

uint32_t Tracer::taken() const {
  const int64_t left = left_.load(std::memory_order_relaxed);
  const uint32_t total = total_.load(std::memory_order_relaxed);
  return left <= 0 ? total : total - uint32_t(left);
}

std::vector<TraceRecord> Tracer::collect(uint32_t gen, uint64_t& lost) const {
  std::vector<TraceRecord> out;
  lost = 0;
  for (const auto& b : buffers_) {
    if (b->generation.load(std::memory_order_acquire) != gen) continue;
    const uint32_t n = b->published.load(std::memory_order_acquire);
    const size_t before = out.size();
    out.insert(out.end(), b->records.begin(), b->records.begin() + n);
    lost += b->lost.load(std::memory_order_relaxed);
    // A worker that has moved on to a newer trace meanwhile may have written over them.
    if (b->generation.load(std::memory_order_acquire) != gen) out.resize(before);
  }
  std::stable_sort(out.begin(), out.end(), [](const TraceRecord& a, const TraceRecord& b) {
    return a.packet != b.packet ? a.packet < b.packet : a.ns < b.ns;
  });
  return out;
}

bool Tracer::done(uint32_t gen, const std::vector<TraceRecord>& recs, uint64_t now_ns) {
  if (gen != generation_ || now_ns >= deadline_local_ns_) return true;
  if (recs.size() != last_count_) {
    last_count_ = recs.size();
    last_change_ns_ = now_ns;
  }
  const uint32_t n = taken();
  if (n < requested()) return false;
  std::vector<bool> ended(n + 1);
  for (const TraceRecord& r : recs)
    if (r.packet <= n && trace_stage_final(TraceStage(r.stage), r.code)) ended[r.packet] = true;
  if (std::all_of(ended.begin() + 1, ended.end(), [](bool e) { return e; })) return true;
  return now_ns - last_change_ns_ >= kQuietNs;
}

// ---- workers

TracePoints::TracePoints(Tracer* tracer, uint16_t worker, const TscClock& clock)
    : tracer_(tracer), worker_(worker), clock_(clock) {
  if (!tracer_) return;
  buf_ = &tracer_->buffer(worker);
  field_ = tracer_->field_offset();
  flag_ = tracer_->flag_mask();
}

void TracePoints::poll(uint64_t now_ns) {
  const uint32_t g = tracer_ ? tracer_->armed() : 0;
  if (!g && !tracing_) return;  // the common case: one load, one branch per poll
  TraceBuffer& b = *buf_;
  if (g && g != gen_) {  // a new trace: an empty buffer, its filter
    b.published.store(0, std::memory_order_relaxed);
    b.lost.store(0, std::memory_order_relaxed);
    b.used = 0;
    filter_ = TraceFilter::unpack(tracer_->filter_word());
    gen_ = g;
    b.generation.store(g, std::memory_order_release);
  }
  b.published.store(b.used, std::memory_order_release);  // what the last poll wrote
  tracing_ = g != 0 && now_ns < tracer_->deadline_ns();
}

void TracePoints::rx(uint8_t port, rte_mbuf* m) {
  m->ol_flags &= ~flag_;
  // (A trace replaced meanwhile: this worker takes packets for the new one from its next poll on.)
  if (tracer_->exhausted() || tracer_->armed() != gen_) return;
  PacketInfo pi{};
  const bool parsed = parse_ethernet({rte_pktmbuf_mtod(m, const uint8_t*), m->data_len}, pi) == ParseStatus::Ok;
  if (!filter_.matches(pi, parsed, port)) return;
  const uint32_t id = tracer_->claim();
  if (!id) return;
  m->ol_flags |= flag_;
  *RTE_MBUF_DYNFIELD(m, field_, uint64_t*) = uint64_t(gen_) << 32 | id;
  if (TraceRecord* tr = record(m, TraceStage::Rx)) {
    tr->port = port;
    tr->len = uint16_t(std::min<uint32_t>(m->pkt_len, 0xffff));
    if (parsed && (pi.l3 == L3Kind::Ipv4 || pi.l3 == L3Kind::Arp)) {
      tr->src_ip = pi.src_ip;
      tr->dst_ip = pi.dst_ip;
      tr->proto = pi.l3 == L3Kind::Arp ? 0 : pi.l4_proto;
      tr->code = uint8_t(pi.l3);
      if (pi.has_l4 && (pi.l4_proto == kIpProtoTcp || pi.l4_proto == kIpProtoUdp)) {
        tr->src_port = pi.src_port;
        tr->dst_port = pi.dst_port;
      }
      if (pi.l4_proto == kIpProtoTcp) tr->flags = pi.tcp_flags;
      if (pi.l4_proto == kIpProtoIcmp) tr->aux = uint16_t(pi.icmp_type << 8 | pi.icmp_code);
    } else {
      tr->code = parsed ? uint8_t(pi.l3) : 0xff;
    }
  }
}

TraceRecord* TracePoints::record(const rte_mbuf* m, TraceStage st) {
  if (!(m->ol_flags & flag_)) return nullptr;
  const uint64_t tag = *RTE_MBUF_DYNFIELD(m, field_, const uint64_t*);
  if (uint32_t(tag >> 32) != gen_) return nullptr;  // taken by an earlier trace, still in flight
  TraceBuffer& b = *buf_;
  if (b.used == TraceBuffer::kRecords) {
    b.lost.store(b.lost.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return nullptr;
  }
  TraceRecord& r = b.records[b.used++];
  r = TraceRecord{};
  r.ns = clock_.now_ns();
  r.packet = uint32_t(tag);
  r.worker = uint8_t(worker_);
  r.stage = uint8_t(st);
  r.port = 0xff;
  return &r;
}

}  // namespace dptun
