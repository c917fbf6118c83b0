#include "agent/quic_control.hpp"

#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/clock.hpp"
#include "common/ngtcp2_callbacks.hpp"
#include "common/udp_socket.hpp"
#include "control/control_protocol.hpp"
#include "proto/quic_datagram_mtu.hpp"

namespace dptun {

QuicControlConnection::~QuicControlConnection() {
  if (conn_) ngtcp2_conn_del(conn_);
}

bool QuicControlConnection::open(int fd, const Setup& setup, uint64_t now_ns, std::string& error) {
  fd_ = fd;
  setup_ = setup;
  in_ = LineBuffer(setup.max_line);
  max_udp_payload_ = std::clamp<size_t>(setup.max_udp_payload, NGTCP2_MAX_UDP_PAYLOAD_SIZE, kMaxPacket);
  max_datagram_ = quic_max_datagram_data(max_udp_payload_);
  rx_bufs_.assign(size_t(kBatch) * kMaxPacket, 0);
  wait_bufs_.assign(size_t(kWaitSlots) * max_datagram_, 0);
  tx_bufs_.assign(size_t(kBatch) * max_udp_payload_, 0);
  for (unsigned i = 0; i < kBatch; ++i) {
    rx_iov_[i] = {rx_bufs_.data() + size_t(i) * kMaxPacket, kMaxPacket};
    rx_msgs_[i].msg_hdr.msg_iov = &rx_iov_[i];
    rx_msgs_[i].msg_hdr.msg_iovlen = 1;
    tx_msgs_[i].msg_hdr.msg_iov = &tx_iov_[i];
    tx_msgs_[i].msg_hdr.msg_iovlen = 1;
  }
  timer_ = Fd(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!timer_) {
    error = std::string("timerfd: ") + strerror(errno);
    return false;
  }
  // The data's bursts need the buffers relay frames' socket has (agent/udp_link.cpp): 4 MiB each way, and the count
  // of what the kernel still drops.
  set_udp_buffers(fd, 4 << 20);
  socklen_t len = sizeof local_;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local_), &len) != 0 ||
      getpeername(fd, reinterpret_cast<sockaddr*>(&remote_), &(len = sizeof remote_)) != 0) {
    error = std::string("QUIC socket: ") + strerror(errno);
    return false;
  }
  // The tunnel goes in the SNI: dpctld names it even when the handshake fails.
  if (!tls_.init(&conn_, setup.credentials, setup.store, setup.server_name, setup.sni, "dptun", error)) return false;
  int rv;
  ngtcp2_callbacks cb = ngtcp2_crypto_callbacks(QuicRole::Client);
  cb.handshake_completed = on_handshake_completed;
  cb.recv_stream_data = on_recv_stream;
  cb.acked_stream_data_offset = on_acked;
  cb.recv_datagram = on_datagram;
  cb.recv_stateless_reset = on_stateless_reset;
  ngtcp2_cid dcid, scid;
  quic_client_cids(dcid, scid);
  // Packets up to --mtu from the start: no shaping to 1200 bytes until path MTU discovery proves more (its probes
  // would go to dpgw once it has the connection), so the TUN's MTU (docs/protocol.md "MTU") holds at once.
  ngtcp2_settings settings = quic_client_settings(now_ns, max_udp_payload_);
  ngtcp2_transport_params params;
  ngtcp2_transport_params_default(&params);
  params.initial_max_stream_data_bidi_local = 256 * 1024;
  params.initial_max_data = 1024 * 1024;
  params.max_idle_timeout = kIdleTimeoutNs;  // keep-alive PINGs (below) and dpctld's or dpgw's answers keep it
  params.max_datagram_frame_size = 65535;     // DATAGRAM frames (RFC 9221 section 3) of any size dpgw sends
  params.max_udp_payload_size = kMaxPacket;
  // How many of the server's connection IDs this end keeps (RFC 9000 section 5.1.1): dpctld issues this many and
  // dpgw accepts each after the hand-over, so a migration (RFC 9000 section 9.5) has spares to move to.
  params.active_connection_id_limit = 4;
  ngtcp2_path path{{reinterpret_cast<sockaddr*>(&local_), sizeof local_},
                   {reinterpret_cast<sockaddr*>(&remote_), sizeof remote_},
                   nullptr};
  if ((rv = ngtcp2_conn_client_new(&conn_, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb, &settings, &params, nullptr,
                                   this)) != 0) {
    error = std::string("ngtcp2_conn_client_new: ") + ngtcp2_strerror(rv);
    return false;
  }
  ngtcp2_conn_set_tls_native_handle(conn_, tls_.session());
  ngtcp2_conn_set_keep_alive_timeout(conn_, kControlKeepAliveNs);
  return flush(now_ns);
}

