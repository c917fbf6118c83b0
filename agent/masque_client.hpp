// One `dpagent udp` connection to the gateway: an ngtcp2 client connection (QUIC v1, RFC 9000/9001) on its own
// connected UDP socket, TLS 1.3 by GnuTLS with the client certificate and ALPN "h3" (quic_client_tls.hpp: the
// gateway's certificate is checked against --ca as dpctld's is for agents), the transport parameter
// max_datagram_frame_size (RFC 9221 3), and one CONNECT-UDP request over HTTP/3 (h3_connect_udp.hpp). After the 2xx
// answer each UDP payload goes whole in one DATAGRAM frame with the HTTP Datagram header in front (RFC 9297 2.1,
// RFC 9298 5), never fragmented: one that does not fit the connection's room (max_payload()) is refused. Datagrams
// that the congestion controller's pacing or window holds back wait, in order, in kWaitSlots slots, and leave on the
// pacing timer or when ACKs come; with every slot taken a datagram is dropped (UDP semantics; the caller counts it).
// Non-blocking and single-threaded: the owner calls on_readable() when fd() is readable and on_timer() when
// timer_fd() is (ngtcp2's expiry: retransmissions, ACK delay, keep-alive PINGs, the idle timeout); both return
// false once the connection is over (over() then says why).
#pragma once
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <ngtcp2/ngtcp2.h>
#include <openssl/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "agent/connect_udp_connection.hpp"
#include "agent/h3_connect_udp.hpp"
#include "agent/quic_client_tls.hpp"
#include "common/unix_socket.hpp"

namespace dptun {

class MasqueConnection final : public ConnectUdpConnection {
 public:
  struct Setup {
    gnutls_certificate_credentials_t credentials = nullptr;
    X509_STORE* store = nullptr;  // --ca
    std::string server_name;      // the name or IPv4 address the gateway's certificate must carry (also the SNI
                                  // when it is a name)
    std::string authority;        // :authority of the request (--via's host[:port])
    std::string target_host;      // --target
    uint16_t target_port = 0;
    size_t max_udp_payload = 1472;  // the biggest UDP payload to send (--mtu less IPv4 and UDP headers)
  };
  struct Stats {
    uint64_t packets_rx = 0, packets_tx = 0, send_errors = 0;
    uint64_t datagrams_tx = 0, datagrams_rx = 0;  // UDP payloads sent in DATAGRAM frames / delivered
    uint64_t capsules_rx = 0;                     // UDP payloads delivered from DATAGRAM capsules
    uint64_t datagrams_waited = 0;                // UDP payloads that waited for pacing or the congestion window
    uint64_t waiting_dropped = 0;  // of them, lost: too big by the time they could leave, or the connection ended
  };
  static constexpr size_t kWaitSlots = 128;  // UDP payloads waiting for pacing / the congestion window (~190 KB)
  static constexpr uint64_t kIdleTimeoutNs = 30'000'000'000ull;  // the idle timeout proposed (RFC 9000 10.1)
  static constexpr uint64_t kKeepAliveNs = 10'000'000'000ull;    // a PING after this long without traffic
  static constexpr uint64_t kAnswerTimeoutNs = 10'000'000'000ull;  // handshake and answer, from open()

  MasqueConnection() = default;
  ~MasqueConnection() override;
  MasqueConnection(const MasqueConnection&) = delete;
  MasqueConnection& operator=(const MasqueConnection&) = delete;

  // A socket connected to `gateway`, the handshake started. False with `error` when it cannot start.
  bool open(const sockaddr_in& gateway, const Setup& setup, Deliver deliver, uint64_t now_ns, std::string& error);
  bool on_readable(uint64_t now_ns);
  bool on_io(uint32_t, uint64_t now_ns) override { return on_readable(now_ns); }
  bool on_timer(uint64_t now_ns) override;
  // Ends a connection whose handshake or answer is overdue (kAnswerTimeoutNs after open()); false once over.
  bool check_deadline(uint64_t now_ns) override;
  // One UDP payload in one DATAGRAM frame, sent at once; with `more`, its packet waits in a batch that leaves in
  // one UDP_SEGMENT send (GSO, where the kernel has it; else one send each) at send_batch(), when the batch is full,
  // or before any other packet of the connection (so packets leave in the order ngtcp2 numbered them). A caller that
  // passes `more` calls send_batch() once its burst is done.
  Send send(std::span<const uint8_t> udp_payload, uint64_t now_ns, bool more = false) override;
  void send_batch() override;
  // The largest UDP payload send() takes (0 until the request is open).
  size_t max_payload() const override;
  // CONNECTION_CLOSE with H3_NO_ERROR (if still open).
  void close(uint64_t now_ns) override;

