// IngressMatcher microbenchmark: build time and lookups per second at 1k, 10k and 100k rules (half exact
// names, half wildcards; then the same plus 100 patterns), next to a baseline measured in the same run: the usual label walk (one hash lookup
// per parent domain in std::unordered_map, as web servers' domain maps do). One JSON line per rule count.
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "ingress/ingress_matcher.hpp"

using namespace dptun;
using Clock = std::chrono::steady_clock;

namespace {

// The baseline: exact names, then "*.<parent>" for each parent domain, longest first.
struct LabelWalk {
  std::unordered_map<std::string, uint32_t> exact, wildcard;
  long lookup(std::string name) const {
    for (auto& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
    if (auto it = exact.find(name); it != exact.end()) return it->second;
    for (size_t at = 0; at != std::string::npos;) {
      if (auto it = wildcard.find(name.substr(at)); it != wildcard.end()) return it->second;
      at = name.find('.', at);
      if (at != std::string::npos) ++at;
    }
    return -1;
  }
};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

int main(int argc, char** argv) {
  size_t lookups = 2'000'000;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--lookups") lookups = std::stoul(argv[++i]);
  std::mt19937 rng(42);
  for (bool with_patterns : {false, true})
  for (size_t n : {size_t(1000), size_t(10000), size_t(100000)}) {
    std::vector<IngressMatcher::Rule> rules;
    for (size_t i = 0; i < n / 2; ++i) rules.push_back({"svc" + std::to_string(i) + ".apps.example.com", uint32_t(i)});
    for (size_t i = n / 2; i < n; ++i) rules.push_back({"*.t" + std::to_string(i) + ".example.net", uint32_t(i)});
    // The second series adds 100 patterns that no query matches: the regular-expression database for all.
    if (with_patterns)
      for (uint32_t i = 0; i < 100; ++i) rules.push_back({"~api-[0-9]+\\.r" + std::to_string(i) + "\\.example\\.org", 0});
    // Queries: a third exact hits, a third subdomains under wildcards, a third names no rule covers.
    std::vector<std::string> names;
    for (size_t q = 0; q < 4096; ++q) {
      const size_t i = rng() % (n / 2);
      switch (q % 3) {
        case 0: names.push_back("SVC" + std::to_string(i) + ".apps.example.com"); break;
        case 1: names.push_back("www.api" + std::to_string(q) + ".t" + std::to_string(n / 2 + i) + ".example.net"); break;
        default: names.push_back("host" + std::to_string(q) + ".nowhere.example.org"); break;
      }
    }
    auto t0 = Clock::now();
    std::string error;
    auto m = IngressMatcher::build(rules, 1, error);
    const double build_s = seconds_since(t0);
    if (!m) {
      fprintf(stderr, "build failed: %s\n", error.c_str());
      return 1;
    }
    t0 = Clock::now();
    LabelWalk walk;
    for (const auto& r : rules)
      (r.pattern.rfind("*.", 0) == 0 ? walk.wildcard[r.pattern.substr(2)] : walk.exact[r.pattern]) = r.payload;
    const double walk_build_s = seconds_since(t0);

    // Alternate the two, several rounds, keep the best of each (least disturbed by the shared host).
    double best_m = 1e9, best_w = 1e9;
    long check_m = 0, check_w = 0;
    const size_t per_round = lookups / 5;
    for (int round = 0; round < 5; ++round) {
      t0 = Clock::now();
      for (size_t q = 0; q < per_round; ++q) {
        auto r = m->lookup(names[q & 4095], 0);
        check_m += r ? long(r->payload) : -1;
      }
      best_m = std::min(best_m, seconds_since(t0));
      t0 = Clock::now();
      for (size_t q = 0; q < per_round; ++q) check_w += walk.lookup(names[q & 4095]);
      best_w = std::min(best_w, seconds_since(t0));
    }
    if (check_m != check_w) {
      fprintf(stderr, "the matcher and the label walk disagree (%ld vs %ld)\n", check_m, check_w);
      return 1;
    }
    printf("{\"bench\":\"ingress_matcher\",\"patterns\":%d,\"literal_api\":%s,\"rules\":%zu,\"build_ms\":%.1f,\"lookups_per_s\":%.0f,"
           "\"ns_per_lookup\":%.1f,\"baseline\":\"label_walk_unordered_map\",\"baseline_build_ms\":%.1f,"
           "\"baseline_lookups_per_s\":%.0f,\"ratio_to_baseline\":%.3f}\n",
           with_patterns ? 100 : 0, m->literal_database() ? "true" : "false", n, build_s * 1e3, double(per_round) / best_m, best_m * 1e9 / double(per_round), walk_build_s * 1e3,
           double(per_round) / best_w, best_w / best_m);
    fflush(stdout);
  }
  return 0;
}
