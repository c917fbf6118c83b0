// IPv4 reassembly bookkeeping (RFC 791 section 3.2), bounded in memory and in time; shared by dpgw (fragments
// stay in their mbufs) and dpagent (fragments are copied into a buffer per datagram as they arrive). The table
// knows which datagrams are in progress, which payload ranges each one has (a list sorted by offset) and how old
// it is; the caller keeps the bytes (`Frag`: an mbuf pointer, or an empty type when it copies on arrival).
//
// Policy, per datagram (identified by source, destination, protocol, IP id and a caller-chosen scope):
// - a fragment that overlaps another ruins the datagram (RFC 5722's rule for IPv6; Linux applies it to IPv4 too);
//   an exact duplicate is dropped alone;
// - a datagram whose total length would pass `max_size`, that needs more than `fragments_per_datagram` fragments,
//   or whose fragments disagree about where it ends, is ruined as well;
// - a ruined datagram is remembered without its fragments until its timeout, so its later fragments are dropped
//   for the same reason instead of starting a new datagram;
// - the timeout counts from the first fragment;
// - when `datagrams` (entries) or `fragments` (held, all datagrams together) run out, the oldest datagrams are given
//   up for the newcomer, so fragments that never complete cannot keep new datagrams out for longer than it takes
//   to push them out.
// No allocation after construction; every operation is O(fragments of the datagram) plus O(1) per eviction.
#pragma once
#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "packet/ipv4_fragment.hpp"

namespace dptun {

struct FragmentKey {
  uint32_t src = 0, dst = 0;  // host order
  uint16_t id = 0;
  uint8_t proto = 0;
  uint64_t scope = 0;  // separates datagrams beyond the IP header: a port, a session and flow (0: nothing)
  bool operator==(const FragmentKey&) const = default;
};

// Why a fragment was dropped. Names (frag_drop_name) are what counters show.
enum class FragDrop : uint8_t {
  Malformed,  // empty, a non-last fragment not a multiple of 8 bytes, fragments disagreeing about the end
  Duplicate,  // the same range as a fragment already held (dropped alone)
  Overlap,    // overlaps another fragment of its datagram (the datagram is dropped)
  Oversize,   // the datagram would be longer than max_size (65535 at most: IPv4's limit)
  TooMany,    // more fragments than fragments_per_datagram
  Timeout,    // its datagram did not complete within the timeout
  Evicted,    // its datagram was given up to make room for newer ones
  Count
};
const char* frag_drop_name(FragDrop d);

struct ReassemblyLimits {
  uint32_t datagrams = 1024;              // in progress at once
  uint32_t fragments = 2048;              // held at once, all datagrams together (>= fragments_per_datagram)
  uint32_t fragments_per_datagram = 128;  // 65535 bytes in fragments of >= 520 bytes
  uint32_t max_size = 65535;              // IP total length of a reassembled datagram, header included
  uint64_t timeout_ns = 2'000'000'000ull;
  bool operator==(const ReassemblyLimits&) const = default;
};

// Sink: void fragment_dropped(Frag, FragDrop) for every fragment the table gives up, and
// void datagram_dropped(FragDrop) once per datagram given up with its fragments (Timeout or Evicted).
template <class Frag>
class Ipv4Reassembly {
 public:
  static constexpr uint32_t kNone = ~0u;
  enum class Result : uint8_t { Held, Complete, Dropped };
  struct Piece {
    Frag frag;
    uint32_t offset;
    uint32_t len;
  };

  explicit Ipv4Reassembly(const ReassemblyLimits& limits, uint64_t seed = 0)
      : limits_(limits), seed_(seed), slots_(limits.datagrams ? limits.datagrams : 1),
        nodes_(limits.fragments ? limits.fragments : 1), pieces_(limits.fragments_per_datagram) {
    uint32_t n = 1;
    while (n < 2 * slots_.size()) n <<= 1;
    buckets_.assign(n, kNone);
    mask_ = n - 1;
    free_slots_.reserve(slots_.size());
    for (uint32_t i = uint32_t(slots_.size()); i-- > 0;) free_slots_.push_back(i);
    for (uint32_t i = 0; i < nodes_.size(); ++i) nodes_[i].next = i + 1 < nodes_.size() ? i + 1 : kNone;
    free_node_ = 0;
  }
  Ipv4Reassembly(const Ipv4Reassembly&) = delete;
  Ipv4Reassembly& operator=(const Ipv4Reassembly&) = delete;

