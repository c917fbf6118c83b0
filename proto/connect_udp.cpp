#include "proto/connect_udp.hpp"

#include <cstdio>

namespace dptun {

namespace {

constexpr std::string_view kMethod = ":method", kProtocol = ":protocol", kScheme = ":scheme",
                           kAuthority = ":authority", kPath = ":path", kStatus = ":status";
constexpr std::string_view kCapsuleProtocol = "capsule-protocol", kProxyStatus = "proxy-status";

bool lower(char c) { return c >= 'a' && c <= 'z'; }
bool upper(char c) { return c >= 'A' && c <= 'Z'; }
bool digit(char c) { return c >= '0' && c <= '9'; }
// RFC 9110 5.6.2
bool tchar(char c) {
  return lower(c) || upper(c) || digit(c) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// A value for a detail sentence: at most 40 bytes (the answer escapes what is not printable).
// A client's bytes for a log line and Proxy-Status details: at most 40, each byte outside printable ASCII as \xHH
// (a name or value may carry CR, LF or escape sequences).
std::string quoted(std::string_view v) {
  std::string out = "'";
  for (unsigned char c : v.substr(0, 40)) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += char(c);
    } else {
      char b[5];
      snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    }
  }
  return out + (v.size() > 40 ? "...'" : "'");
}

// RFC 9110 5.5: no NUL, CR or LF, and no whitespace at either end (RFC 9114 4.1.2: invalid characters).
bool valid_value(std::string_view v) {
  for (char c : v)
    if (c == '\0' || c == '\r' || c == '\n') return false;
  auto space = [](char c) { return c == ' ' || c == '\t'; };
  return v.empty() || (!space(v.front()) && !space(v.back()));
}

// Fields that only mean something on one HTTP/1.1 connection (RFC 9114 4.2); te is allowed as "trailers" only.
bool connection_specific(std::string_view name, std::string_view value) {
  return name == "connection" || name == "keep-alive" || name == "proxy-connection" || name == "transfer-encoding" ||
         name == "upgrade" || (name == "te" && value != "trailers");
}

// Structured Field Values (RFC 8941) just far enough to read an Item that is a Boolean with any parameters.
class SfReader {
 public:
  explicit SfReader(std::string_view s) : s_(s) {}
  // RFC 8941 4.2: leading and trailing SP discarded, then exactly one Item.
  std::optional<bool> boolean_item() {
    skip_sp();
    if (!take('?')) return std::nullopt;
    std::optional<bool> v;
    if (take('0')) v = false;
    else if (take('1')) v = true;
    else return std::nullopt;
    if (!parameters()) return std::nullopt;
    skip_sp();
    if (i_ != s_.size()) return std::nullopt;
    return v;
  }