int QuicControlConnection::on_handshake_completed(ngtcp2_conn* conn, void* user) {
  auto* c = static_cast<QuicControlConnection*>(user);
  c->handshake_done_ = true;
  return ngtcp2_conn_open_bidi_stream(conn, &c->stream_, nullptr) == 0 ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
}

int QuicControlConnection::on_recv_stream(ngtcp2_conn* conn, uint32_t, int64_t id, uint64_t, const uint8_t* data,
                                          size_t len, void* user, void*) {
  auto* c = static_cast<QuicControlConnection*>(user);
  ngtcp2_conn_extend_max_stream_offset(conn, id, len);
  ngtcp2_conn_extend_max_offset(conn, len);
  if (id == c->stream_ && !c->in_.too_long()) c->in_.append({reinterpret_cast<const char*>(data), len});
  return 0;
}

int QuicControlConnection::on_acked(ngtcp2_conn*, int64_t id, uint64_t offset, uint64_t len, void* user, void*) {
  auto* c = static_cast<QuicControlConnection*>(user);
  if (id != c->stream_) return 0;
  while (!c->tx_.empty() && c->tx_.front().offset + c->tx_.front().data.size() <= offset + len) c->tx_.pop_front();
  return 0;
}

int QuicControlConnection::on_datagram(ngtcp2_conn*, uint32_t, const uint8_t* data, size_t len, void* user) {
  auto* c = static_cast<QuicControlConnection*>(user);
  if (c->sink_)
    c->sink_->datagram({data, len}, c->rx_now_ns_);
  else
    ++c->datagrams_unclaimed_;
  return 0;
}

void QuicControlConnection::use_for_data(DatagramSink* sink, uint64_t keepalive_ns) {
  sink_ = sink;
  last_rx_ns_ = 0;
  // Below a third of the idle timeout, so that two lost PINGs do not end the connection.
  if (conn_) ngtcp2_conn_set_keep_alive_timeout(conn_, std::min(keepalive_ns, kIdleTimeoutNs / 3));
  rearm();
}

void QuicControlConnection::path_stats(uint64_t& cwnd, uint64_t& in_flight, uint64_t& srtt_ns) const {
  cwnd = in_flight = srtt_ns = 0;
  if (!conn_) return;
  ngtcp2_conn_stat st;
  ngtcp2_conn_get_conn_stat(conn_, &st);
  cwnd = st.cwnd;
  in_flight = st.bytes_in_flight;
  srtt_ns = st.smoothed_rtt;
}

void QuicControlConnection::send_line(const std::string& line) {
  TxChunk chunk{line + "\n", tx_end_};
  tx_end_ += chunk.data.size();
  tx_.push_back(std::move(chunk));
}

std::vector<std::string> QuicControlConnection::take_lines() {
  std::vector<std::string> out;
  while (in_.has_line()) out.push_back(*in_.next());
  return out;
}

std::vector<uint8_t> QuicControlConnection::export_secret(uint32_t session_index) const {
  std::vector<uint8_t> secret(32);
  const uint8_t context[4] = {uint8_t(session_index >> 24), uint8_t(session_index >> 16), uint8_t(session_index >> 8),
                              uint8_t(session_index)};
  if (!tls_.session() || gnutls_prf_rfc5705(tls_.session(), std::strlen(kExporterLabel), kExporterLabel, sizeof context,
                                  reinterpret_cast<const char*>(context), secret.size(),
                                  reinterpret_cast<char*>(secret.data())) != GNUTLS_E_SUCCESS)
    return {};
  return secret;
}

