// TCP listening sockets for the control plane's servers (agent registrations, metrics).
#pragma once
#include <string>

#include "common/inet.hpp"
#include "common/unix_socket.hpp"

namespace dptun {

// A non-blocking, close-on-exec TCP socket listening on `at` (SO_REUSEADDR), or an empty Fd with `error` set.
Fd tcp_listen(Endpoint at, int backlog, std::string& error);

}  // namespace dptun