 private:
  bool at(char c) const { return i_ < s_.size() && s_[i_] == c; }
  bool take(char c) {
    if (!at(c)) return false;
    ++i_;
    return true;
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_sp() {
    while (at(' ')) ++i_;
  }
  // *( ";" *SP key [ "=" bare-item ] )  (RFC 8941 3.1.2)
  bool parameters() {
    while (take(';')) {
      skip_sp();
      if (!(lower(peek()) || at('*'))) return false;
      while (lower(peek()) || digit(peek()) || at('_') || at('-') || at('.') || at('*')) ++i_;
      if (take('=') && !bare_item()) return false;
    }
    return true;
  }
  // RFC 8941 4.2.3.1: Integer, Decimal, String, Token, Byte Sequence or Boolean.
  bool bare_item() {
    const char c = peek();
    if (c == '-' || digit(c)) return number();
    if (c == '"') return string();
    if (c == '*' || lower(c) || upper(c)) {
      while (tchar(peek()) || at(':') || at('/')) ++i_;
      return true;
    }
    if (take(':')) {
      while (lower(peek()) || upper(peek()) || digit(peek()) || at('+') || at('/') || at('=')) ++i_;
      return take(':');
    }
    if (take('?')) return take('0') || take('1');
    return false;
  }
  bool number() {
    take('-');
    size_t whole = 0, frac = 0;
    while (digit(peek())) ++i_, ++whole;
    if (whole == 0) return false;
    if (!take('.')) return whole <= 15;
    while (digit(peek())) ++i_, ++frac;
    return whole <= 12 && frac >= 1 && frac <= 3;
  }
  bool string() {
    ++i_;  // the opening quote
    while (i_ < s_.size()) {
      const unsigned char c = static_cast<unsigned char>(s_[i_++]);
      if (c == '"') return true;
      if (c == '\\') {
        if (!(at('"') || at('\\'))) return false;
        ++i_;
      } else if (c < 0x20 || c > 0x7e) {
        return false;
      }
    }
    return false;
  }

  std::string_view s_;
  size_t i_ = 0;
};

// capsule-protocol (RFC 9297 3.4): true when the field is there once and is the Boolean true. Anything else
// (absent, ?0, not a Boolean, given more than once, which would make it a List) is handled as absent: false.
bool capsule_protocol_of(std::span<const HttpField> fields) {
  const HttpField* found = nullptr;
  for (const HttpField& f : fields) {
    if (f.name != kCapsuleProtocol) continue;
    if (found) return false;
    found = &f;
  }
  if (!found) return false;
  return SfReader(found->value).boolean_item().value_or(false);
}

}  // namespace

const char* connect_udp_request_error_name(ConnectUdpRequestError e) {
  switch (e) {
    case ConnectUdpRequestError::Malformed: return "malformed";
    case ConnectUdpRequestError::NotConnect: return "not_connect";
    case ConnectUdpRequestError::NotConnectUdp: return "not_connect_udp";
    case ConnectUdpRequestError::BadScheme: return "bad_scheme";
    case ConnectUdpRequestError::BadPath: return "bad_path";
    case ConnectUdpRequestError::Count: break;
  }
  return "?";
}

uint16_t connect_udp_status(ConnectUdpRequestError e) {
  switch (e) {
    case ConnectUdpRequestError::Malformed: return 400;
    case ConnectUdpRequestError::NotConnect: return 405;
    case ConnectUdpRequestError::NotConnectUdp: return 501;
    case ConnectUdpRequestError::BadScheme: return 400;
    case ConnectUdpRequestError::BadPath: return 400;
    case ConnectUdpRequestError::Count: break;
  }
  return 500;
}

std::optional<ConnectUdpRequest> parse_connect_udp_request(std::span<const HttpField> fields,
                                                           ConnectUdpRequestProblem* why) {
  auto fail = [&](ConnectUdpRequestError e, std::string detail,
                  ConnectUdpPathError path_error = ConnectUdpPathError::NotMasque) -> std::optional<ConnectUdpRequest> {
    if (why) *why = {e, path_error, std::move(detail)};
    return std::nullopt;
  };
  auto malformed = [&](std::string detail) { return fail(ConnectUdpRequestError::Malformed, std::move(detail)); };

  // RFC 9114 4.3.1: the request's pseudo-header fields, each at most once, all before the regular fields.
  const std::string_view pseudo_names[] = {kMethod, kProtocol, kScheme, kAuthority, kPath};
  const std::string* pseudo[std::size(pseudo_names)] = {};
  bool regular_seen = false;
  for (const HttpField& f : fields) {
    const std::string_view name = f.name;
    if (name.empty()) return malformed("a field with an empty name");
    for (char c : name)
      if (upper(c)) return malformed("field name " + quoted(name) + " has upper case");
    if (!valid_value(f.value)) return malformed("field " + quoted(name) + " has an invalid value");
    if (name[0] == ':') {
      if (regular_seen) return malformed("pseudo-header field " + quoted(name) + " after a regular field");
      size_t k = 0;
      while (k < std::size(pseudo_names) && pseudo_names[k] != name) ++k;
      if (k == std::size(pseudo_names)) return malformed("unknown pseudo-header field " + quoted(name));
      if (pseudo[k]) return malformed("pseudo-header field " + std::string(name) + " repeated");
      pseudo[k] = &f.value;
      continue;
    }
    for (char c : name)
      if (!tchar(c)) return malformed("field name " + quoted(name) + " is not a token");
    if (connection_specific(name, f.value)) return malformed("connection-specific field " + quoted(name));
    regular_seen = true;
  }
  const std::string *method = pseudo[0], *protocol = pseudo[1], *scheme = pseudo[2], *authority = pseudo[3],
                    *path = pseudo[4];

  if (!method) return malformed(":method missing");
  if (*method != "CONNECT") return fail(ConnectUdpRequestError::NotConnect, ":method " + quoted(*method) + " is not CONNECT");
  if (!protocol) return fail(ConnectUdpRequestError::NotConnectUdp, "CONNECT without :protocol (a TCP tunnel)");
  if (*protocol != "connect-udp")
    return fail(ConnectUdpRequestError::NotConnectUdp, ":protocol " + quoted(*protocol) + " is not connect-udp");
  // Extended CONNECT (RFC 9220 3, RFC 8441 4) carries :scheme and :path, and :authority like any CONNECT.
  if (!scheme) return malformed(":scheme missing");
  if (!path) return malformed(":path missing");
  if (!authority) return malformed(":authority missing");
  if (authority->empty()) return malformed(":authority empty");
  if (authority->find('@') != std::string::npos) return malformed(":authority has userinfo");  // RFC 9114 4.3.1
  if (*scheme != "https") return fail(ConnectUdpRequestError::BadScheme, ":scheme " + quoted(*scheme) + " is not https");
  ConnectUdpPathError path_error = ConnectUdpPathError::NotMasque;
  auto target = parse_connect_udp_path(*path, &path_error);
  if (!target)
    return fail(ConnectUdpRequestError::BadPath,
                std::string(":path is not a CONNECT-UDP target: ") + connect_udp_path_error_name(path_error), path_error);

  ConnectUdpRequest r;
  r.authority = *authority;
  r.path = *path;
  r.target = std::move(*target);
  r.capsule_protocol = capsule_protocol_of(fields);
  return r;
}

std::vector<HttpField> connect_udp_request_fields(std::string_view authority, std::string_view host, uint16_t port) {
  return {
      {std::string(kMethod), "CONNECT"},
      {std::string(kProtocol), "connect-udp"},
      {std::string(kScheme), "https"},
      {std::string(kAuthority), std::string(authority)},
      {std::string(kPath), connect_udp_path(host, port)},
      {std::string(kCapsuleProtocol), "?1"},
  };
}

std::vector<HttpField> connect_udp_response_fields(uint16_t status, std::string_view proxy_error,
                                                   std::string_view details) {
  if (status < 100 || status > 599) status = 500;  // outside the contract: an answer that is still an answer
  char digits[4];
  std::snprintf(digits, sizeof digits, "%03u", unsigned(status));
  std::vector<HttpField> out = {{std::string(kStatus), digits}};
  if (status >= 200 && status <= 299) {
    out.push_back({std::string(kCapsuleProtocol), "?1"});
  } else if (!proxy_error.empty()) {
    // RFC 9209 2: the intermediary's name as a Token, the error type as a Token parameter, details as an sf-string.
    std::string v = std::string(kProxyStatusName) + "; error=" + std::string(proxy_error);
    if (!details.empty()) {
      std::string text;
      for (char c : details) {
        const std::string piece = c == '"' || c == '\\' ? std::string{'\\', c}
                                  : static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e
                                      ? std::string("?")
                                                         : std::string(1, c);
        if (text.size() + piece.size() > 200) break;
        text += piece;
      }
      v += "; details=\"" + text + "\"";
    }
    out.push_back({std::string(kProxyStatus), std::move(v)});
  }
  return out;
}

std::optional<ConnectUdpResponse> parse_connect_udp_response(std::span<const HttpField> fields) {
  ConnectUdpResponse r;
  bool status_seen = false;
  for (const HttpField& f : fields) {
    if (f.name == kStatus) {
      if (status_seen || f.value.size() != 3 || !digit(f.value[0]) || !digit(f.value[1]) || !digit(f.value[2]))
        return std::nullopt;
      status_seen = true;
      r.status = uint16_t((f.value[0] - '0') * 100 + (f.value[1] - '0') * 10 + (f.value[2] - '0'));
    } else if (f.name == kProxyStatus) {
      // A List field given on several lines reads as one, joined by ", " (RFC 9110 5.3).
      if (!r.proxy_status.empty()) r.proxy_status += ", ";
      r.proxy_status += f.value;
    }
  }
  if (!status_seen) return std::nullopt;
  r.capsule_protocol = capsule_protocol_of(fields);
  return r;
}

std::string connect_udp_refusal_text(const ConnectUdpResponse& r) {
  std::string s = std::to_string(r.status);
  if (!r.proxy_status.empty()) s += " (" + r.proxy_status + ")";
  return s;
}

const char* connect_udp_drop_name(ConnectUdpDrop d) {
  switch (d) {
    case ConnectUdpDrop::Malformed: return "malformed";
    case ConnectUdpDrop::UnknownStream: return "unknown_stream";
    case ConnectUdpDrop::Context: return "context";
    case ConnectUdpDrop::NotOpen: return "not_open";
    case ConnectUdpDrop::Count: break;
  }
  return "?";
}

}  // namespace dptun
