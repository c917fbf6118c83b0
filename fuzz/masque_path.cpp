// The CONNECT-UDP target path (proto/masque_path.hpp, RFC 9298 2): the input is a request's :path.
// Properties: an accepted path has a port 1..65535 and a non-empty host of the kind it says (a DNS name in lower
// case, dotted-quad IPv4, or IPv6 with colons); connect_udp_path writes it back into a path that reads as the same
// target; a refused path has a reason.
#include <arpa/inet.h>

#include <cctype>

#include "fuzz/fuzz.hpp"
#include "proto/masque_path.hpp"

using namespace dptun;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view path(reinterpret_cast<const char*>(data), size);
  ConnectUdpPathError why = ConnectUdpPathError::Count;
  auto t = parse_connect_udp_path(path, &why);
  if (!t) {
    FUZZ_CHECK(why != ConnectUdpPathError::Count);
    return 0;
  }
  FUZZ_CHECK(t->port >= 1);
  FUZZ_CHECK(!t->host.empty() && t->host.size() <= kMaxConnectUdpPath);
  unsigned char buf[16];
  switch (t->kind) {
    case ConnectUdpHostKind::Name:
      FUZZ_CHECK(t->host.size() <= 253);
      for (char c : t->host) FUZZ_CHECK(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.');
      break;
    case ConnectUdpHostKind::Ipv4: FUZZ_CHECK(inet_pton(AF_INET, t->host.c_str(), buf) == 1); break;
    case ConnectUdpHostKind::Ipv6: FUZZ_CHECK(inet_pton(AF_INET6, t->host.c_str(), buf) == 1); break;
  }
  auto back = parse_connect_udp_path(connect_udp_path(t->host, t->port));
  FUZZ_CHECK(back && back->host == t->host && back->port == t->port && back->kind == t->kind);
  return 0;
}