  const char* protocol() const override { return "h3"; }
  int fd() const override { return fd_.get(); }
  int timer_fd() const override { return timer_.get(); }
  bool is_open() const override { return h3_.state() == H3ConnectUdpClient::State::Open && end_ == End::None; }
  End over() const override { return end_; }
  const std::string& detail() const override { return detail_; }  // why it ended, one sentence
  const H3ConnectUdpClient& h3() const { return h3_; }
  const ConnectUdpResponse& answer() const override { return h3_.answer(); }
  int64_t request_stream() const override { return h3_.request_stream(); }
  uint64_t drops(ConnectUdpDrop d) const override { return h3_.drops(d); }
  uint64_t capsules_rx() const override { return stats_.capsules_rx; }
  uint64_t datagrams_waited() const override { return stats_.datagrams_waited; }
  uint64_t waiting_dropped() const override { return stats_.waiting_dropped; }
  uint64_t capsules_skipped() const override { return h3_.capsules_skipped(); }
  long verify_result() const override { return tls_.verify_result(); }
  unsigned long ssl_error() const override { return ssl_error_; }
  const ServerCertSeen& seen() const override { return tls_.seen(); }
  const Stats& stats() const { return stats_; }
  bool heard_from_gateway() const override { return stats_.packets_rx > 0; }
  bool refused_by_icmp() const override { return icmp_refused_; }  // an ICMP port unreachable came back

 private:
  struct TxStream {
    int64_t id = -1;
    std::vector<uint8_t> data;  // kept whole until the connection ends: ngtcp2 refers to unacknowledged bytes
    size_t sent = 0;
  };
  static int on_handshake_completed(ngtcp2_conn*, void* user);
  static int on_recv_stream(ngtcp2_conn*, uint32_t flags, int64_t id, uint64_t, const uint8_t* data, size_t len,
                            void* user, void*);
  static int on_stream_reset(ngtcp2_conn*, int64_t id, uint64_t, uint64_t app_error, void* user, void*);
  static int on_datagram(ngtcp2_conn*, uint32_t flags, const uint8_t* data, size_t len, void* user);
  // After stream data: the request once SETTINGS allow it, the end on an HTTP/3 error.
  void h3_progress(uint64_t now_ns);
  bool flush(uint64_t now_ns);
  bool send_packet(const uint8_t* data, size_t len);
  // The room for the next packet: the batch's tail (`more`) or tx_buf_.
  uint8_t* packet_room(bool more);
  void batch_packet(size_t len);
  void send_each(size_t seg, size_t total);  // the batch's packets one send each
  void rearm();
  // One UDP payload into one DATAGRAM frame now: Sent, or Congested when pacing or the window has no room.
  Send write_datagram(std::span<const uint8_t> udp_payload, uint64_t now_ns, bool more);
  // Sends what waits while pacing and the window allow (in a batch; the caller sends the batch or it leaves with the
  // next packet).
  void send_waiting(uint64_t now_ns);
  // Records why ngtcp2 ended the connection (rv); always false.
  bool ended(int rv, uint64_t now_ns);
  void finish(End e, std::string detail);
  void send_close(const ngtcp2_connection_close_error& ccerr, uint64_t now_ns);

  Fd fd_, timer_;
  Setup setup_;
  sockaddr_in local_{}, remote_{};
  QuicClientTls tls_;  // outlives conn_ (the destructor deletes conn_)
  ngtcp2_conn* conn_ = nullptr;
  H3ConnectUdpClient h3_{"", "", 0};
  Deliver deliver_;
  std::vector<TxStream> tx_;  // control, encoder, decoder, then the request
  bool handshake_done_ = false;
  bool closing_ = false;  // a CONNECTION_CLOSE went out (or ngtcp2 is draining)
  End end_ = End::None;
  std::string detail_;
  unsigned long ssl_error_ = 0;
  bool icmp_refused_ = false;
  uint64_t opened_ns_ = 0;
  uint64_t armed_ns_ = 0;
  size_t max_udp_payload_ = 1472;
  Stats stats_;
  std::vector<uint8_t> rx_buf_, tx_buf_, dgram_buf_;
  // Packets waiting to leave in one send (send(..., more)): batch_n_ segments of batch_seg_ bytes each, the last one
  // perhaps shorter (then the batch is closed: UDP_SEGMENT takes equal segments with a shorter tail only).
  static constexpr size_t kBatchMax = 32;
  std::vector<uint8_t> batch_;
  size_t batch_len_ = 0, batch_seg_ = 0, batch_n_ = 0, batch_max_ = 1;
  bool batch_closed_ = false;
  bool gso_ = false;  // the socket takes UDP_SEGMENT (probed at open)
  bool rearm_due_ = false;  // the timer is armed once a batch leaves, not per datagram (a system call each)
  // The waiting payloads: a ring of kWaitSlots slots of max_udp_payload_ bytes (allocated at open), wait_n_ of them
  // from wait_head_.
  std::vector<uint8_t> wait_buf_;
  std::array<uint16_t, kWaitSlots> wait_len_{};
  size_t wait_head_ = 0, wait_n_ = 0;
};

}  // namespace dptun
