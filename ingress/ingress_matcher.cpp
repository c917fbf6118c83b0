#include "ingress/ingress_matcher.hpp"

#include <hs/hs.h>

#include <algorithm>
#include <cctype>
#include <cstring>

namespace dptun {

namespace {

inline char lower(char c) { return c >= 'A' && c <= 'Z' ? char(c | 0x20) : c; }

// FNV-1a over the (lower-case) name.
inline uint64_t name_hash(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) {
    h ^= uint8_t(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

// A literal as a Hyperscan regular expression (for databases that also hold patterns).
std::string escape_literal(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c))) out += '\\';
    out += c;
  }
  return out;
}

// The scanned buffer is the lower-case name reversed, then '\n', then the name itself. Reversed, the wildcards'
// domains differ in their last bytes (what Hyperscan's literal matcher hashes on) instead of all ending in the
// same ".example.com"; a wildcard matches when its reversed domain is a prefix ending at a label boundary.
// Patterns, compiled as "\n(?:P)$", see the name forwards and whole.
struct ScanState {
  const char* rev;  // the reversed name
  size_t len;       // of the name
  const std::vector<IngressMatcher::Kind>* kinds;
  const std::vector<uint16_t>* suffix_len;
  uint32_t wildcard = UINT32_MAX;  // best wildcard so far (longest domain)
  uint16_t wildcard_len = 0;
  uint32_t pattern = UINT32_MAX;   // first pattern rule that matched
};

int on_match(unsigned int id, unsigned long long, unsigned long long to, unsigned int, void* ctx) {
  auto& st = *static_cast<ScanState*>(ctx);
  if ((*st.kinds)[id] == IngressMatcher::Kind::Wildcard) {
    // "*.example.com" covers example.com itself and names ending in ".example.com".
    const uint16_t n = (*st.suffix_len)[id];
    if (to == n && (n == st.len || st.rev[n] == '.') && n > st.wildcard_len) {
      st.wildcard = id;
      st.wildcard_len = n;
    }
  } else if (id < st.pattern) {
    st.pattern = id;  // anchored at both ends when compiled: a whole-name match
  }
  return 0;
}

}  // namespace

