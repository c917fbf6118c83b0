// A request on dpctld's dpctl API socket (control/dpctld_api.cpp), through Dpctld::api_dry_run: the request is
// parsed and checked as dpctld would (a change is prepared against the state, never saved or pushed), against a
// dpctld with one tunnel, one entry point and one rule in its config. Properties: every request gets one reply
// line that is valid JSON with a boolean "ok" (and an "error" text when false); no exception escapes.
#include <nlohmann/json.hpp>

#include <string>

#include "control/dpctld.hpp"
#include "fuzz/fuzz.hpp"

using namespace dptun;

namespace {
Dpctld& daemon_under_test() {
  static Dpctld* d = [] {
    DpctldConfig cfg;
    cfg.path = "fuzz.conf";
    cfg.state_file = "/nonexistent/dptun-fuzz.state";  // a dry run never reads or writes it
    cfg.gateway_endpoint = *Endpoint::parse("10.99.2.1:51900");
    cfg.agent_listen = *Endpoint::parse("10.99.2.1:7443");
    cfg.agent_address = "10.99.2.1:7443";
    TunnelDef t;
    t.id = *Uuid::parse("6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f");
    t.name = "web";
    t.allow = {"CN=agent-1"};
    cfg.tunnels.push_back(t);
    EntrySpec e;
    e.proto = 6;
    e.port = 8080;
    e.tunnel = t.id;
    e.target = *Endpoint::parse("10.0.0.10:80");
    cfg.entry_points.push_back(e);
    cfg.ingress.push_back(IngressRuleSpec{"app.example.org", t.id, Endpoint::parse("10.0.0.10:443"), false, false});
    return new Dpctld(std::move(cfg));
  }();
  return *d;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string line(reinterpret_cast<const char*>(data), size);
  const std::string reply = daemon_under_test().api_dry_run(line);
  FUZZ_CHECK(!reply.empty() && reply.back() == '\n');
  const nlohmann::json j = nlohmann::json::parse(reply, nullptr, false);
  FUZZ_CHECK(!j.is_discarded() && j.is_object());
  FUZZ_CHECK(j.contains("ok") && j["ok"].is_boolean());
  if (!j["ok"].get<bool>()) FUZZ_CHECK(j.contains("error") && j["error"].is_string() && !j["error"].get<std::string>().empty());
  return 0;
}
