#include "dataplane/main_lcore/gateway_config.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "common/cli.hpp"
#include "common/config_file.hpp"
#include "common/hex.hpp"
#include "common/tunnel_names.hpp"
#include "proto/snat_codec.hpp"

namespace dptun {

using libconfig::Setting;

namespace {

Ipv4 parse_ipv4_at(const Setting& s) {
  auto v = Ipv4::parse(static_cast<const char*>(s));
  if (!v) config_fail(s, "expected an IPv4 address like 10.0.0.1");
  return *v;
}

std::vector<uint8_t> read_psk(const Setting& peer) {
  bool inline_key = peer.exists("psk"), key_file = peer.exists("psk_file");
  if (inline_key == key_file) config_fail(peer, "give exactly one of 'psk' (64 hex digits) or 'psk_file'");
  std::string text;
  const Setting& where = inline_key ? peer["psk"] : peer["psk_file"];
  if (inline_key) {
    text = config_string(peer, "psk");
  } else {
    std::string file = config_string(peer, "psk_file");
    std::ifstream in(file);
    if (!in) config_fail(where, "cannot read '" + file + "'");
    in >> text;
  }
  auto key = hex_decode(text);
  if (!key || key->size() != 32) config_fail(where, "expected a 32-byte key as 64 hex digits");
  return *key;
}

void load_eal(const Setting& g, EalConfig& eal) {
  config_allow_keys(g, {"lcores", "hugepages", "memory_mb", "file_prefix", "log_level", "args"});
  eal.lcores = config_string(g, "lcores", "");
  eal.hugepages = config_bool(g, "hugepages", false);
  eal.memory_mb = uint32_t(config_int(g, "memory_mb", 64, 1 << 20, 512));
  eal.file_prefix = config_string(g, "file_prefix", "dpgw");
  eal.log_level = config_string(g, "log_level", "");
  if (const Setting* args = config_child(g, "args")) {
    if (!args->isArray() && !args->isList()) config_fail(*args, "expected a list of strings [ \"...\" ]");
    for (int i = 0; i < args->getLength(); ++i) {
      if ((*args)[i].getType() != Setting::TypeString) config_fail((*args)[i], "expected a string");
      eal.extra_args.emplace_back(static_cast<const char*>((*args)[i]));
    }
  }
}

PortConfig load_port(const Setting& s) {
  config_allow_keys(s, {"name", "device", "address", "gateway", "mtu", "rx_desc", "tx_desc", "kernel_interface",
                        "kernel_rate", "kernel_burst"});
  PortConfig p;
  p.name = config_string(s, "name");
  p.device = config_string(s, "device");
  const std::string address = config_string(s, "address");
  auto prefix = Ipv4Prefix::parse(address);
  // The prefix length says which neighbours are on the link: without it, nothing would be (a /32).
  if (!prefix || prefix->len == 0 || prefix->len > 32 || address.find('/') == std::string::npos)
    config_fail(s["address"], "expected address/prefix like 10.0.1.1/24 (the prefix length names the port's subnet)");
  p.address = *prefix;
  if (s.exists("gateway")) {
    (void)config_string(s, "gateway");
    p.gateway = parse_ipv4_at(s["gateway"]);
    if (!p.address.contains(*p.gateway)) config_fail(s["gateway"], "gateway is outside " + p.address.str());
  }
  p.mtu = uint16_t(config_int(s, "mtu", 0, 9600, 0));
  if (p.mtu && p.mtu < 576) config_fail(s["mtu"], "an IPv4 port needs an MTU of at least 576");
  p.rx_desc = uint16_t(config_int(s, "rx_desc", 64, 8192, 1024));
  p.tx_desc = uint16_t(config_int(s, "tx_desc", 64, 8192, 1024));
  p.kernel_interface = config_string(s, "kernel_interface", "");
  if (s.exists("kernel_interface")) {
    const std::string& k = p.kernel_interface;
    bool ok = !k.empty() && k.size() <= 15 && k != "." && k != "..";
    for (char c : k) ok = ok && c > ' ' && c != '/' && c != ':' && c < 127;
    if (!ok) config_fail(s["kernel_interface"], "expected an interface name of 1..15 characters without '/', ':' or spaces");
  }
  p.kernel_rate = uint32_t(config_int(s, "kernel_rate", 100, 10'000'000, 20000));
  // Bursts the kernel path takes at once (say, a TCP window of a control connection): 1/10 s of the rate.
  p.kernel_burst = uint32_t(config_int(s, "kernel_burst", 16, 10'000'000, std::max<int64_t>(64, p.kernel_rate / 10)));
  for (const char* key : {"kernel_rate", "kernel_burst"})
    if (s.exists(key) && p.kernel_interface.empty())
      config_fail(s[key], std::string(key) + " needs a kernel_interface on this port");
  return p;
}

// What dptun.conf adds to a tunnel's id and name (config_tunnel_list): its static peers.
TunnelConfig load_tunnel(const Setting& s, TunnelIdentity who, std::set<uint32_t>& indexes,
                         std::set<std::vector<uint8_t>>& keys) {
  TunnelConfig t;
  t.id = who.id;
  t.name = std::move(who.name);
  const Setting* peers = config_child(s, "peers");
  if (!peers || !peers->isList() || peers->getLength() == 0)
    config_fail(peers ? *peers : s, "a tunnel needs a list of static peers: peers = ( { index = 1; psk = \"...\"; } )");
  for (int i = 0; i < peers->getLength(); ++i) {
    const Setting& ps = (*peers)[i];
    config_allow_keys(ps, {"index", "psk", "psk_file", "endpoint", "weight"});
    StaticPeerConfig p;
    p.index = uint32_t(config_int(ps, "index", 1, 32767));  // 32768.. belong to dpctld
    if (!indexes.insert(p.index).second) config_fail(ps["index"], "session index used twice");
    p.psk = read_psk(ps);
    // One static key, one sender: two peers (or two agents) sharing a key would share a nonce space.
    if (!keys.insert(p.psk).second)
      config_fail(ps.exists("psk") ? ps["psk"] : ps["psk_file"], "this key is already used by another peer; "
                                                                  "every static peer needs its own key");
    if (ps.exists("endpoint")) {
      auto ep = Endpoint::parse(config_string(ps, "endpoint"));
      if (!ep) config_fail(ps["endpoint"], "expected ip:port like 10.0.2.2:51900");
      p.endpoint = *ep;
    }
    p.weight = uint8_t(config_int(ps, "weight", 1, 255, 1));
    t.peers.push_back(std::move(p));
  }
  return t;
}

EntryPointConfig load_entry(const Setting& s, const GatewayConfig& cfg) {
  config_allow_keys(s, {"proto", "port", "listen", "tunnel", "target", "keepalive", "ttl"});
  EntryPointConfig e;
  std::string proto = config_string(s, "proto");
  if (proto == "tcp")
    e.proto = 6;
  else if (proto == "udp")
    e.proto = 17;
  else
    config_fail(s["proto"], "expected \"tcp\" or \"udp\"");
  e.port = uint16_t(config_int(s, "port", 1, 65535));
  if (e.proto == 17 && e.port == cfg.tunnel_port)
    config_fail(s["port"], "UDP port " + std::to_string(e.port) + " is the tunnel port");
  if (e.proto == 17 && cfg.stun_port && e.port == cfg.stun_port)
    config_fail(s["port"], "UDP port " + std::to_string(e.port) + " is the STUN port (dpgw.stun_port, default 3478; 0 "
                           "turns the STUN server off)");
  if (s.exists("listen")) {
    (void)config_string(s, "listen");
    e.listen = parse_ipv4_at(s["listen"]);
  }
  std::string tunnel = config_string(s, "tunnel");
  const auto named = std::find_if(cfg.tunnels.begin(), cfg.tunnels.end(),
                                  [&](const TunnelConfig& t) { return tunnel_is(t.id, t.name, tunnel); });
  if (named == cfg.tunnels.end()) config_fail(s["tunnel"], "no tunnel with id or name '" + tunnel + "'");
  e.tunnel = uint16_t(named - cfg.tunnels.begin());
  std::string target = config_string(s, "target");
  auto ep = Endpoint::parse(target);
  if (!ep)
    config_fail(s["target"], "expected ipv4:port as the agent reaches it, like 10.0.2.2:8080 "
                             "(hostname targets need the control plane)");
  e.target = *ep;
  e.keepalive = config_bool(s, "keepalive", false);
  e.udp_ttl_ns = config_duration_ns(s, "ttl", 0.1, 86400, double(cfg.flow.udp_ttl_ns) / 1e9);
  if (e.proto == 6 && (s.exists("keepalive") || s.exists("ttl")))
    config_fail(s.exists("ttl") ? s["ttl"] : s["keepalive"], "'keepalive' and 'ttl' apply to UDP entry points only");
  return e;
}

// The edge role's section (after the ports and the static peers, whose keys it must not share).
EdgeConfig load_edge(const Setting& s, const GatewayConfig& cfg, std::set<std::vector<uint8_t>>& keys) {
  config_allow_keys(s, {"concentrator", "session", "psk", "psk_file", "cipher", "underlay_port", "lan_port", "snat_net",
                        "keepalive", "local_port"});
  EdgeConfig e;
  auto port_named = [&](const char* key) {
    const std::string name = config_string(s, key);
    for (size_t i = 0; i < cfg.ports.size(); ++i)
      if (cfg.ports[i].name == name) return uint8_t(i);
    config_fail(s[key], "no port named '" + name + "' in dpgw.ports");
  };
  e.underlay_port = port_named("underlay_port");
  e.lan_port = port_named("lan_port");
  if (e.lan_port == e.underlay_port)
    config_fail(s["lan_port"], "the LAN port must be another port than the underlay port");
  const auto concentrator = Endpoint::parse(config_string(s, "concentrator"));
  if (!concentrator || !concentrator->ip.is_v4() || !concentrator->port)
    config_fail(s["concentrator"], "expected the concentrator's tunnel endpoint as ipv4:port, like 192.0.2.1:51900");
  e.concentrator = *concentrator;
  const PortConfig& under = cfg.ports[e.underlay_port];
  if (!under.address.contains(Ipv4{e.concentrator.ip.v4()}) && !under.gateway)
    config_fail(s["concentrator"], e.concentrator.ip.str() + " is outside port '" + under.name + "' (" +
                                       under.address.str() + ") and that port has no gateway");
  e.session = uint32_t(config_int(s, "session", 1, 32767));  // a static peer's index at the concentrator
  e.psk = read_psk(s);
  if (!keys.insert(e.psk).second)
    config_fail(s.exists("psk") ? s["psk"] : s["psk_file"], "this key is already used by a static peer; the edge's "
                                                             "session needs its own key");
  e.key_len = s.exists("cipher") ? config_cipher_key_len(s, "cipher") : cfg.crypto.key_len;
  const std::string net = config_string(s, "snat_net");
  const auto prefix = Ipv4Prefix::parse(net);
  if (!prefix || net.find('/') == std::string::npos)
    config_fail(s["snat_net"], "expected a subnet like 100.64.0.0/16");
  std::string why;
  if (!SnatCodec::valid_subnet(*prefix, why)) config_fail(s["snat_net"], why);
  e.snat_net = *prefix;
  // Targets route the subnet to the LAN port's address: it must not be anybody's link.
  const Ipv4Prefix whole{Ipv4{prefix->addr.value & prefix->mask()}, prefix->len};
  for (const PortConfig& p : cfg.ports) {
    const Ipv4Prefix link{Ipv4{p.address.addr.value & p.address.mask()}, p.address.len};
    if (whole.contains(link.addr) || link.contains(whole.addr))
      config_fail(s["snat_net"], whole.str() + " overlaps port '" + p.name + "' (" + p.address.str() +
                                     "): the translated sources must be routed to the LAN port, not be on a link");
  }
  e.keepalive_ns = config_duration_ns(s, "keepalive", 0.1, 3600, 2);
  e.local_port = uint16_t(config_int(s, "local_port", 1, 65535, cfg.tunnel_port));
  return e;
}

}  // namespace

static GatewayConfig load(const std::string& path);

void control_socket_options(Cli& cli, std::string& socket) {
  cli.value("socket", socket).option("config", true, [&cli, &socket](const char* path) -> std::optional<int> {
    std::string error;
    const auto from_config = control_socket_of(path, error);
    if (!from_config) return cli.value_error(error);
    socket = *from_config;
    return std::nullopt;
  });
}

std::vector<std::string> restart_only_changes(const GatewayConfig& now, const GatewayConfig& next) {
  std::vector<std::string> keys;
  auto differs = [&](bool changed, const char* key) {
    if (changed) keys.emplace_back(key);
  };
  differs(next.workers != now.workers, "workers");
  differs(next.eal != now.eal, "eal");
  differs(next.ports != now.ports, "ports");
  differs(next.tunnel_port != now.tunnel_port, "tunnel_port");
  differs(next.quic_port != now.quic_port, "quic_port");
  differs(next.stun_port != now.stun_port, "stun_port");
  differs(next.quic_key_update_packets != now.quic_key_update_packets, "quic_key_update_packets");
  differs(next.mbufs != now.mbufs, "mbufs");
  differs(next.idle != now.idle, "idle");  // (each worker's copy, made when it starts)
  differs(next.control_socket != now.control_socket, "control_socket");
  differs(next.metrics_listen != now.metrics_listen, "metrics_listen");
  differs(next.max_tunnels != now.max_tunnels, "max_tunnels");
  differs(next.session_timeout_ns != now.session_timeout_ns, "session_timeout");
  differs(next.direct_mode != now.direct_mode, "direct_mode");
  differs(next.reassembly != now.reassembly, "reassembly");  // (each worker's tables, sized when it starts)
  differs(next.edge != now.edge, "edge");
  differs(next.flow != now.flow, "flows");
  // The crypto device counts only for the engines that use one (a device named for another engine is not made).
  differs(next.crypto.key_len != now.crypto.key_len || next.crypto.rekey_interval_ns != now.crypto.rekey_interval_ns ||
              next.crypto.engine != now.crypto.engine ||
              (next.crypto.device != now.crypto.device && (now.crypto.uses_device() || next.crypto.uses_device())),
          "crypto");
  return keys;
}

std::optional<std::string> control_socket_of(const std::string& path, std::string& error) {
  try {
    return load_gateway_config(path).control_socket;
  } catch (const ConfigError& e) {
    error = e.what();
    return std::nullopt;
  }
}

GatewayConfig load_gateway_config(const std::string& path) {
  try {
    return load(path);
  } catch (const libconfig::SettingException& e) {
    // Every access above checks types first; this is a safety net that still names the key.
    throw ConfigError(path + ": key '" + e.getPath() + "': " + e.what());
  }
}

static GatewayConfig load(const std::string& path) {
  ConfigFile file(path);
  const Setting& root = file.root();
  config_allow_keys(root, {"dpgw", "tunnels", "entry_points", "edge"});
  GatewayConfig cfg;
  cfg.path = path;

  if (!root.exists("dpgw")) config_fail_missing(root, "dpgw");
  const Setting& gw = root["dpgw"];
  config_allow_keys(gw, {"workers", "eal", "ports", "tunnel_port", "quic_port", "stun_port", "quic_key_update_packets", "mbufs", "idle", "flows", "crypto",
                         "control_socket", "metrics_listen", "max_tunnels", "session_timeout", "direct_mode",
                         "reassembly"});
  cfg.workers = uint16_t(config_int(gw, "workers", 1, 64, 1));
  if (const Setting* eal = config_child(gw, "eal")) load_eal(*eal, cfg.eal);
  cfg.tunnel_port = uint16_t(config_int(gw, "tunnel_port", 1, 65535, 51900));
  cfg.quic_port = uint16_t(config_int(gw, "quic_port", 1, 65535, 443));
  if (cfg.quic_port == cfg.tunnel_port)
    config_fail(gw.exists("quic_port") ? gw["quic_port"] : gw["tunnel_port"],
                "the tunnel port and the QUIC port (default 443) must differ");
  cfg.stun_port = uint16_t(config_int(gw, "stun_port", 0, 65535, 3478));
  const std::pair<const char*, uint16_t> shared[] = {{"tunnel_port", cfg.tunnel_port}, {"quic_port", cfg.quic_port}};
  for (const auto& [key, port] : shared)
    if (cfg.stun_port && cfg.stun_port == port)
      config_fail(gw.exists("stun_port") ? gw["stun_port"] : gw[key],
                  std::string("the STUN port (dpgw.stun_port, default 3478; 0: none) and dpgw.") + key + " must differ");
  cfg.quic_key_update_packets = uint64_t(config_int(gw, "quic_key_update_packets", 1, 1 << 22, 1 << 22));
  cfg.mbufs = uint32_t(config_int(gw, "mbufs", 2047, 4 * 1024 * 1024, 16383));
  cfg.control_socket = config_string(gw, "control_socket", "/run/dptun/dpgw.sock");
  cfg.metrics_listen = config_metrics_listen(gw, cfg.metrics_listen);
  cfg.max_tunnels = uint16_t(config_int(gw, "max_tunnels", 1, 16384, 1024));
  cfg.session_timeout_ns = config_duration_ns(gw, "session_timeout", 0.5, 3600, 6);
  cfg.direct_mode = config_bool(gw, "direct_mode", false);

  const Setting* ports = config_child(gw, "ports");
  if (!ports || !ports->isList() || ports->getLength() == 0)
    config_fail(ports ? *ports : gw, "dpgw needs at least one port: ports = ( { name = ...; device = ...; } )");
  std::set<std::string> port_names;
  for (int i = 0; i < ports->getLength(); ++i) {
    cfg.ports.push_back(load_port((*ports)[i]));
    if (!port_names.insert(cfg.ports.back().name).second) config_fail((*ports)[i]["name"], "port name used twice");
    const std::string& k = cfg.ports.back().kernel_interface;
    if (!k.empty() && !port_names.insert("kernel:" + k).second)
      config_fail((*ports)[i]["kernel_interface"], "kernel interface '" + k + "' used by two ports");
  }
  if (cfg.ports.size() > 8) config_fail(*ports, "at most 8 ports are supported");

  if (const Setting* idle = config_child(gw, "idle")) {
    config_allow_keys(*idle, {"backoff", "pause_polls", "max_sleep_us"});
    cfg.idle.backoff = config_bool(*idle, "backoff", false);
    cfg.idle.pause_polls = uint32_t(config_int(*idle, "pause_polls", 0, 1 << 20, 0));
    cfg.idle.max_sleep_us = uint32_t(config_int(*idle, "max_sleep_us", 1, 100000, 200));
  }
  if (const Setting* f = config_child(gw, "flows")) {
    config_allow_keys(*f, {"table_size", "udp_ttl", "tcp_syn_timeout", "tcp_established_timeout",
                           "tcp_closing_timeout", "tcp_closed_timeout"});
    cfg.flow.table_size = uint32_t(config_int(*f, "table_size", 64, 1 << 24, 65536));
    cfg.flow.udp_ttl_ns = config_duration_ns(*f, "udp_ttl", 0.1, 86400, 5);
    cfg.flow.tcp_syn_timeout_ns = config_duration_ns(*f, "tcp_syn_timeout", 1, 3600, 30);
    cfg.flow.tcp_established_timeout_ns = config_duration_ns(*f, "tcp_established_timeout", 10, 864000, 7200);
    cfg.flow.tcp_closing_timeout_ns = config_duration_ns(*f, "tcp_closing_timeout", 1, 3600, 60);
    cfg.flow.tcp_closed_timeout_ns = config_duration_ns(*f, "tcp_closed_timeout", 0.1, 3600, 5);
  }
  {
    // Two tables (client side, tunnel side) per worker hold mbufs: together at most half of the pool by default.
    ReassemblyLimits& r = cfg.reassembly;
    const uint32_t share = cfg.mbufs / (4u * cfg.workers);
    r.fragments = std::min<uint32_t>(2048, share);
    if (const Setting* ra = config_child(gw, "reassembly")) {
      config_allow_keys(*ra, {"datagrams", "fragments", "max_size", "timeout"});
      r.datagrams = uint32_t(config_int(*ra, "datagrams", 16, 1 << 20, 1024));
      if (ra->exists("fragments")) {
        r.fragments = uint32_t(config_int(*ra, "fragments", 16, 1 << 20, 2048));
        if (r.fragments > share)
          config_fail((*ra)["fragments"], "2 tables x " + std::to_string(cfg.workers) + " worker(s) x " +
                                              std::to_string(r.fragments) + " fragments would hold more than half of the " +
                                              std::to_string(cfg.mbufs) + " mbufs: raise dpgw.mbufs or lower this");
      }
      r.max_size = uint32_t(config_int(*ra, "max_size", 576, 65535, 65535));
      r.timeout_ns = config_duration_ns(*ra, "timeout", 0.1, 60, 2);
    }
    if (r.fragments < 16)
      config_fail(gw, "dpgw.mbufs " + std::to_string(cfg.mbufs) + " leaves fewer than 16 mbufs per reassembly table (" +
                          std::to_string(cfg.workers) + " worker(s)): raise dpgw.mbufs");
    r.fragments_per_datagram = std::min<uint32_t>(r.fragments, 128);
  }
  if (const Setting* c = config_child(gw, "crypto")) {
    config_allow_keys(*c, {"engine", "device", "cipher", "rekey_interval"});
    cfg.crypto.engine = config_string(*c, "engine", cfg.crypto.engine);
    static constexpr const char* kEngines[] = {"ipsec-mb", "cryptodev", "cryptodev-async", "openssl"};
    if (std::none_of(std::begin(kEngines), std::end(kEngines), [&](const char* e) { return cfg.crypto.engine == e; }))
      config_fail((*c)["engine"], "expected \"cryptodev\", \"cryptodev-async\", \"ipsec-mb\" or \"openssl\"");
    cfg.crypto.device = config_string(*c, "device", cfg.crypto.device);
    if (cfg.crypto.device.empty()) config_fail((*c)["device"], "expected a crypto device name");
    cfg.crypto.device_where = c->exists("device") ? config_where((*c)["device"]) : config_where_missing(*c, "device");
    cfg.crypto.key_len = config_cipher_key_len(*c, "cipher");
    cfg.crypto.rekey_interval_ns = config_duration_ns(*c, "rekey_interval", 10, 86400, 120);
  } else {
    cfg.crypto.device_where = config_where_missing(gw, "crypto.device");
  }

  std::set<uint32_t> indexes;
  std::set<std::vector<uint8_t>> keys;
  config_tunnel_list(root, {"id", "name", "peers"}, [&](const Setting& s, TunnelIdentity who) {
    cfg.tunnels.push_back(load_tunnel(s, std::move(who), indexes, keys));
  });
  if (const Setting* entries = config_child(root, "entry_points")) {
    if (!entries->isList()) config_fail(*entries, "expected a list ( { ... }, ... )");
    std::set<std::pair<uint8_t, uint16_t>> used;
    for (int i = 0; i < entries->getLength(); ++i) {
      cfg.entry_points.push_back(load_entry((*entries)[i], cfg));
      const auto& e = cfg.entry_points.back();
      if (!used.insert({e.proto, e.port}).second)
        config_fail((*entries)[i]["port"], std::string("entry point ") + (e.proto == 6 ? "tcp/" : "udp/") + std::to_string(e.port) + " defined twice");
    }
  }
  if (const Setting* edge = config_child(root, "edge")) {
    if (!edge->isGroup()) config_fail(*edge, "expected a group edge = { concentrator = ...; ... }");
    cfg.edge = load_edge(*edge, cfg, keys);
  }
  return cfg;
}

}  // namespace dptun
