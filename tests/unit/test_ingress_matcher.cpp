// IngressMatcher: exact names, wildcards ("*.example.com" = the domain and its subdomains) and patterns, case
// insensitive, most specific rule first; broken rules are refused by name; hostile names never match wrongly;
// and random rule sets agree with a plain reference implementation.
// <memory> pulls in basic_ios::fail(), which cmocka's fail() macro would rewrite: the matcher's header first.
#include "ingress/ingress_matcher.hpp"

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tests/unit/cmocka.hpp"

using namespace dptun;
using Kind = IngressMatcher::Kind;

namespace {

std::unique_ptr<IngressMatcher> build(const std::vector<IngressMatcher::Rule>& rules, unsigned workers = 2) {
  std::string error;
  auto m = IngressMatcher::build(rules, workers, error);
  if (!m) fail_msg("build failed: %s", error.c_str());
  return m;
}

// The payload of the rule `name` falls under, or -1.
long payload(const IngressMatcher& m, std::string_view name, unsigned worker = 0) {
  auto r = m.lookup(name, worker);
  return r ? long(r->payload) : -1;
}

void exact_and_wildcard(void**) {
  auto m = build({{"app.example.org", 1}, {"*.example.com", 2}, {"*.a.example.com", 3}, {"a.example.com", 4}});
  assert_true(m->literal_database());
  assert_int_equal(payload(*m, "app.example.org"), 1);
  assert_int_equal(payload(*m, "APP.Example.ORG"), 1);  // case-insensitive
  assert_int_equal(payload(*m, "x.app.example.org"), -1);  // exact means exact
  assert_int_equal(payload(*m, "example.com"), 2);         // the domain itself
  assert_int_equal(payload(*m, "www.example.com"), 2);
  assert_int_equal(payload(*m, "Deep.Sub.EXAMPLE.com"), 2);
  assert_int_equal(payload(*m, "badexample.com"), -1);     // not a label boundary
  assert_int_equal(payload(*m, "example.com.evil.net"), -1);
  assert_int_equal(payload(*m, "xample.com"), -1);
  assert_int_equal(payload(*m, "a.example.com"), 4);       // exact beats wildcards
  assert_int_equal(payload(*m, "x.a.example.com"), 3);     // the longer wildcard wins
  assert_int_equal(payload(*m, "x.b.example.com"), 2);
  assert_int_equal(payload(*m, "x.a.example.com", 1), 3);  // every worker's scratch works
  auto r = m->lookup("x.a.example.com", 0);
  assert_true(r && r->kind == Kind::Wildcard && r->rule == 2);
  r = m->lookup("app.example.org", 1);
  assert_true(r && r->kind == Kind::Exact && r->rule == 0);
}

void patterns(void**) {
  auto m = build({{"~api-[0-9]+\\.example\\.org", 7}, {"*.example.org", 8}, {"~.*\\.internal", 9},
                  {"~(db|cache)\\.internal", 10}});
  assert_false(m->literal_database());  // patterns: the regular-expression compiler for all
  assert_int_equal(payload(*m, "api-42.example.org"), 8);  // a wildcard is more specific than a pattern
  assert_int_equal(payload(*m, "db.internal"), 9);         // the first pattern that matches
  assert_int_equal(payload(*m, "DB.Internal"), 9);
  assert_int_equal(payload(*m, "internal"), -1);
  auto p = build({{"~api-[0-9]+\\.example\\.org", 7}});
  assert_int_equal(payload(*p, "api-42.example.org"), 7);
  assert_int_equal(payload(*p, "API-42.EXAMPLE.ORG"), 7);
  assert_int_equal(payload(*p, "xapi-42.example.org"), -1);  // whole names only
  assert_int_equal(payload(*p, "api-42.example.org.evil"), -1);
  assert_int_equal(payload(*p, "api-.example.org"), -1);
}

void refused_rules(void**) {
  std::string error;
  assert_true(!IngressMatcher::build(std::vector<IngressMatcher::Rule>{{"ok.example", 1}, {"~(unclosed", 2}}, 1, error));
  assert_non_null(strstr(error.c_str(), "rule '~(unclosed'"));
  assert_true(!IngressMatcher::build(std::vector<IngressMatcher::Rule>{{"a.example", 1}, {"A.Example", 2}}, 1, error));
  assert_non_null(strstr(error.c_str(), "given twice"));
  assert_true(!IngressMatcher::build(std::vector<IngressMatcher::Rule>{{std::string(254, 'a'), 1}}, 1, error));
  assert_true(!IngressMatcher::build(std::vector<IngressMatcher::Rule>{{"*.", 1}}, 1, error));
}

void hostile_names(void**) {
  auto m = build({{"example.com", 1}, {"*.example.net", 2}});
  assert_int_equal(payload(*m, ""), -1);
  assert_int_equal(payload(*m, std::string(254, 'a')), -1);
  assert_int_equal(payload(*m, std::string("example.com\0", 12)), -1);        // NUL inside
  assert_int_equal(payload(*m, std::string("x\0.example.net", 14)), 2);        // still a subdomain label-wise
  assert_int_equal(payload(*m, std::string(252, '.') + "n"), -1);
  assert_int_equal(payload(*m, "\xff\xfe.example.net"), 2);
  assert_int_equal(payload(*m, ".example.net"), 2);
  auto empty = build({});
  assert_int_equal(payload(*empty, "example.com"), -1);
}

// A reference: the specificity rules written out plainly (exact, then longest wildcard; no patterns here).
long reference(const std::vector<IngressMatcher::Rule>& rules, std::string name) {
  for (auto& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& r : rules)
    if (r.pattern == name) return long(r.payload);
  long best = -1;
  size_t best_len = 0;
  for (const auto& r : rules) {
    if (r.pattern.rfind("*.", 0) != 0) continue;
    const std::string d = r.pattern.substr(2);
    const bool hit = name == d || (name.size() > d.size() && name.compare(name.size() - d.size(), d.size(), d) == 0 &&
                                   name[name.size() - d.size() - 1] == '.');
    if (hit && d.size() > best_len) {
      best = long(r.payload);
      best_len = d.size();
    }
  }
  return best;
}

void agrees_with_reference(void**) {
  std::mt19937 rng(20261121);
  const char* labels[] = {"a", "b", "ab", "example", "www", "x-1", "com", "org", "ba"};
  auto random_name = [&](int max_labels) {
    std::string n;
    int k = 1 + int(rng() % unsigned(max_labels));
    for (int i = 0; i < k; ++i) n += std::string(i ? "." : "") + labels[rng() % 9];
    return n;
  };
  for (int round = 0; round < 20; ++round) {
    std::vector<IngressMatcher::Rule> rules;
    std::vector<std::string> seen;
    for (uint32_t i = 0; i < 40; ++i) {
      std::string p = (rng() % 2 ? "*." : "") + random_name(3);
      if (std::find(seen.begin(), seen.end(), p) != seen.end()) continue;
      seen.push_back(p);
      rules.push_back({p, i});
    }
    auto m = build(rules);
    for (int q = 0; q < 500; ++q) {
      std::string name = random_name(5);
      if (rng() % 3 == 0)
        for (auto& c : name) c = char(std::toupper(static_cast<unsigned char>(c)));
      const long want = reference(rules, name), got = payload(*m, name, unsigned(q % 2));
      if (want != got) fail_msg("round %d: '%s' -> %ld, reference %ld", round, name.c_str(), got, want);
    }
  }
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(exact_and_wildcard), cmocka_unit_test(patterns), cmocka_unit_test(refused_rules),
      cmocka_unit_test(hostile_names),      cmocka_unit_test(agrees_with_reference),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
