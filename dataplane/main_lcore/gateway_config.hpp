// dpgw configuration: the typed result of reading the libconfig file (see conf/dptun.conf for every key).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/inet.hpp"
#include "common/uuid.hpp"
#include "packet/ipv4_reassembly.hpp"

namespace dptun {

class Cli;

struct EalConfig {
  std::string lcores;        // EAL --lcores; empty: main on CPU 0, worker i on CPU i % ncpus
  bool hugepages = false;    // false: --no-huge (anonymous memory)
  uint32_t memory_mb = 512;  // -m
  std::string file_prefix = "dpgw";
  std::string log_level;     // EAL --log-level, e.g. "notice"
  std::vector<std::string> extra_args;
  bool operator==(const EalConfig&) const = default;
};

struct PortConfig {
  std::string name;
  std::string device;          // PCI address (0000:01:00.0) or vdev string (net_af_packet0,iface=eth1)
  Ipv4Prefix address;          // our address on this port and its connected subnet
  std::optional<Ipv4> gateway; // next hop for everything outside the connected subnets
  uint16_t mtu = 0;            // 0: keep the device's MTU
  uint16_t rx_desc = 1024;
  uint16_t tx_desc = 1024;
  // The kernel path: a TAP interface of this name gets the port's MAC, address and MTU, and every packet for
  // the port's address that dpgw does not serve itself (e.g. dpctld's TLS port, ssh). Empty: such packets are
  // counted and dropped.
  std::string kernel_interface;
  uint32_t kernel_rate = 20000;  // packets per second this port may hand to the kernel (shared by the workers)
  uint32_t kernel_burst = 2000;  // packets the kernel path takes at once (token bucket size, shared by the workers)
  bool operator==(const PortConfig&) const = default;
};

struct StaticPeerConfig {
  uint32_t index = 0;             // receiver session index, 1..65535, unique across tunnels
  std::vector<uint8_t> psk;       // 32-byte base secret (never logged)
  std::optional<Endpoint> endpoint; // agent's UDP endpoint; learned from its first authenticated frame if absent
  uint8_t weight = 1;
};

struct TunnelConfig {
  Uuid id;
  std::string name;
  std::vector<StaticPeerConfig> peers;
};

struct EntryPointConfig {
  uint8_t proto = 0;       // 6 or 17
  uint16_t port = 0;
  std::optional<Ipv4> listen;  // only this local address (default: every port address)
  uint16_t tunnel = 0;     // index into GatewayConfig::tunnels
  Endpoint target;         // address as the agent reaches it
  bool keepalive = false;  // UDP: keep the flow while traffic flows (else one request/response exchange)
  uint64_t udp_ttl_ns = 0; // UDP idle timeout for this entry point
};

struct FlowConfig {
  uint32_t table_size = 65536;  // flows per worker
  uint64_t udp_ttl_ns = 5'000'000'000ull;
  uint64_t tcp_syn_timeout_ns = 30'000'000'000ull;
  uint64_t tcp_established_timeout_ns = 7200'000'000'000ull;
  uint64_t tcp_closing_timeout_ns = 60'000'000'000ull;
  uint64_t tcp_closed_timeout_ns = 5'000'000'000ull;
  bool operator==(const FlowConfig&) const = default;
};

struct IdleConfig {
  bool backoff = false;         // false: busy-poll (production default)
  uint32_t pause_polls = 0;     // empty polls spent in rte_pause() before sleeping
  uint32_t max_sleep_us = 200;  // sleeps double from 1 us up to this
  bool operator==(const IdleConfig&) const = default;
};

struct CryptoConfig {
  // "ipsec-mb" (ipsec-mb's GCM API on the worker), "cryptodev" (DPDK CPU crypto), "cryptodev-async" (crypto ops,
  // e.g. QAT) or "openssl"
  std::string engine = "ipsec-mb";
  std::string device = "crypto_aesni_gcm0";
  std::string device_where;          // "file:line: key 'dpgw.crypto.device'" for errors found once EAL runs
  uint8_t key_len = 16;              // aes-128-gcm (16) or aes-256-gcm (32)
  uint64_t rekey_interval_ns = 120'000'000'000ull;

