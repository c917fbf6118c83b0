// dpagent's QUIC connection to dpctld (--transport quic; issue 11): one ngtcp2 client connection (QUIC v1,
// RFC 9000/9001) on a connected UDP socket, TLS 1.3 by GnuTLS with the agent's certificate, ALPN "dptun", the tunnel
// in the SNI, and one bidirectional stream carrying the same newline-delimited JSON as the TLS connection. dpctld's
// certificate is verified by OpenSSL with the TCP connection's store and name check (from GnuTLS's verify
// function), so a failure gets the same classification and advice (tls_failure.hpp).
// After a registration whose reply says "framing":"quic", dpctld hands the connection over to dpgw and the same
// connection carries the tunnel's data: one inner plaintext (proto/frame_codec.hpp) per DATAGRAM frame (RFC 9221),
// one DATAGRAM per packet (dpgw's fast path takes packets with exactly one), through send_datagram() one way and the
// DatagramSink the other.
// Non-blocking and single-threaded: one thread (dpagent's main loop) owns the connection and calls on_readable()
// when the socket is readable, on_timer() when timer_fd() is (ngtcp2's own expiry: retransmissions, ACK delay,
// keep-alive PINGs, the idle timeout), flush() after queueing stream data and flush_packets() after a burst of
// datagrams.
#pragma once
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <openssl/types.h>

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "agent/quic_client_tls.hpp"
#include "agent/tls_failure.hpp"
#include "common/line_buffer.hpp"
#include "common/unix_socket.hpp"

namespace dptun {

// Where the DATAGRAM frames a connection receives go (on the connection's thread, during on_readable()).
class DatagramSink {
 public:
  virtual ~DatagramSink() = default;
  // One DATAGRAM frame's data; the bytes are ngtcp2's and valid during the call only.
  virtual void datagram(std::span<const uint8_t> data, uint64_t now_ns) = 0;
  // The end of a receive burst: what was kept of the datagrams goes out now.
  virtual void datagrams_done() = 0;
};

class QuicControlConnection {
 public:
  struct Setup {
    gnutls_certificate_credentials_t credentials = nullptr;
    X509_STORE* store = nullptr;  // --ca, as the TCP connection loaded it
    std::string server_name;      // the name or IPv4 address dpctld's certificate must carry
    std::string sni;              // the tunnel (dpctld names it even when the handshake fails)
    size_t max_line = 1 << 20;
    size_t max_udp_payload = 1452;  // the biggest UDP payload to send: --mtu less the outer IPv4 and UDP headers
  };
  // The idle timeout this end proposes (the connection's is the lower of both ends', RFC 9000 section 10.1): a
  // connection that hears nothing this long is over, and dpagent registers again.
  static constexpr uint64_t kIdleTimeoutNs = 15'000'000'000ull;
  // PINGs after this long without sending or receiving (until use_for_data() sets the agent's keepalive).
  static constexpr uint64_t kControlKeepAliveNs = 5'000'000'000ull;
  static constexpr unsigned kBatch = 32;  // packets per recvmmsg / sendmmsg
  // Datagrams the congestion window has no room for wait, in order, in this many slots until ACKs open it (a TCP
  // flow's burst from one super-packet is about 45 datagrams); when they are full, what comes is dropped.
  static constexpr unsigned kWaitSlots = 256;
  enum class SendResult : uint8_t {
    Sent,       // in a packet queued for the next flush_packets()
    Waiting,    // the congestion window is full: it waits for room (sent from on_readable() / on_timer())
    Congested,  // the window is full and so are the waiting slots: dropped
    TooBig,     // bigger than max_datagram(): dropped
    Closed,     // the connection is over: dropped
  };
  struct Stats {  // written by the owning thread
    uint64_t packets_rx = 0, packets_tx = 0, sends = 0, send_drops = 0;
    uint64_t datagrams_waited = 0;   // datagrams that waited for the congestion window
    uint64_t waiting_dropped = 0;    // of them, lost when the connection ended
    uint64_t socket_rx_drops = 0;  // SO_RXQ_OVFL: packets the kernel dropped for a full receive buffer
    uint64_t stateless_resets = 0;  // Stateless Resets received that ended the connection (RFC 9000 10.3)
  };
  QuicControlConnection() = default;
  ~QuicControlConnection();
  QuicControlConnection(const QuicControlConnection&) = delete;
  QuicControlConnection& operator=(const QuicControlConnection&) = delete;