// ngtcp2 checked the token against the connection IDs it holds of the server's before calling: a real one; the
// connection drains (ngtcp2_conn_read_pkt returns NGTCP2_ERR_DRAINING) and nothing more is sent on it.
int QuicControlConnection::on_stateless_reset(ngtcp2_conn*, const ngtcp2_pkt_stateless_reset*, void* user) {
  auto* self = static_cast<QuicControlConnection*>(user);
  self->stateless_reset_ = true;
  self->stats_.stateless_resets++;
  return 0;
}

bool QuicControlConnection::ended(int rv, uint64_t now_ns) {
  if (stateless_reset_) {
    detail_ = "a Stateless Reset from the server: it no longer knows the connection (RFC 9000 10.3)";
    closed_ = true;
    return false;
  }
  if (rv == NGTCP2_ERR_DRAINING || rv == NGTCP2_ERR_CLOSING) {
    ngtcp2_connection_close_error e;
    ngtcp2_conn_get_connection_close_error(conn_, &e);
    // (dpctld, or dpgw once it has the connection)
    // An alert dpctld sent (0x100 + alert, RFC 9001 §4.8), as OpenSSL reports a received alert.
    if (const unsigned long alert = quic_close_alert_error(e)) ssl_error_ = alert;
    detail_ = "dpctld closed the QUIC connection (" + quic_close_text(e) + ")";
    closed_ = true;
    return false;
  }
  detail_ = std::string("QUIC: ") + ngtcp2_strerror(rv) +
            (tls_.verify_result() != X509_V_OK
                 ? std::string("; server certificate: ") + X509_verify_cert_error_string(tls_.verify_result())
                 : "");
  if (rv == NGTCP2_ERR_CRYPTO && !closed_) {  // our TLS refused dpctld: say so with the alert, as TCP would
    ngtcp2_connection_close_error ccerr;
    ngtcp2_connection_close_error_set_transport_error_tls_alert(&ccerr, ngtcp2_conn_get_tls_alert(conn_), nullptr, 0);
    send_close(ccerr, now_ns);
  }
  closed_ = true;
  return false;
}