  // The engines that run on `device` (DPDK cryptodev): it is made, checked and allow-listed for them only.
  bool uses_device() const { return engine == "cryptodev" || engine == "cryptodev-async"; }
};

// The edge role (docs/operations.md "Edge role"): this dpgw is the far end of a tunnel, a static peer of a
// concentrator dpgw, as dpagent --gateway/--session/--psk-file is. Frames from the concentrator are opened and their
// inner packets delivered to targets on `lan_port`, their source translated into `snat_net` (proto/snat_codec.hpp);
// the targets' replies go back to the concentrator. Ports by index into GatewayConfig::ports.
struct EdgeConfig {
  Endpoint concentrator;         // the concentrator's tunnel port (IPv4 address:port)
  uint32_t session = 0;          // the session index in the concentrator's config, 1..32767
  std::vector<uint8_t> psk;      // 32-byte base secret shared with the concentrator (never logged)
  uint8_t key_len = 16;          // aes-128-gcm (16) or aes-256-gcm (32): the concentrator's cipher
  uint8_t underlay_port = 0;     // where the concentrator is reached
  uint8_t lan_port = 0;          // where the targets are
  Ipv4Prefix snat_net;           // the sources targets see (a /16 or larger); the targets route it to lan_port
  uint64_t keepalive_ns = 2'000'000'000ull;
  uint16_t local_port = 51900;   // our UDP port for the tunnel (default: dpgw.tunnel_port)
  bool operator==(const EdgeConfig&) const = default;
};

struct GatewayConfig {
  std::string path;
  EalConfig eal;
  uint16_t workers = 1;
  std::vector<PortConfig> ports;
  uint16_t tunnel_port = 51900;
  // UDP port agents of the QUIC framing send to (docs/protocol.md "QUIC framing"): short-header packets of a QUIC
  // session are opened here; every other datagram to it goes to the kernel path, where dpctld's QUIC port is.
  uint16_t quic_port = 443;
  // UDP port of dpgw's STUN server (RFC 8489 Binding requests, answered by the workers: docs/operations.md "STUN");
  // 0: none. STUN on the tunnel and QUIC ports is answered whatever this says.
  uint16_t stun_port = 3478;
  // dpgw starts a key update of its own on a QUIC session after this many packets in a key generation, once the
  // agent acknowledged one of them (docs/protocol.md "Key updates"; at most 2^22, half AES-GCM's limit).
  uint64_t quic_key_update_packets = uint64_t(1) << 22;
  uint32_t mbufs = 16383;
  IdleConfig idle;
  FlowConfig flow;
  CryptoConfig crypto;
  std::string control_socket = "/run/dptun/dpgw.sock";  // stats (dpgw stats) and dpctld's control link
  std::optional<Endpoint> metrics_listen = Endpoint{Ipv4{0x7f000001}, 9109};  // Prometheus text; nullopt: off
  uint16_t max_tunnels = 1024;
  bool direct_mode = false;  // visitors may reach any address their tunnel's agents reach, without a rule
  uint64_t session_timeout_ns = 6'000'000'000ull;  // a session not heard from for this long takes no new flows
  // IPv4 reassembly, per worker and per side (client fragments; fragments inside agents' frames): datagrams in
  // progress, fragments (mbufs) held, the longest datagram, the timeout. `fragments` 0 in the file: derived from
  // `mbufs` (see conf/dptun.conf).
  ReassemblyLimits reassembly;
  std::vector<TunnelConfig> tunnels;
  std::vector<EntryPointConfig> entry_points;
  std::optional<EdgeConfig> edge;  // the edge role; nullopt: none
};

// Reads and validates the whole file. Throws ConfigError("file:line: key 'x.y': what is wrong").
GatewayConfig load_gateway_config(const std::string& path);
// What a reload (SIGHUP) from `now` to `next` changes that only a restart applies, by the names the log gives them
// ("workers", "eal", "ports", ..., "crypto"): the DPDK setup and what workers copied or read without
// synchronisation. Empty: nothing of the kind (tunnels, peers and entry points are applied live).
std::vector<std::string> restart_only_changes(const GatewayConfig& now, const GatewayConfig& next);
// The control socket of the dpgw that runs with config file `path` (what `dpgw stats` and `dpgw trace` ask with
// --config); nullopt with `error` (the config error, file:line) when the file does not load.
std::optional<std::string> control_socket_of(const std::string& path, std::string& error);
// The options `dpgw stats` and `dpgw trace` name that socket with: --socket PATH, or --config FILE (through
// control_socket_of; a file that does not load ends the command with its error and exit status 2).
void control_socket_options(Cli& cli, std::string& socket);

}  // namespace dptun
