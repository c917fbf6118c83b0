// IngressMatcher: which hostname rule a name falls under. Exact names live in a hash table; wildcard rules
// ("*.example.com": the domain and every subdomain) and patterns ("~regex", matching the whole name) share one
// Hyperscan database (the literal API when there are no patterns). Case-insensitive. The most specific rule
// wins: exact, then the longest wildcard, then the first pattern. Immutable once built; lookups never allocate
// and use the calling worker's own Hyperscan scratch.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

struct hs_database;
struct hs_scratch;

namespace dptun {

class IngressMatcher {
 public:
  struct Rule {
    std::string pattern;  // normalized: "app.example.org", "*.example.com" or "~regex"
    uint32_t payload = 0; // what the caller wants back (e.g. tunnel slot and flags)
  };
  enum class Kind : uint8_t { Exact, Wildcard, Pattern };
  struct Match {
    uint32_t payload;
    uint32_t rule;  // index into the rules given to build()
    Kind kind;
  };
  static constexpr size_t kMaxName = 253;

  // Builds the matcher with one scratch space per worker. nullptr with `error` (naming the rule) on failure.
  static std::unique_ptr<IngressMatcher> build(std::span<const Rule> rules, unsigned workers, std::string& error);
  ~IngressMatcher();
  IngressMatcher(const IngressMatcher&) = delete;
  IngressMatcher& operator=(const IngressMatcher&) = delete;

  // The most specific rule for `name`, looked up with worker `worker`'s scratch (one caller per worker).
  std::optional<Match> lookup(std::string_view name, unsigned worker) const;
  size_t size() const { return payloads_.size(); }
  bool literal_database() const { return literal_db_; }  // built with the literal API (no patterns)

 private:
  IngressMatcher() = default;
  struct Slot {
    uint64_t hash = 0;
    uint32_t offset = 0;  // into names_
    uint16_t len = 0;
    uint32_t rule = UINT32_MAX;  // UINT32_MAX: empty
  };
  std::optional<uint32_t> find_exact(std::string_view lower) const;

  std::vector<uint32_t> payloads_;     // by rule
  std::vector<Kind> kinds_;            // by rule
  std::vector<uint16_t> suffix_len_;   // wildcard rules: length of the domain after "*."
  std::vector<Slot> exact_;            // open addressing, power-of-two size
  std::string names_;                  // exact names, back to back
  hs_database* db_ = nullptr;          // wildcards and patterns; nullptr when there are none
  std::vector<hs_scratch*> scratch_;   // one per worker
  bool literal_db_ = false;
};

}  // namespace dptun