bool QuicControlConnection::on_readable(uint64_t now_ns) {
  if (closed_) return false;
  rx_now_ns_ = now_ns;
  ngtcp2_path path{{reinterpret_cast<sockaddr*>(&local_), sizeof local_},
                   {reinterpret_cast<sockaddr*>(&remote_), sizeof remote_},
                   nullptr};
  // At most 8 batches (256 packets) per wakeup, as dpagent's other sockets: the socket is level-triggered, so what
  // is left wakes the loop again after the TUN and the timers had their turn.
  bool ok = true;
  for (unsigned batches = 0; ok && batches < 8; ++batches) {
    for (unsigned i = 0; i < kBatch; ++i) {
      msghdr& h = rx_msgs_[i].msg_hdr;
      h.msg_flags = 0;
      h.msg_control = rx_cmsg_[i].data();
      h.msg_controllen = sizeof rx_cmsg_[i];
    }
    // An error (EAGAIN, or an ICMP error: nobody on the port) ends the burst: the handshake deadline or the idle
    // timeout covers a peer that is gone.
    const int n = recvmmsg(fd_, rx_msgs_.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (n < 0 && errno == ECONNREFUSED) refused_ = true;  // (named if the handshake then times out)
    if (n <= 0) break;
    for (int i = 0; i < n; ++i) {
      msghdr& h = rx_msgs_[i].msg_hdr;
      for (cmsghdr* c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
          uint32_t drops = 0;
          std::memcpy(&drops, CMSG_DATA(c), sizeof drops);
          stats_.socket_rx_drops += uint32_t(drops - last_rx_drops_);  // the kernel's count, wrapping at 2^32
          last_rx_drops_ = drops;
        }
      if (h.msg_flags & MSG_TRUNC) continue;  // bigger than any packet we accept: not QUIC's
      ngtcp2_pkt_info pi{};
      const int rv = ngtcp2_conn_read_pkt(conn_, &path, &pi, static_cast<const uint8_t*>(rx_iov_[i].iov_base),
                                          rx_msgs_[i].msg_len, now_ns);
      if (rv != 0) {
        // A packet that does not decrypt or parse is dropped by ngtcp2 itself (rv 0); anything else ends it.
        ok = ended(rv, now_ns);
        break;
      }
      ++stats_.packets_rx;
      last_rx_ns_ = now_ns;
    }
    if (n < int(kBatch)) break;
  }
  if (sink_) sink_->datagrams_done();
  if (!ok) return false;
  return flush(now_ns);
}

bool QuicControlConnection::on_timer(uint64_t now_ns) {
  if (closed_) return false;
  uint64_t expirations;
  while (read(timer_.get(), &expirations, sizeof expirations) > 0) {
  }
  armed_ns_ = 0;
  if (ngtcp2_conn_get_expiry(conn_) > now_ns) {
    rearm();
    return true;
  }
  if (const int rv = ngtcp2_conn_handle_expiry(conn_, now_ns); rv != 0) {
    detail_ = rv == NGTCP2_ERR_IDLE_CLOSE ? "QUIC idle timeout: nothing heard from the peer"
                                          : std::string("QUIC: ") + ngtcp2_strerror(rv);
    if (!handshake_done_ && refused_) {
      char addr[INET_ADDRSTRLEN] = "?";
      inet_ntop(AF_INET, &remote_.sin_addr, addr, sizeof addr);
      detail_ += std::string("; nothing listens on UDP ") + addr + ":" + std::to_string(ntohs(remote_.sin_port)) +
                 " (ICMP port unreachable): is it dpctld's agent_quic_listen? (`dpctl tunnel show` prints the "
                 "--transport quic command when dpctld has one)";
    }
    closed_ = true;  // an idle connection ends silently (RFC 9000 section 10.1)
    return false;
  }
  return flush(now_ns);
}

uint8_t* QuicControlConnection::tx_buffer() {
  if (tx_count_ == kBatch) send_queued();
  return tx_bufs_.data() + size_t(tx_count_) * max_udp_payload_;
}

void QuicControlConnection::queue_packet(size_t len) {
  tx_iov_[tx_count_] = {tx_bufs_.data() + size_t(tx_count_) * max_udp_payload_, len};
  ++tx_count_;
  ++stats_.packets_tx;
}

// The queued packets in sendmmsg calls; a packet the socket does not take is lost (QUIC's loss recovery sees it).
bool QuicControlConnection::send_queued() {
  unsigned done = 0;
  while (done < tx_count_) {
    const int n = sendmmsg(fd_, tx_msgs_.data() + done, tx_count_ - done, MSG_DONTWAIT);
    ++stats_.sends;
    if (n <= 0) {
      stats_.send_drops += tx_count_ - done;
      break;
    }
    done += unsigned(n);
  }
  tx_count_ = 0;
  return true;
}

bool QuicControlConnection::flush(uint64_t now_ns) {
  if (closed_) return false;
  bool blocked = false;
  for (int i = 0; i < 64; ++i) {
    ngtcp2_vec vec{};
    int64_t sid = -1;
    if (!blocked && stream_ >= 0 && tx_sent_ < tx_end_) {
      for (auto& chunk : tx_)
        if (tx_sent_ < chunk.offset + chunk.data.size()) {
          const size_t skip = size_t(tx_sent_ - chunk.offset);
          vec.base = reinterpret_cast<uint8_t*>(chunk.data.data()) + skip;
          vec.len = chunk.data.size() - skip;
          sid = stream_;
          break;
        }
    }
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi{};
    ngtcp2_ssize taken = -1;
    uint8_t* buf = tx_buffer();
    const ngtcp2_ssize n = ngtcp2_conn_writev_stream(conn_, &ps.path, &pi, buf, max_udp_payload_, &taken,
                                                     NGTCP2_WRITE_STREAM_FLAG_NONE, sid, sid >= 0 ? &vec : nullptr,
                                                     sid >= 0 ? 1 : 0, now_ns);
    if (n < 0) {
      if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR) {
        blocked = true;
        continue;
      }
      send_queued();
      return ended(int(n), now_ns);
    }
    if (taken > 0) tx_sent_ += uint64_t(taken);
    if (n == 0) break;
    queue_packet(size_t(n));
  }
  send_waiting(now_ns);  // ACKs just read may have opened the congestion window
  return flush_packets(now_ns);
}