  // Starts the handshake on `fd` (a UDP socket connected to dpctld): false with `error` when it cannot start.
  bool open(int fd, const Setup& setup, uint64_t now_ns, std::string& error);
  // Reads what the socket holds; false once the connection is over (failed(), or closed by dpctld).
  bool on_readable(uint64_t now_ns);
  // Retransmissions and the idle timeout; false once the connection is over.
  bool on_timer(uint64_t now_ns);
  // Writes what ngtcp2 has to send (the queued lines once the handshake is done); false on a fatal error.
  bool flush(uint64_t now_ns);
  void send_line(const std::string& line);  // '\n' appended; sent once the handshake is done
  bool handshake_done() const { return handshake_done_; }
  // Complete lines from dpctld, in order (at most Setup::max_line bytes each; line_too_long() after a longer one).
  std::vector<std::string> take_lines();
  bool line_too_long() const { return in_.too_long(); }
  // The session's base secret: the TLS exporter with kExporterLabel and the index (control/control_protocol.hpp).
  std::vector<uint8_t> export_secret(uint32_t session_index) const;
  // Sends CONNECTION_CLOSE (NO_ERROR) if the connection is still open.
  void close(uint64_t now_ns);
  bool closed() const { return closed_; }
  // The server ended the connection with a Stateless Reset carrying the token of one of its connection IDs (RFC
  // 9000 10.3; dpctld sends one for a connection dpgw no longer knows, after dpgw restarted).
  bool stateless_reset() const { return stateless_reset_; }
  // A timerfd (CLOCK_MONOTONIC) armed for ngtcp2's next expiry; readable when on_timer() has work.
  int timer_fd() const { return timer_.get(); }

  // The data path (after a "framing":"quic" registration). DATAGRAM frames received go to `sink` (nullptr: dropped,
  // counted); ngtcp2 sends a PING whenever nothing was sent or received for `keepalive_ns`, which keeps dpgw
  // knowing the agent's address and the connection from idling out.
  void use_for_data(DatagramSink* sink, uint64_t keepalive_ns);
  // One DATAGRAM frame carrying `data` (an inner plaintext), in a packet of its own queued for flush_packets();
  // never waits. An ACK-only packet ngtcp2 has to send first is queued too.
  SendResult send_datagram(std::span<const uint8_t> data, uint64_t now_ns);
  // Sends the queued packets (sendmmsg); false once the connection is over.
  bool flush_packets(uint64_t now_ns);
  // The most DATAGRAM data one packet carries (Setup::max_udp_payload less the packet around it).
  size_t max_datagram() const { return max_datagram_; }
  unsigned waiting() const { return wait_count_; }
  // When the last packet from the peer arrived (monotonic ns; 0: none since use_for_data()).
  uint64_t last_rx_ns() const { return last_rx_ns_; }
  const Stats& stats() const { return stats_; }
  uint64_t datagrams_unclaimed() const { return datagrams_unclaimed_; }
  // ngtcp2's view of the path: congestion window, bytes in flight, smoothed RTT (ns).
  void path_stats(uint64_t& cwnd, uint64_t& in_flight, uint64_t& srtt_ns) const;

  // Why it failed, as the TCP connection would say it: the X509_V_ERR_* of dpctld's certificate (X509_V_OK when it
  // verified), the OpenSSL error code of an alert dpctld sent (SSL_AD_REASON_OFFSET + alert, 0 when none), text.
  long verify_result() const { return tls_.verify_result(); }
  unsigned long ssl_error() const { return ssl_error_; }
  const std::string& detail() const { return detail_; }
  const ServerCertSeen& seen() const { return tls_.seen(); }

