// One `dpagent udp` connection to the gateway carrying one CONNECT-UDP request, whichever HTTP version carries it:
// HTTP/3 over QUIC (masque_client.hpp: each UDP payload in a QUIC DATAGRAM frame) or HTTP/2 over TLS on TCP
// (h2_masque_client.hpp: each UDP payload in a DATAGRAM capsule on the request stream). What udp_proxy.hpp drives:
// non-blocking and single-threaded; the owner waits for events() on fd() and calls on_io(), for timer_fd() (when not
// -1) and calls on_timer(), and calls check_deadline() about every 100 ms; each returns false once the connection is
// over (over() then says why; detail() in one sentence).
#pragma once
#include <sys/epoll.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "agent/tls_failure.hpp"
#include "proto/connect_udp.hpp"

namespace dptun {

class ConnectUdpConnection {
 public:
  // How the connection ended.
  enum class End : uint8_t {
    None,          // still running
    Refused,       // the gateway answered the request with a status other than 2xx
    NoConnectUdp,  // the gateway does not offer CONNECT-UDP over this HTTP version (SETTINGS, ALPN)
    Tls,           // the handshake failed (verify_result(), ssl_error() classify it)
    Closed,        // the gateway closed the connection, or the request stream ended; or TCP could not connect
    Protocol,      // an HTTP error of the gateway's; this end closed the connection
    Timeout,       // the handshake or the answer took too long, or the idle timeout
    Local,         // closed by this end (close())
  };
  static const char* end_name(End e);
  // What became of one UDP payload handed to send(). Congested: no room now (QUIC: every waiting slot taken; HTTP/2:
  // the bounded send buffer full): dropped, the caller counts it.
  enum class Send : uint8_t { Sent, TooBig, Congested, NotOpen, Closed };
  using Deliver = std::function<void(std::span<const uint8_t> udp_payload)>;

  virtual ~ConnectUdpConnection() = default;

  virtual const char* protocol() const = 0;  // "h3" or "h2"
  virtual int fd() const = 0;
  virtual uint32_t events() const { return EPOLLIN; }  // what fd() waits for now (EPOLLIN, EPOLLOUT)
  virtual int timer_fd() const = 0;                     // -1 when none
  virtual bool on_io(uint32_t events, uint64_t now_ns) = 0;
  virtual bool on_timer(uint64_t now_ns) = 0;
  // Ends a connection whose handshake or answer is overdue; false once over.
  virtual bool check_deadline(uint64_t now_ns) = 0;
  // One UDP payload, whole, never fragmented: sent (or queued for the socket) at once, or with `more` held in a
  // batch that leaves at send_batch() (a caller that passes `more` calls send_batch() once its burst is done).
  virtual Send send(std::span<const uint8_t> udp_payload, uint64_t now_ns, bool more = false) = 0;
  virtual void send_batch() = 0;
  // UDP payloads send() accepted that waited for pacing or the congestion window before they left (HTTP/3).
  virtual uint64_t datagrams_waited() const { return 0; }
  // Of those, lost before they left: too big for the connection by then, or the connection ended.
  virtual uint64_t waiting_dropped() const { return 0; }
  // The largest UDP payload send() takes (0 until the request is open).
  virtual size_t max_payload() const = 0;
  // Ends the connection politely (if still open).
  virtual void close(uint64_t now_ns) = 0;

  virtual bool is_open() const = 0;  // 2xx received, not over
  virtual End over() const = 0;
  virtual const std::string& detail() const = 0;
  virtual const ConnectUdpResponse& answer() const = 0;
  virtual std::string refusal_text() const { return connect_udp_refusal_text(answer()); }
  virtual int64_t request_stream() const = 0;
  virtual uint64_t drops(ConnectUdpDrop d) const = 0;  // received UDP payloads dropped, by reason
  virtual uint64_t capsules_rx() const = 0;             // UDP payloads delivered from DATAGRAM capsules
  virtual uint64_t capsules_skipped() const = 0;        // capsules of other types (or oversized), skipped
  virtual long verify_result() const = 0;               // X509_V_OK unless the gateway's certificate failed
  virtual unsigned long ssl_error() const = 0;          // the first OpenSSL error (an alert), 0 when none
  virtual const ServerCertSeen& seen() const = 0;
  // Anything came back from the gateway's address (a QUIC packet, a TCP connection accepted).
  virtual bool heard_from_gateway() const = 0;
  // An ICMP port unreachable came back (nothing listens there).
  virtual bool refused_by_icmp() const { return false; }
};

}  // namespace dptun