std::unique_ptr<IngressMatcher> IngressMatcher::build(std::span<const Rule> rules, unsigned workers,
                                                      std::string& error) {
  std::unique_ptr<IngressMatcher> m(new IngressMatcher());
  m->payloads_.reserve(rules.size());
  size_t n_exact = 0, n_pattern = 0;
  for (const Rule& r : rules) {
    m->payloads_.push_back(r.payload);
    Kind k = r.pattern.rfind("~", 0) == 0 ? Kind::Pattern : r.pattern.rfind("*.", 0) == 0 ? Kind::Wildcard : Kind::Exact;
    m->kinds_.push_back(k);
    m->suffix_len_.push_back(k == Kind::Wildcard ? uint16_t(r.pattern.size() - 2) : 0);
    n_exact += k == Kind::Exact;
    n_pattern += k == Kind::Pattern;
    const size_t name_len = k == Kind::Wildcard ? r.pattern.size() - 2 : r.pattern.size();
    if (k != Kind::Pattern && (name_len == 0 || name_len > kMaxName)) {
      error = "rule '" + r.pattern + "': a hostname is 1.." + std::to_string(kMaxName) + " characters";
      return nullptr;
    }
  }
  // Exact names: open addressing at most half full.
  size_t cap = 16;
  while (cap < n_exact * 2) cap <<= 1;
  m->exact_.assign(cap, Slot{});
  for (uint32_t i = 0; i < rules.size(); ++i) {
    if (m->kinds_[i] != Kind::Exact) continue;
    std::string name(rules[i].pattern);
    std::transform(name.begin(), name.end(), name.begin(), lower);
    if (m->find_exact(name)) {
      error = "rule '" + rules[i].pattern + "' is given twice";
      return nullptr;
    }
    const uint64_t h = name_hash(name);
    size_t at = h & (cap - 1);
    while (m->exact_[at].rule != UINT32_MAX) at = (at + 1) & (cap - 1);
    m->exact_[at] = Slot{h, uint32_t(m->names_.size()), uint16_t(name.size()), i};
    m->names_ += name;
  }
  // Wildcards and patterns: one database. Hyperscan ids are rule indexes.
  std::vector<std::string> exprs;
  std::vector<unsigned> ids, flags;
  std::vector<size_t> lens;
  for (uint32_t i = 0; i < rules.size(); ++i) {
    if (m->kinds_[i] == Kind::Exact) continue;
    const std::string& p = rules[i].pattern;
    if (m->kinds_[i] == Kind::Wildcard) {
      std::string rev(p.rbegin(), p.rend() - 2);  // "*.example.com" -> "moc.elpmaxe"
      exprs.push_back(n_pattern ? "^" + escape_literal(rev) : rev);
      flags.push_back(HS_FLAG_CASELESS);
    } else {
      exprs.push_back("\\n(?:" + p.substr(1) + ")$");
      flags.push_back(HS_FLAG_CASELESS | HS_FLAG_SINGLEMATCH);
    }
    ids.push_back(i);
    lens.push_back(exprs.back().size());
  }
  if (!exprs.empty()) {
    std::vector<const char*> ptrs;
    for (const auto& e : exprs) ptrs.push_back(e.c_str());
    hs_compile_error_t* ce = nullptr;
    hs_error_t rc;
    if (n_pattern == 0) {
      m->literal_db_ = true;
      rc = hs_compile_lit_multi(ptrs.data(), flags.data(), ids.data(), lens.data(), unsigned(ptrs.size()),
                                HS_MODE_BLOCK, nullptr, &m->db_, &ce);
    } else {
      rc = hs_compile_multi(ptrs.data(), flags.data(), ids.data(), unsigned(ptrs.size()), HS_MODE_BLOCK, nullptr,
                            &m->db_, &ce);
    }
    if (rc != HS_SUCCESS) {
      if (ce && ce->expression >= 0 && size_t(ce->expression) < ids.size())
        error = "rule '" + rules[ids[size_t(ce->expression)]].pattern + "': " + ce->message;
      else
        error = std::string("cannot build the hostname database: ") + (ce ? ce->message : "Hyperscan error");
      if (ce) hs_free_compile_error(ce);
      return nullptr;
    }
    hs_scratch_t* first = nullptr;
    if (hs_alloc_scratch(m->db_, &first) != HS_SUCCESS) {
      error = "cannot allocate Hyperscan scratch";
      return nullptr;
    }
    m->scratch_.push_back(first);
    for (unsigned w = 1; w < std::max(workers, 1u); ++w) {
      hs_scratch_t* s = nullptr;
      if (hs_clone_scratch(first, &s) != HS_SUCCESS) {
        error = "cannot allocate Hyperscan scratch";
        return nullptr;
      }
      m->scratch_.push_back(s);
    }
  }
  return m;
}

IngressMatcher::~IngressMatcher() {
  for (hs_scratch_t* s : scratch_) hs_free_scratch(s);
  if (db_) hs_free_database(db_);
}

std::optional<uint32_t> IngressMatcher::find_exact(std::string_view lower_name) const {
  const uint64_t h = name_hash(lower_name);
  const size_t mask = exact_.size() - 1;
  for (size_t at = h & mask;; at = (at + 1) & mask) {
    const Slot& s = exact_[at];
    if (s.rule == UINT32_MAX) return std::nullopt;
    if (s.hash == h && s.len == lower_name.size() && std::memcmp(names_.data() + s.offset, lower_name.data(), s.len) == 0)
      return s.rule;
  }
}

std::optional<IngressMatcher::Match> IngressMatcher::lookup(std::string_view name, unsigned worker) const {
  if (name.empty() || name.size() > kMaxName) return std::nullopt;
  const size_t n = name.size();
  char buf[2 * kMaxName + 1];  // reversed name, '\n', name
  for (size_t i = 0; i < n; ++i) {
    const char c = lower(name[i]);
    buf[n + 1 + i] = c;
    buf[n - 1 - i] = c;
  }
  buf[n] = '\n';
  if (auto r = find_exact(std::string_view(buf + n + 1, n))) return Match{payloads_[*r], *r, Kind::Exact};
  if (!db_ || worker >= scratch_.size()) return std::nullopt;
  ScanState st{buf, n, &kinds_, &suffix_len_};
  // Literal-only databases need the reversed name alone.
  const unsigned scan_len = unsigned(literal_db_ ? n : 2 * n + 1);
  if (hs_scan(db_, buf, scan_len, 0, scratch_[worker], on_match, &st) != HS_SUCCESS) return std::nullopt;
  if (st.wildcard != UINT32_MAX) return Match{payloads_[st.wildcard], st.wildcard, Kind::Wildcard};
  if (st.pattern != UINT32_MAX) return Match{payloads_[st.pattern], st.pattern, Kind::Pattern};
  return std::nullopt;
}

}  // namespace dptun