  // Adds one fragment. Held: kept in datagram `slot`. Complete: its datagram (`slot`) is whole: pieces() lists its
  // fragments in order (they are the caller's again), first_header_len() and payload_len() describe it; the slot's
  // number stays the caller's to read until the next add(). Dropped: for `why`, and `frag` is the caller's to free.
  template <class Sink>
  Result add(const FragmentKey& key, const FragmentInfo& fi, Frag frag, uint64_t now_ns, Sink& sink, FragDrop& why,
             uint32_t& slot) {
    why = FragDrop::Count;
    slot = kNone;
    const uint32_t end = fi.offset + fi.len;
    if (fi.len == 0 || (fi.offset & 7) || (fi.more && (fi.len & 7))) return dropped(FragDrop::Malformed, why);
    uint32_t s = find(key);
    if (s != kNone && now_ns - slots_[s].start_ns >= limits_.timeout_ns) {
      give_up(s, FragDrop::Timeout, sink);
      s = kNone;
    }
    if (s == kNone) s = new_slot(key, now_ns, sink);
    Slot& d = slots_[s];
    if (d.ruined) return dropped(d.ruin, why);
    // The datagram's header is the first fragment's (20 bytes at least until it comes).
    const uint32_t hl = fi.offset == 0 ? fi.header_len : std::max<uint32_t>(d.first_hl, 20);
    if (hl + std::max({end, d.end, d.max_end}) > limits_.max_size) return ruin(s, FragDrop::Oversize, sink, why);
    if (fi.more ? (d.end && end > d.end) : ((d.end && d.end != end) || d.max_end > end))
      return ruin(s, FragDrop::Malformed, sink, why);
    // Where it goes in the list, and whether it overlaps its neighbours.
    uint32_t prev = kNone, cur = d.first;
    while (cur != kNone && nodes_[cur].offset < fi.offset) {
      prev = cur;
      cur = nodes_[cur].next;
    }
    if (cur != kNone && nodes_[cur].offset == fi.offset && nodes_[cur].len == fi.len)
      return dropped(FragDrop::Duplicate, why);
    if ((prev != kNone && nodes_[prev].offset + nodes_[prev].len > fi.offset) ||
        (cur != kNone && nodes_[cur].offset < end))
      return ruin(s, FragDrop::Overlap, sink, why);
    if (d.count >= limits_.fragments_per_datagram) return ruin(s, FragDrop::TooMany, sink, why);
    // Room for one more fragment: give up the oldest other datagrams that hold some.
    while (free_node_ == kNone) {
      uint32_t victim = oldest_;
      while (victim != kNone && (victim == s || slots_[victim].count == 0)) victim = slots_[victim].newer;
      if (victim == kNone) return ruin(s, FragDrop::Evicted, sink, why);  // (fragments < fragments_per_datagram)
      give_up(victim, FragDrop::Evicted, sink);
    }
    const uint32_t n = free_node_;
    free_node_ = nodes_[n].next;
    nodes_[n] = Node{frag, fi.offset, fi.len, cur};
    if (prev == kNone)
      d.first = n;
    else
      nodes_[prev].next = n;
    ++held_;
    ++d.count;
    d.have += fi.len;
    d.max_end = std::max(d.max_end, end);
    if (!fi.more) d.end = end;
    if (fi.offset == 0) d.first_hl = fi.header_len;
    slot = s;
    if (!d.end || d.have != d.end) return Result::Held;
    // Disjoint ranges inside [0, end) that add up to end cover it: the datagram is whole.
    n_pieces_ = 0;
    for (uint32_t i = d.first; i != kNone;) {
      pieces_[n_pieces_++] = Piece{nodes_[i].frag, nodes_[i].offset, nodes_[i].len};
      const uint32_t next = nodes_[i].next;
      free_node(i);
      i = next;
    }
    done_hl_ = d.first_hl;
    done_len_ = d.end;
    d.first = kNone;
    d.count = 0;
    free_slot(s);
    return Result::Complete;
  }

  // Gives up datagrams older than the timeout, oldest first, at most `budget` of them. Returns how many of those
  // still had fragments (ruined ones are only forgotten).
  template <class Sink>
  uint32_t expire(uint64_t now_ns, uint32_t budget, Sink& sink) {
    uint32_t timed_out = 0;
    while (budget-- && oldest_ != kNone && now_ns - slots_[oldest_].start_ns >= limits_.timeout_ns) {
      if (!slots_[oldest_].ruined) ++timed_out;
      give_up(oldest_, FragDrop::Timeout, sink);
    }
    return timed_out;
  }

  // Gives every datagram up (the caller frees what it holds), e.g. at exit.
  template <class Sink>
  void clear(Sink& sink) {
    while (oldest_ != kNone) give_up(oldest_, FragDrop::Evicted, sink);
  }

  std::span<const Piece> pieces() const { return {pieces_.data(), n_pieces_}; }
  uint16_t first_header_len() const { return done_hl_; }
  uint32_t payload_len() const { return done_len_; }
  uint32_t datagrams() const { return uint32_t(slots_.size() - free_slots_.size()); }  // ruined ones included
  bool empty() const { return oldest_ == kNone; }  // datagrams() == 0, in one load (checked after every poll)
  uint32_t fragments() const { return held_; }
  const ReassemblyLimits& limits() const { return limits_; }