 private:
  // Writes a CONNECTION_CLOSE with `ccerr` and sends it, once.
  void send_close(const ngtcp2_connection_close_error& ccerr, uint64_t now_ns);
  static int on_handshake_completed(ngtcp2_conn*, void* user);
  static int on_recv_stream(ngtcp2_conn*, uint32_t, int64_t id, uint64_t, const uint8_t* data, size_t len, void* user,
                            void*);
  static int on_acked(ngtcp2_conn*, int64_t id, uint64_t offset, uint64_t len, void* user, void*);
  static int on_datagram(ngtcp2_conn*, uint32_t flags, const uint8_t* data, size_t len, void* user);
  static int on_stateless_reset(ngtcp2_conn*, const ngtcp2_pkt_stateless_reset* sr, void* user);
  // The next free packet buffer of the send batch (sent when full).
  uint8_t* tx_buffer();
  void queue_packet(size_t len);
  bool send_queued();
  // One DATAGRAM frame into a packet of the send batch.
  enum class Write : uint8_t { Written, NoRoom, TooBig, Closed };
  Write write_datagram(std::span<const uint8_t> data, uint64_t now_ns);
  // Sends what waits while the congestion window has room.
  void send_waiting(uint64_t now_ns);
  // Arms timer_ for ngtcp2's next expiry when it moved.
  void rearm();
  bool ended(int rv, uint64_t now_ns);  // records why ngtcp2 ended the connection; always false

  struct TxChunk {
    std::string data;
    uint64_t offset = 0;
  };
  int fd_ = -1;
  Setup setup_;
  sockaddr_in local_{}, remote_{};
  QuicClientTls tls_;  // outlives conn_ (the destructor deletes conn_)
  ngtcp2_conn* conn_ = nullptr;
  bool handshake_done_ = false;
  bool closed_ = false;
  bool stateless_reset_ = false;
  bool refused_ = false;  // an ICMP port unreachable came back (the socket is connected): nothing on the port
  int64_t stream_ = -1;
  std::deque<TxChunk> tx_;  // kept until acknowledged: ngtcp2 refers to the bytes
  uint64_t tx_end_ = 0, tx_sent_ = 0;
  LineBuffer in_{1 << 20};
  unsigned long ssl_error_ = 0;
  std::string detail_;
  Fd timer_;
  uint64_t armed_ns_ = 0;  // what timer_ is set to (0: disarmed)
  size_t max_udp_payload_ = 1452;
  size_t max_datagram_ = 0;
  DatagramSink* sink_ = nullptr;
  uint64_t last_rx_ns_ = 0;
  uint64_t rx_now_ns_ = 0;  // the time of the packets on_readable() is reading, for the sink
  uint64_t datagrams_unclaimed_ = 0;
  Stats stats_;
  // Receive and send batches: kBatch buffers of kMaxPacket bytes each.
  static constexpr size_t kMaxPacket = 9216;  // a 9000-byte underlay MTU's UDP payload fits
  std::vector<uint8_t> rx_bufs_, tx_bufs_;
  std::array<mmsghdr, kBatch> rx_msgs_{}, tx_msgs_{};
  std::array<iovec, kBatch> rx_iov_{}, tx_iov_{};
  std::array<std::array<uint64_t, 4>, kBatch> rx_cmsg_{};  // room for SO_RXQ_OVFL
  uint32_t last_rx_drops_ = 0;
  unsigned tx_count_ = 0;
  // The waiting datagrams: a ring of kWaitSlots slots of max_datagram_ bytes each.
  std::vector<uint8_t> wait_bufs_;
  std::array<uint32_t, kWaitSlots> wait_len_{};
  unsigned wait_head_ = 0, wait_count_ = 0;
};

}  // namespace dptun
