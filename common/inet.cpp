#include "common/inet.hpp"

#include <arpa/inet.h>

#include <charconv>

namespace dptun {

std::optional<uint64_t> parse_uint(std::string_view text, uint64_t max) {
  if (text.empty() || text.size() > 20) return std::nullopt;
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || v > max) return std::nullopt;
  return v;
}

std::optional<std::pair<std::string, uint16_t>> parse_host_port(std::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const std::string_view host = text.substr(0, colon);
  auto port = parse_uint(text.substr(colon + 1), 65535);
  if (!port || *port == 0 || host.empty() || host.size() > 253) return std::nullopt;
  if (!Ipv4::parse(host)) {
    size_t label = 0;
    for (size_t i = 0; i <= host.size(); ++i) {
      if (i == host.size() || host[i] == '.') {
        if (label == 0 || label > 63 || host[i - 1] == '-' || host[i - label] == '-') return std::nullopt;
        label = 0;
        continue;
      }
      const char c = host[i];
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')) return std::nullopt;
      ++label;
    }
    if (host.find_last_not_of("0123456789.") == std::string_view::npos) return std::nullopt;  // not a name, nor IPv4
  }
  return std::make_pair(std::string(host), uint16_t(*port));
}

std::optional<Ipv4> Ipv4::parse(std::string_view text) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) {
    size_t dot = i < 3 ? text.find('.') : text.size();
    if (dot == std::string_view::npos) return std::nullopt;
    std::string_view part = text.substr(0, dot);
    if (part.size() > 1 && part[0] == '0') return std::nullopt;  // no octal-looking octets
    auto octet = parse_uint(part, 255);
    if (!octet) return std::nullopt;
    value = value << 8 | uint32_t(*octet);
    text.remove_prefix(i < 3 ? dot + 1 : dot);
  }
  if (!text.empty()) return std::nullopt;
  return Ipv4{value};
}

std::string Ipv4::str() const {
  return std::to_string(value >> 24) + "." + std::to_string(value >> 16 & 0xff) + "." +
         std::to_string(value >> 8 & 0xff) + "." + std::to_string(value & 0xff);
}

std::optional<Ipv4Prefix> Ipv4Prefix::parse(std::string_view text) {
  size_t slash = text.find('/');
  auto ip = Ipv4::parse(text.substr(0, slash));
  if (!ip) return std::nullopt;
  if (slash == std::string_view::npos) return Ipv4Prefix{*ip, 32};
  auto len = parse_uint(text.substr(slash + 1), 32);
  if (!len) return std::nullopt;
  return Ipv4Prefix{*ip, uint8_t(*len)};
}

std::string Ipv4Prefix::str() const { return addr.str() + "/" + std::to_string(len); }

std::optional<Endpoint> Endpoint::parse(std::string_view text) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto ip = Ipv4::parse(text.substr(0, colon));
  auto port = parse_uint(text.substr(colon + 1), 65535);
  if (!ip || !port || *port == 0) return std::nullopt;
  return Endpoint{*ip, uint16_t(*port)};
}

std::string Endpoint::str() const {
  return (ip.is_v4() ? ip.str() : "[" + ip.str() + "]") + ":" + std::to_string(port);
}

std::optional<IpAddr> IpAddr::parse(std::string_view text) {
  if (auto v4 = Ipv4::parse(text)) return IpAddr(*v4);
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN || text.find('%') != std::string_view::npos)
    return std::nullopt;  // (no zone ids: an address here names a host, not a link)
  const std::string s(text);
  std::array<uint8_t, 16> b{};
  if (inet_pton(AF_INET6, s.c_str(), b.data()) != 1) return std::nullopt;
  return IpAddr::v6(b);
}

std::string IpAddr::str() const {
  if (is_v4()) return Ipv4{v4()}.str();
  char buf[INET6_ADDRSTRLEN];
  return inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf) ? std::string(buf) : std::string("?");
}

}  // namespace dptun
