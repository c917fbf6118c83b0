// What dpctld's CONNECT-UDP decisions need of a client, whichever front end it came through (docs/masque.md): HTTP/3
// on the QUIC port (control/quic_listener.hpp) or HTTP/2 and HTTP/1.1 on the TCP port (control/masque_tcp.hpp).
// A view: the pointers are the connection's and valid while it lives (for the duration of a call).
#pragma once
#include <openssl/x509.h>

#include <cstdint>
#include <string>

#include "common/inet.hpp"

namespace dptun {

class QuicAgentConnection;

struct MasqueClientView {
  uint64_t id = 0;                     // the connection's id (a session's `channel`)
  Endpoint peer;                       // the client's address
  X509* certificate = nullptr;         // its verified certificate
  STACK_OF(X509)* chain = nullptr;     // the chain it sent
  std::string subject;                 // the certificate's subject ("?" when unknown), for log lines
  const char* protocol = "h3";         // "h3", "h2", "http/1.1"
  QuicAgentConnection* quic = nullptr;  // the HTTP/3 connection (nullptr on the TCP port)
};

}  // namespace dptun