 private:
  struct Slot {
    FragmentKey key;
    uint64_t start_ns = 0;
    uint32_t end = 0;    // payload length, once the last fragment came
    uint32_t have = 0;   // payload bytes held
    uint32_t max_end = 0;  // end of the furthest fragment held
    uint32_t first = kNone;
    uint32_t hnext = kNone;
    uint32_t older = kNone, newer = kNone;
    uint32_t count = 0;
    uint16_t first_hl = 0;
    bool ruined = false;
    FragDrop ruin = FragDrop::Count;
  };
  struct Node {
    Frag frag;
    uint32_t offset = 0, len = 0;
    uint32_t next = kNone;
  };

  static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
  }
  uint32_t bucket(const FragmentKey& k) const {
    uint64_t h = mix(seed_ ^ (uint64_t(k.src) << 32 | k.dst));
    h = mix(h ^ (uint64_t(k.id) << 8 | k.proto) ^ (k.scope * 0x9e3779b97f4a7c15ull));
    return uint32_t(h) & mask_;
  }
  uint32_t find(const FragmentKey& k) const {
    for (uint32_t s = buckets_[bucket(k)]; s != kNone; s = slots_[s].hnext)
      if (slots_[s].key == k) return s;
    return kNone;
  }
  static Result dropped(FragDrop r, FragDrop& why) {
    why = r;
    return Result::Dropped;
  }

  template <class Sink>
  uint32_t new_slot(const FragmentKey& key, uint64_t now_ns, Sink& sink) {
    if (free_slots_.empty()) give_up(oldest_, FragDrop::Evicted, sink);
    const uint32_t s = free_slots_.back();
    free_slots_.pop_back();
    Slot& d = slots_[s];
    d = Slot{};
    d.key = key;
    d.start_ns = now_ns;
    const uint32_t b = bucket(key);
    d.hnext = buckets_[b];
    buckets_[b] = s;
    d.older = newest_;
    if (newest_ != kNone)
      slots_[newest_].newer = s;
    else
      oldest_ = s;
    newest_ = s;
    return s;
  }

  // Drops the datagram's fragments (for `why`), keeping the entry, so its later fragments are dropped too.
  template <class Sink>
  Result ruin(uint32_t s, FragDrop r, Sink& sink, FragDrop& why) {
    release_fragments(s, r, sink);
    slots_[s].ruined = true;
    slots_[s].ruin = r;
    return dropped(r, why);
  }

  template <class Sink>
  void release_fragments(uint32_t s, FragDrop r, Sink& sink) {
    Slot& d = slots_[s];
    for (uint32_t i = d.first; i != kNone;) {
      const uint32_t next = nodes_[i].next;
      sink.fragment_dropped(nodes_[i].frag, r);
      free_node(i);
      i = next;
    }
    d.first = kNone;
    d.count = 0;
    d.have = 0;
    d.max_end = 0;
  }

  // Forgets a datagram: its fragments go to the sink for `r` (and the datagram is counted, if it had any).
  template <class Sink>
  void give_up(uint32_t s, FragDrop r, Sink& sink) {
    const bool had = !slots_[s].ruined;
    release_fragments(s, r, sink);
    if (had) sink.datagram_dropped(r);
    free_slot(s);
  }

  void free_node(uint32_t i) {
    nodes_[i].frag = Frag{};
    nodes_[i].next = free_node_;
    free_node_ = i;
    --held_;
  }

  void free_slot(uint32_t s) {
    Slot& d = slots_[s];
    uint32_t* link = &buckets_[bucket(d.key)];
    while (*link != s) link = &slots_[*link].hnext;
    *link = d.hnext;
    if (d.older != kNone)
      slots_[d.older].newer = d.newer;
    else
      oldest_ = d.newer;
    if (d.newer != kNone)
      slots_[d.newer].older = d.older;
    else
      newest_ = d.older;
    d.older = d.newer = d.hnext = kNone;
    free_slots_.push_back(s);
  }

  ReassemblyLimits limits_;
  uint64_t seed_;
  std::vector<Slot> slots_;
  std::vector<Node> nodes_;
  std::vector<uint32_t> buckets_;
  uint32_t mask_ = 0;
  std::vector<uint32_t> free_slots_;
  uint32_t free_node_ = kNone;
  uint32_t held_ = 0;
  uint32_t oldest_ = kNone, newest_ = kNone;
  std::vector<Piece> pieces_;
  uint32_t n_pieces_ = 0;
  uint16_t done_hl_ = 0;
  uint32_t done_len_ = 0;
};

}  // namespace dptun