QuicControlConnection::Write QuicControlConnection::write_datagram(std::span<const uint8_t> data, uint64_t now_ns) {
  ngtcp2_vec vec{const_cast<uint8_t*>(data.data()), data.size()};
  // Without FLAG_MORE: one DATAGRAM frame per packet. A packet ngtcp2 filled with other frames first (an ACK) leaves
  // the datagram unaccepted: it goes in the next one. Three rounds are plenty (the datagram fits an empty packet).
  for (int round = 0; round < 3; ++round) {
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi{};
    int accepted = 0;
    const ngtcp2_ssize n = ngtcp2_conn_writev_datagram(conn_, &ps.path, &pi, tx_buffer(), max_udp_payload_,
                                                       &accepted, NGTCP2_WRITE_DATAGRAM_FLAG_NONE, 0, &vec, 1, now_ns);
    if (n < 0) {
      if (n == NGTCP2_ERR_INVALID_ARGUMENT) return Write::TooBig;  // over the peer's max_datagram_frame_size
      send_queued();
      ended(int(n), now_ns);
      return Write::Closed;
    }
    if (n == 0) return Write::NoRoom;
    queue_packet(size_t(n));
    if (accepted) return Write::Written;
  }
  return Write::NoRoom;
}

void QuicControlConnection::send_waiting(uint64_t now_ns) {
  while (wait_count_ && !closed_) {
    const std::span<const uint8_t> d{wait_bufs_.data() + size_t(wait_head_) * max_datagram_, wait_len_[wait_head_]};
    const Write w = write_datagram(d, now_ns);
    if (w == Write::NoRoom) return;
    if (w == Write::Closed || closed_) return;  // close() counts what still waits
    if (w == Write::TooBig) ++stats_.waiting_dropped;  // never sendable: it must not hold back the rest
    wait_head_ = (wait_head_ + 1) % kWaitSlots;
    --wait_count_;
  }
}

QuicControlConnection::SendResult QuicControlConnection::send_datagram(std::span<const uint8_t> data,
                                                                      uint64_t now_ns) {
  if (closed_) return SendResult::Closed;
  if (data.size() > max_datagram_) return SendResult::TooBig;
  send_waiting(now_ns);  // those first: the order of a flow's packets stays
  if (!wait_count_) {
    switch (write_datagram(data, now_ns)) {
      case Write::Written: return SendResult::Sent;
      case Write::TooBig: return SendResult::TooBig;
      case Write::Closed: return SendResult::Closed;
      case Write::NoRoom: break;
    }
  }
  if (wait_count_ == kWaitSlots) return SendResult::Congested;
  const unsigned slot = (wait_head_ + wait_count_++) % kWaitSlots;
  std::memcpy(wait_bufs_.data() + size_t(slot) * max_datagram_, data.data(), data.size());
  wait_len_[slot] = uint32_t(data.size());
  ++stats_.datagrams_waited;
  return SendResult::Waiting;
}

bool QuicControlConnection::flush_packets(uint64_t) {
  if (tx_count_) send_queued();
  rearm();
  return !closed_;
}

void QuicControlConnection::rearm() {
  if (!conn_ || !timer_) return;
  arm_quic_timer(timer_.get(), closed_ ? UINT64_MAX : ngtcp2_conn_get_expiry(conn_), &armed_ns_);
}

void QuicControlConnection::close(uint64_t now_ns) {
  stats_.waiting_dropped += wait_count_;
  wait_count_ = 0;
  if (closed_ || !conn_) return;
  closed_ = true;
  ngtcp2_connection_close_error ccerr;
  ngtcp2_connection_close_error_set_application_error(&ccerr, 0, nullptr, 0);
  send_close(ccerr, now_ns);
}

void QuicControlConnection::send_close(const ngtcp2_connection_close_error& ccerr, uint64_t now_ns) {
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi{};
  std::vector<uint8_t> buf(max_udp_payload_);
  const ngtcp2_ssize n = ngtcp2_conn_write_connection_close(conn_, &ps.path, &pi, buf.data(), buf.size(), &ccerr, now_ns);
  if (n > 0) (void)send(fd_, buf.data(), size_t(n), 0);  // best effort: the peer times the connection out otherwise
}

}  // namespace dptun
