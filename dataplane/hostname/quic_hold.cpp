// QUIC entry points, routed by the SNI of the client's Initials (docs/hostname-routing.md):
//   an Initial whose ClientHello already names the host  -> routed at once: entry_input makes the flow
//   an Initial with only the start of a ClientHello      -> a flow in WaitHello; the datagram is kept
//   more datagrams of that flow                          -> kept too, and all of them read together; once the
//                                                           name is known they are sent on, in the order they
//                                                           came, ahead of the one that completed it
// Post-quantum key shares make a browser's ClientHello ~1.8 kB, two Initials, and browsers scatter its pieces
// over both, so the name is often in the second. Anyone can make Initials (their keys are public), so held flows
// get a small pool of their own (TCP's are SYN-cookie checked) for at most kQuicHoldNs; when it is full, the
// oldest hold makes room.
#include <rte_mbuf.h>

#include <algorithm>
#include <cstring>

#include "common/bytes.hpp"
#include "dataplane/hostname/quic_hold.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"

namespace dptun {

namespace {
constexpr uint64_t kQuicHoldNs = 3'000'000'000ull;  // a lost Initial is resent after ~1 s (RFC 9002 6.2.2)
constexpr uint32_t kMaxHeldDatagrams = 8;            // browsers' ClientHellos need 2 or 3 Initials
// Held datagrams, one record each: 2-byte length, the client's TOS byte, its DF bit, then the bytes.
constexpr size_t kRecordHeader = 4;

struct HeldDatagram {
  std::span<const uint8_t> bytes;
  uint8_t tos;
  bool dont_fragment;
};

// Calls `fn(HeldDatagram)` for each held record.
template <class Fn>
void for_each_record(std::span<const uint8_t> records, Fn&& fn) {
  size_t at = 0;
  while (records.size() - at >= kRecordHeader) {
    const uint8_t* h = records.data() + at;
    const size_t len = load_be16(h);
    at += kRecordHeader;
    if (len > records.size() - at) return;
    fn(HeldDatagram{records.subspan(at, len), h[2], h[3] != 0});
    at += len;
  }
}

// The first held datagram (the Initial that started the hold).
std::span<const uint8_t> first_record(std::span<const uint8_t> records) {
  if (records.size() < kRecordHeader) return {};
  const size_t len = load_be16(records.data());
  return len <= records.size() - kRecordHeader ? records.subspan(kRecordHeader, len) : std::span<const uint8_t>{};
}
}  // namespace

QuicHolds::QuicHolds(WorkerContext& ctx, FlowTable& flows, FlowSetup& setup, Encap& encap)
    : ctx_(ctx), flows_(flows), setup_(setup), encap_(encap), holds_(kBuffers, kBytes), since_(kBuffers),
      scratch_(kBytes) {}

void QuicHolds::sweep(uint32_t budget) {
  release_unheld(holds_, cursor_, budget, flows_, ctx_.now_ns,
                 [](const Flow& f, uint32_t b) { return f.bind.buffer == b && f.binding == Binding::WaitHello; });
}

uint32_t QuicHolds::held_records(std::span<const uint8_t> records) {
  uint32_t n = 0;
  for_each_record(records, [&](const HeldDatagram&) { ++n; });
  return n;
}

// Keeps one more datagram of a held flow; false when it does not fit.
bool QuicHolds::hold_datagram(uint32_t b, std::span<const uint8_t> dgram, const PacketInfo& pi, const uint8_t* ip) {
  if (holds_.bytes(b).size() + kRecordHeader + dgram.size() > holds_.size()) return false;
  const uint8_t hdr[kRecordHeader] = {uint8_t(dgram.size() >> 8), uint8_t(dgram.size()), ip[1],
                                      uint8_t(pi.dont_fragment ? 1 : 0)};
  holds_.append(b, hdr);
  holds_.append(b, dgram);
  return true;
}

void QuicHolds::release(Flow& f) {
  const uint32_t b = f.bind.buffer;
  if (b != BindingBuffers::kNone && holds_.used(b) && holds_.owner(b) == flows_.id_of(f)) holds_.release(b);
  f.bind.buffer = BindingBuffers::kNone;
}

// A full pool gives up its oldest hold rather than refuse the newcomer: a browser's second Initial follows its
// first within a round trip, so a flood of made-up Initials has to refill the whole pool that fast to keep real
// clients out.
bool QuicHolds::evict_oldest() {
  uint32_t oldest = BindingBuffers::kNone;
  for (uint32_t b = 0; b < holds_.count(); ++b)
    if (holds_.used(b) && (oldest == BindingBuffers::kNone || since_[b] < since_[oldest]))
      oldest = b;
  if (oldest == BindingBuffers::kNone) return false;
  if (Flow* f = flows_.find_by_id(holds_.owner(oldest)); f && f->binding == Binding::WaitHello &&
                                                              f->bind.buffer == oldest && f->key.proto == kIpProtoUdp)
    flows_.erase(*f);
  holds_.release(oldest);
  ctx_.stats.quic_holds_evicted.add();
  return true;
}

QuicHolds::Step QuicHolds::first_packets(rte_mbuf* m, const PacketInfo& pi, Flow*& f, std::string_view& name,
                                         std::span<const uint8_t>& earlier) {
  const uint8_t* frame = rte_pktmbuf_mtod(m, const uint8_t*);
  const uint8_t* ip = frame + pi.l3_offset;
  const std::span<const uint8_t> dgram{frame + pi.l4_offset + kUdpHeaderLen, size_t(pi.l4_len - kUdpHeaderLen)};
  earlier = {};
  const std::span<const uint8_t> dcid = quic_initial_dcid(dgram);
  if (f) {
    // Held too long, or an Initial of another connection on the same ports (the client started over): the hold is
    // forgotten and this datagram starts afresh.
    const uint32_t b = f->bind.buffer;
    const bool ours = b != BindingBuffers::kNone && holds_.used(b) && holds_.owner(b) == flows_.id_of(*f);
    const std::span<const uint8_t> held_dcid =
        ours ? quic_initial_dcid(first_record(holds_.bytes(b))) : std::span<const uint8_t>{};
    if (f->deadline_ns <= ctx_.now_ns || !ours ||
        (!dcid.empty() && !std::equal(dcid.begin(), dcid.end(), held_dcid.begin(), held_dcid.end()))) {
      release(*f);
      flows_.erase(*f);
      f = nullptr;
    }
  }
  if (!f) {
    const QuicResult q = reader_.read(dgram);
    ctx_.stats.quic_initials[size_t(q.status)].add();
    if (q.status == QuicStatus::Found) {
      name = q.name;
      return Step::Route;
    }
    if (q.status != QuicStatus::NeedMore) {
      ctx_.drop(m, Drop::NoHostname);
      return Step::Done;
    }
    // A real Initial with the start of a ClientHello: hold the flow until the rest comes.
    const FlowKey key = FlowKey::v4(pi.src_ip, pi.dst_ip, pi.src_port, pi.dst_port, kIpProtoUdp, 0);
    const uint32_t h = FlowTable::hash(key);
    Flow* nf = setup_.new_flow(key, h);
    if (!nf) {
      ctx_.drop(m, Drop::FlowTableFull);
      return Step::Done;
    }
    uint32_t b = holds_.acquire(flows_.id_of(*nf));
    if (b == BindingBuffers::kNone && evict_oldest()) b = holds_.acquire(flows_.id_of(*nf));
    if (b == BindingBuffers::kNone) {
      flows_.erase(*nf);
      ctx_.drop(m, Drop::BindingFull);
      return Step::Done;
    }
    if (!hold_datagram(b, dgram, pi, ip)) {
      holds_.release(b);
      flows_.erase(*nf);
      ctx_.drop(m, Drop::BindingFull);
      return Step::Done;
    }
    since_[b] = ctx_.now_ns;
    nf->binding = Binding::WaitHello;
    nf->bind = BindingState{};
    nf->bind.buffer = b;
    nf->deadline_ns = ctx_.now_ns + kQuicHoldNs;
    nf->last_seen_ns = ctx_.now_ns;
    ctx_.stats.quic_flows_held.add();
    rte_pktmbuf_free(m);
    return Step::Done;
  }

  // One more datagram of a held flow. Only another Initial of the same connection can complete the ClientHello (the
  // same DCID, checked above before anything is decrypted); anything else is dropped (the client sends it again
  // once its connection is up).
  Flow& fl = *f;
  const uint32_t b = fl.bind.buffer;
  if (dcid.empty()) {
    ctx_.stats.quic_initials[size_t(QuicStatus::NotInitial)].add();
    ctx_.drop(m, Drop::NoHostname);
    return Step::Done;
  }
  if (held_records(holds_.bytes(b)) == kMaxHeldDatagrams || !hold_datagram(b, dgram, pi, ip)) {
    // More than a ClientHello needs: not a client we can route.
    release(fl);
    flows_.erase(fl);
    f = nullptr;
    ctx_.drop(m, Drop::BindingFull);
    return Step::Done;
  }
  fl.last_seen_ns = ctx_.now_ns;
  const std::span<const uint8_t> records = holds_.bytes(b);
  reader_.begin();
  for_each_record(records, [&](const HeldDatagram& d) { reader_.add(d.bytes); });
  const QuicResult q = reader_.result();
  if (q.status == QuicStatus::NeedMore) {
    rte_pktmbuf_free(m);
    return Step::Done;
  }
  ctx_.stats.quic_initials[size_t(q.status)].add();
  // The held flow ends here: what came before this datagram moves to the scratch, to be sent on once the flow to
  // the target exists (entry_input, right after it makes it).
  const size_t before = records.size() - kRecordHeader - dgram.size();
  std::memcpy(scratch_.data(), records.data(), before);
  release(fl);
  flows_.erase(fl);
  f = nullptr;
  if (q.status != QuicStatus::Found) {
    ctx_.drop(m, Drop::NoHostname);
    return Step::Done;
  }
  name = q.name;
  earlier = {scratch_.data(), before};
  return Step::Route;
}

// The datagrams held for a flow that now has its target: rebuilt as the client's packets (already NAT-ed to the
// target, with their own TOS and DF) and wrapped for the flow's session, in the order they came. The first one sent
// carries FLOW_NEW; true when one was sent.
bool QuicHolds::send_held(const Flow& f, TunnelSession& s, std::span<const uint8_t> records) {
  uint8_t flags = kInnerFlowNew;
  for_each_record(records, [&](const HeldDatagram& held) {
    const std::span<const uint8_t> d = held.bytes;
    rte_mbuf* m = rte_pktmbuf_alloc(ctx_.dp.pool);
    if (!m) {
      ctx_.stats.drops[size_t(Drop::NoMbuf)].add();
      return;
    }
    const size_t len = kIpv4HeaderLen + kUdpHeaderLen + d.size();
    uint8_t* ip = len <= rte_pktmbuf_tailroom(m) ? reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, uint16_t(len)))
                                                   : nullptr;
    if (!ip) {
      ctx_.drop(m, Drop::NoRoom);
      return;
    }
    write_ipv4_header(ip, uint16_t(len), ctx_.next_ip_id(), kIpProtoUdp, f.key.client.v4(), f.target_ip.v4());
    if (held.tos || held.dont_fragment) {  // the client's TOS (DSCP, ECN) and DF, as its packet had them
      ip[1] = held.tos;
      if (held.dont_fragment) ip[6] |= 0x40;
      store_be16(ip + 10, 0);
      store_be16(ip + 10, ipv4_header_checksum({ip, kIpv4HeaderLen}));
    }
    uint8_t* udp = ip + kIpv4HeaderLen;
    store_be16(udp, f.key.client_port);
    store_be16(udp + 2, f.target_port);
    store_be16(udp + kUdpOffLength, uint16_t(kUdpHeaderLen + d.size()));
    store_be16(udp + kUdpOffChecksum, 0);
    std::memcpy(udp + kUdpHeaderLen, d.data(), d.size());
    uint16_t sum = ipv4_l4_checksum(f.key.client.v4(), f.target_ip.v4(), kIpProtoUdp, {udp, kUdpHeaderLen + d.size()});
    store_be16(udp + kUdpOffChecksum, sum ? sum : 0xffff);
    if (encap_.inner(m, f, s, flags, kIpProtoUdp)) {
      ctx_.stats.quic_held_sent.add();
      flags = 0;
    }
  });
  return flags == 0;
}

}  // namespace dptun
