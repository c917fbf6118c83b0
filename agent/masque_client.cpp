#include "agent/masque_client.hpp"

#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <openssl/x509_vfy.h>
#include <sys/socket.h>
#include <netinet/udp.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/clock.hpp"
#include "common/ngtcp2_callbacks.hpp"
#include "common/udp_socket.hpp"
#include "proto/quic_datagram_mtu.hpp"
#include "proto/quic_varint.hpp"

namespace dptun {

namespace {
constexpr size_t kMaxPacket = 65527;  // the largest UDP payload: every packet the gateway may send is read whole
constexpr uint64_t kMaxDatagramFrame = 65535;  // our max_datagram_frame_size (RFC 9221 3)

bool is_ipv4(const std::string& s) {
  in_addr a;
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}
}  // namespace

const char* ConnectUdpConnection::end_name(End e) {
  switch (e) {
    case End::None: return "none";
    case End::Refused: return "refused";
    case End::NoConnectUdp: return "no_connect_udp";
    case End::Tls: return "tls";
    case End::Closed: return "closed";
    case End::Protocol: return "protocol";
    case End::Timeout: return "timeout";
    case End::Local: return "local";
  }
  return "?";
}

MasqueConnection::~MasqueConnection() {
  if (conn_) ngtcp2_conn_del(conn_);
}

bool MasqueConnection::open(const sockaddr_in& gateway, const Setup& setup, Deliver deliver, uint64_t now_ns,
                            std::string& error) {
  setup_ = setup;
  deliver_ = std::move(deliver);
  opened_ns_ = now_ns;
  max_udp_payload_ = std::clamp<size_t>(setup.max_udp_payload, NGTCP2_MAX_UDP_PAYLOAD_SIZE, kMaxPacket);
  h3_ = H3ConnectUdpClient(setup.authority, setup.target_host, setup.target_port);
  rx_buf_.assign(kMaxPacket, 0);
  tx_buf_.assign(max_udp_payload_, 0);
  fd_ = Fd(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  timer_ = Fd(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!fd_ || !timer_) {
    error = std::string("socket: ") + strerror(errno);
    return false;
  }
  // A burst of datagrams must not overflow the socket: 4 MiB each way, as dpagent's sockets to the gateway have.
  set_udp_buffers(fd_.get(), 4 << 20);
  int zero = 0;
  gso_ = setsockopt(fd_.get(), SOL_UDP, UDP_SEGMENT, &zero, sizeof zero) == 0;
  // UDP_SEGMENT sends at most 64 segments and 64 KiB in one go.
  batch_max_ = std::clamp<size_t>(60000 / max_udp_payload_, 1, kBatchMax);
  batch_.assign(batch_max_ * max_udp_payload_, 0);
  wait_buf_.assign(kWaitSlots * max_udp_payload_, 0);
  if (connect(fd_.get(), reinterpret_cast<const sockaddr*>(&gateway), sizeof gateway) != 0) {
    error = std::string("connect: ") + strerror(errno);
    return false;
  }
  socklen_t len = sizeof local_;
  if (getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&local_), &len) != 0) {
    error = std::string("getsockname: ") + strerror(errno);
    return false;
  }
  remote_ = gateway;
  // The SNI names the gateway (never an address, RFC 6066 3).
  if (!tls_.init(&conn_, setup.credentials, setup.store, setup.server_name,
                 is_ipv4(setup.server_name) ? std::string_view() : std::string_view(setup.server_name), "h3", error))
    return false;

  ngtcp2_callbacks cb = ngtcp2_crypto_callbacks(QuicRole::Client);
  cb.handshake_completed = on_handshake_completed;
  cb.recv_stream_data = on_recv_stream;
  cb.stream_reset = on_stream_reset;
  cb.recv_datagram = on_datagram;
  ngtcp2_cid dcid, scid;
  quic_client_cids(dcid, scid);
  // Packets up to --mtu from the start, so that a UDP payload within max_payload() is sent at once.
  ngtcp2_settings settings = quic_client_settings(now_ns, max_udp_payload_);
  settings.handshake_timeout = kAnswerTimeoutNs;
  ngtcp2_transport_params params;
  ngtcp2_transport_params_default(&params);
  params.initial_max_stream_data_bidi_local = 256 * 1024;  // the request stream: the answer, then capsules
  params.initial_max_stream_data_uni = 64 * 1024;          // the gateway's control and QPACK streams
  params.initial_max_data = 1024 * 1024;
  params.initial_max_streams_bidi = 0;  // a server opens no request stream (RFC 9114 6.1)
  params.initial_max_streams_uni = 8;   // its control and QPACK streams, and a few it may add (RFC 9114 6.2)
  params.max_idle_timeout = kIdleTimeoutNs;
  params.max_datagram_frame_size = kMaxDatagramFrame;
  params.max_udp_payload_size = kMaxPacket;
  ngtcp2_path path{{reinterpret_cast<sockaddr*>(&local_), sizeof local_},
                   {reinterpret_cast<sockaddr*>(&remote_), sizeof remote_},
                   nullptr};
  if (int rv = ngtcp2_conn_client_new(&conn_, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb, &settings, &params,
                                      nullptr, this);
      rv != 0) {
    error = std::string("ngtcp2_conn_client_new: ") + ngtcp2_strerror(rv);
    return false;
  }
  ngtcp2_conn_set_tls_native_handle(conn_, tls_.session());
  ngtcp2_conn_set_keep_alive_timeout(conn_, kKeepAliveNs);
  if (!flush(now_ns)) {
    error = detail_;
    return false;
  }
  return true;
}

int MasqueConnection::on_handshake_completed(ngtcp2_conn* conn, void* user) {
  auto* c = static_cast<MasqueConnection*>(user);
  c->handshake_done_ = true;
  gnutls_datum_t alpn{};
  if (gnutls_alpn_get_selected_protocol(c->tls_.session(), &alpn) != 0 || alpn.size != 2 ||
      std::memcmp(alpn.data, "h3", 2) != 0) {
    c->finish(End::NoConnectUdp, "the gateway did not select ALPN h3: it does not serve HTTP/3 on this port");
    return 0;
  }
  // Our control stream and the QPACK streams, each with its first bytes (RFC 9114 6.2.1, RFC 9204 4.2).
  const std::vector<uint8_t> first[3] = {H3ConnectUdpClient::control_stream_bytes(),
                                         H3ConnectUdpClient::encoder_stream_bytes(),
                                         H3ConnectUdpClient::decoder_stream_bytes()};
  for (const auto& bytes : first) {
    TxStream s;
    if (ngtcp2_conn_open_uni_stream(conn, &s.id, nullptr) != 0) {
      c->finish(End::Protocol, "the gateway allows fewer than 3 unidirectional streams (HTTP/3 needs them)");
      return 0;
    }
    s.data = bytes;
    c->tx_.push_back(std::move(s));
  }
  return 0;
}

int MasqueConnection::on_recv_stream(ngtcp2_conn* conn, uint32_t flags, int64_t id, uint64_t, const uint8_t* data,
                                     size_t len, void* user, void*) {
  auto* c = static_cast<MasqueConnection*>(user);
  ngtcp2_conn_extend_max_stream_offset(conn, id, len);
  ngtcp2_conn_extend_max_offset(conn, len);
  c->h3_.on_stream_data(id, {data, len}, flags & NGTCP2_STREAM_DATA_FLAG_FIN, [c](std::span<const uint8_t> p) {
    ++c->stats_.capsules_rx;
    if (c->deliver_) c->deliver_(p);
  });
  return 0;
}

int MasqueConnection::on_stream_reset(ngtcp2_conn*, int64_t id, uint64_t, uint64_t app_error, void* user, void*) {
  static_cast<MasqueConnection*>(user)->h3_.on_stream_reset(id, app_error);
  return 0;
}

int MasqueConnection::on_datagram(ngtcp2_conn*, uint32_t, const uint8_t* data, size_t len, void* user) {
  auto* c = static_cast<MasqueConnection*>(user);
  if (auto p = c->h3_.datagram_payload({data, len})) {
    ++c->stats_.datagrams_rx;
    if (c->deliver_) c->deliver_(*p);
  }
  return 0;
}

void MasqueConnection::finish(End e, std::string detail) {
  if (end_ != End::None) return;
  end_ = e;
  detail_ = std::move(detail);
  stats_.waiting_dropped += wait_n_;  // they never leave now
  wait_n_ = 0;
}

void MasqueConnection::h3_progress(uint64_t now_ns) {
  using S = H3ConnectUdpClient::State;
  if (end_ != End::None) {
    // ALPN or stream limits (on_handshake_completed): close politely with H3_NO_ERROR.
    if (!closing_) {
      ngtcp2_connection_close_error ccerr;
      ngtcp2_connection_close_error_set_application_error(&ccerr, kH3NoError, nullptr, 0);
      send_close(ccerr, now_ns);
    }
    return;
  }
  switch (h3_.state()) {
    case S::Ready: {
      TxStream s;
      if (int rv = ngtcp2_conn_open_bidi_stream(conn_, &s.id, nullptr); rv != 0) {
        finish(End::Protocol, "the gateway allows no request stream");
        break;
      }
      s.data = h3_.request(s.id);
      if (s.data.empty()) break;  // Failed: handled below on the next call
      tx_.push_back(std::move(s));
      return;
    }
    case S::Refused:
      finish(End::Refused, "the gateway refused CONNECT-UDP: " + h3_.refusal_text());
      break;
    case S::Failed:
      finish(h3_.no_connect_udp() ? End::NoConnectUdp : End::Protocol, h3_.problem());
      break;
    case S::Ended: finish(End::Closed, h3_.problem()); break;
    default: return;
  }
  if (h3_.state() == S::Failed && end_ == End::None) finish(End::Protocol, h3_.problem());
  if (end_ == End::None || closing_) return;
  ngtcp2_connection_close_error ccerr;
  const uint64_t code = h3_.state() == S::Failed ? h3_.error_code() : kH3NoError;
  ngtcp2_connection_close_error_set_application_error(&ccerr, code, nullptr, 0);
  send_close(ccerr, now_ns);
}

bool MasqueConnection::ended(int rv, uint64_t now_ns) {
  if (rv == NGTCP2_ERR_DRAINING || rv == NGTCP2_ERR_CLOSING) {
    ngtcp2_connection_close_error e;
    ngtcp2_conn_get_connection_close_error(conn_, &e);
    if (const unsigned long alert = quic_close_alert_error(e)) {
      ssl_error_ = alert;
      finish(End::Tls, "the gateway closed the QUIC connection during the handshake (" + quic_close_text(e) + ")");
    } else {
      const char* h3 =
          e.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION ? h3_error_name(e.error_code) : nullptr;
      finish(End::Closed, "the gateway closed the QUIC connection (" + quic_close_text(e) +
                              (h3 ? std::string(", ") + h3 : "") + ")");
    }
    closing_ = true;
    return false;
  }
  if (rv == NGTCP2_ERR_CRYPTO || tls_.verify_result() != X509_V_OK) {
    finish(End::Tls, std::string("QUIC: ") + ngtcp2_strerror(rv) +
                         (tls_.verify_result() != X509_V_OK
                              ? std::string("; the gateway's certificate: ") +
                                    X509_verify_cert_error_string(tls_.verify_result())
                              : ""));
    if (!closing_) {  // our TLS refused the gateway: say so with the alert
      ngtcp2_connection_close_error ccerr;
      ngtcp2_connection_close_error_set_transport_error_tls_alert(&ccerr, ngtcp2_conn_get_tls_alert(conn_), nullptr, 0);
      send_close(ccerr, now_ns);
    }
  } else {
    finish(End::Protocol, std::string("QUIC: ") + ngtcp2_strerror(rv));
  }
  closing_ = true;
  return false;
}

bool MasqueConnection::on_readable(uint64_t now_ns) {
  if (end_ != End::None) return false;
  ngtcp2_path path{{reinterpret_cast<sockaddr*>(&local_), sizeof local_},
                   {reinterpret_cast<sockaddr*>(&remote_), sizeof remote_},
                   nullptr};
  for (int i = 0; i < 64; ++i) {
    const ssize_t n = recv(fd_.get(), rx_buf_.data(), rx_buf_.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == ECONNREFUSED) icmp_refused_ = true;  // named if the handshake then times out
      break;
    }
    ngtcp2_pkt_info pi{};
    const int rv = ngtcp2_conn_read_pkt(conn_, &path, &pi, rx_buf_.data(), size_t(n), now_ns);
    if (rv != 0) return ended(rv, now_ns);
    ++stats_.packets_rx;
    h3_progress(now_ns);
    if (end_ != End::None) return false;
  }
  return flush(now_ns);
}

bool MasqueConnection::on_timer(uint64_t now_ns) {
  if (end_ != End::None) return false;
  uint64_t expirations;
  while (read(timer_.get(), &expirations, sizeof expirations) > 0) {
  }
  armed_ns_ = 0;
  if (ngtcp2_conn_get_expiry(conn_) <= now_ns) {
    if (const int rv = ngtcp2_conn_handle_expiry(conn_, now_ns); rv != 0) {
      if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
        std::string d = rv == NGTCP2_ERR_IDLE_CLOSE ? "QUIC idle timeout: nothing heard from the gateway"
                                                    : "the QUIC handshake with the gateway timed out";
        closing_ = true;  // an idle connection ends silently (RFC 9000 10.1)
        finish(End::Timeout, d);
        return false;
      }
      return ended(rv, now_ns);
    }
  }
  return flush(now_ns);
}

bool MasqueConnection::check_deadline(uint64_t now_ns) {
  if (end_ != End::None) return false;
  if (is_open() || now_ns < opened_ns_ + kAnswerTimeoutNs) return true;
  std::string d = handshake_done_ ? "no answer to the CONNECT-UDP request within 10 s"
                                  : "no QUIC handshake with the gateway within 10 s";
  if (!handshake_done_ && icmp_refused_) {
    char addr[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &remote_.sin_addr, addr, sizeof addr);
    d += std::string("; nothing listens on UDP ") + addr + ":" + std::to_string(ntohs(remote_.sin_port)) +
         " (ICMP port unreachable): is it the gateway's HTTP/3 port (dpctld's QUIC listener)?";
  }
  finish(End::Timeout, d);
  if (!closing_) {
    ngtcp2_connection_close_error ccerr;
    ngtcp2_connection_close_error_set_application_error(&ccerr, kH3NoError, nullptr, 0);
    if (handshake_done_) send_close(ccerr, now_ns);
    closing_ = true;
  }
  return false;
}

uint8_t* MasqueConnection::packet_room(bool more) {
  if (!more) return tx_buf_.data();
  if (batch_n_ == batch_max_ || batch_closed_) send_batch();
  return batch_.data() + batch_len_;
}

void MasqueConnection::batch_packet(size_t len) {
  if (batch_n_ == 0) batch_seg_ = len;
  if (len > batch_seg_) {  // (a longer packet cannot follow: it starts a batch of its own)
    std::memcpy(tx_buf_.data(), batch_.data() + batch_len_, len);
    send_batch();
    std::memcpy(batch_.data(), tx_buf_.data(), len);
    batch_seg_ = len;
  }
  batch_len_ += len;
  ++batch_n_;
  if (len < batch_seg_) batch_closed_ = true;
}

void MasqueConnection::send_batch() {
  if (rearm_due_) rearm();
  if (batch_n_ == 0) return;
  const size_t n = batch_n_, seg = batch_seg_, total = batch_len_;
  batch_n_ = batch_len_ = 0;
  batch_closed_ = false;
  stats_.packets_tx += n;
  if (n > 1 && gso_) {
    // One send, the kernel cuts it into packets of `seg` bytes (the last one may be shorter).
    iovec iov{batch_.data(), total};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(uint16_t))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    const uint16_t size = uint16_t(seg);
    std::memcpy(CMSG_DATA(c), &size, sizeof size);
    if (sendmsg(fd_.get(), &msg, MSG_DONTWAIT) == ssize_t(total)) return;
    if (errno == ECONNREFUSED) icmp_refused_ = true;
    if (errno != EIO && errno != EINVAL) {  // lost (a full buffer): QUIC's loss recovery sees it
      stats_.send_errors += n;
      return;
    }
    // EIO: the device cannot segment (no checksum offload), GSO is off from now on. EINVAL may be GSO's too, or the
    // packets' own (too big for the route's MTU): they go one by one, and GSO is off only if that works.
    const bool eio = errno == EIO;
    const uint64_t errors = stats_.send_errors;
    send_each(seg, total);
    if (eio || stats_.send_errors == errors) gso_ = false;
    return;
  }
  send_each(seg, total);
}

void MasqueConnection::send_each(size_t seg, size_t total) {
  for (size_t at = 0; at < total; at += seg) {
    const size_t len = std::min(seg, total - at);
    if (::send(fd_.get(), batch_.data() + at, len, MSG_DONTWAIT) != ssize_t(len)) {
      if (errno == ECONNREFUSED) icmp_refused_ = true;
      ++stats_.send_errors;
    }
  }
}

bool MasqueConnection::send_packet(const uint8_t* data, size_t len) {
  send_batch();  // what waits was numbered first
  if (::send(fd_.get(), data, len, MSG_DONTWAIT) != ssize_t(len)) {
    if (errno == ECONNREFUSED) icmp_refused_ = true;
    ++stats_.send_errors;  // lost: QUIC's loss recovery sees it
  }
  ++stats_.packets_tx;
  return true;
}

bool MasqueConnection::flush(uint64_t now_ns) {
  if (end_ != End::None) return false;
  std::vector<bool> blocked(tx_.size(), false);
  for (int i = 0; i < 64; ++i) {
    ngtcp2_vec vec{};
    int64_t sid = -1;
    size_t which = 0;
    for (size_t k = 0; k < tx_.size(); ++k)
      if (!blocked[k] && tx_[k].sent < tx_[k].data.size()) {
        vec.base = tx_[k].data.data() + tx_[k].sent;
        vec.len = tx_[k].data.size() - tx_[k].sent;
        sid = tx_[k].id;
        which = k;
        break;
      }
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi{};
    ngtcp2_ssize taken = -1;
    const ngtcp2_ssize n = ngtcp2_conn_writev_stream(conn_, &ps.path, &pi, tx_buf_.data(), tx_buf_.size(), &taken,
                                                     NGTCP2_WRITE_STREAM_FLAG_NONE, sid, sid >= 0 ? &vec : nullptr,
                                                     sid >= 0 ? 1 : 0, now_ns);
    if (n < 0) {
      if (sid >= 0 && (n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR)) {
        blocked[which] = true;
        continue;
      }
      return ended(int(n), now_ns);
    }
    if (taken > 0) tx_[which].sent += size_t(taken);
    if (n == 0) break;
    send_packet(tx_buf_.data(), size_t(n));
  }
  if (wait_n_ && is_open()) {  // the pacing timer fired, or ACKs opened the window
    send_waiting(now_ns);
    send_batch();
  }
  rearm();
  return end_ == End::None;
}

size_t MasqueConnection::max_payload() const {
  if (!is_open()) return 0;
  size_t room = quic_max_datagram_data(max_udp_payload_);
  // The real destination connection ID may be longer than the 8 bytes quic_max_datagram_data counts.
  if (const ngtcp2_cid* dcid = ngtcp2_conn_get_dcid(conn_); dcid && dcid->datalen > kQuicCidLen)
    room = room > dcid->datalen - kQuicCidLen ? room - (dcid->datalen - kQuicCidLen) : 0;
  if (const ngtcp2_transport_params* p = ngtcp2_conn_get_remote_transport_params(conn_)) {
    // The peer's limit counts the whole frame: type and Length too (RFC 9221 3).
    const uint64_t limit = p->max_datagram_frame_size;
    const uint64_t frame_room = limit > 1 + 8 ? limit - 1 - quic_varint_len(limit) : 0;
    room = std::min<uint64_t>(room, frame_room);
  }
  const size_t header = h3_.datagram_header_len();
  return room > header ? room - header : 0;
}

MasqueConnection::Send MasqueConnection::send(std::span<const uint8_t> udp_payload, uint64_t now_ns, bool more) {
  if (end_ != End::None) return Send::Closed;
  if (!is_open()) return Send::NotOpen;
  if (udp_payload.size() > max_payload()) return Send::TooBig;
  Send r = Send::Congested;
  if (wait_n_) send_waiting(now_ns);  // in order: behind those waiting (their packets join the batch)
  if (!wait_n_) r = write_datagram(udp_payload, now_ns, more);
  if (r == Send::Congested && wait_n_ < kWaitSlots) {
    const size_t slot = (wait_head_ + wait_n_++) % kWaitSlots;
    std::memcpy(wait_buf_.data() + slot * max_udp_payload_, udp_payload.data(), udp_payload.size());
    wait_len_[slot] = uint16_t(udp_payload.size());
    ++stats_.datagrams_waited;
    r = Send::Sent;
  }
  if (!more) {  // nothing may stay in the batch, and the timer follows ngtcp2's expiry
    rearm_due_ = true;
    send_batch();
  }
  return r;
}

void MasqueConnection::send_waiting(uint64_t now_ns) {
  while (wait_n_ && end_ == End::None) {
    const size_t slot = wait_head_;
    const Send r = write_datagram({wait_buf_.data() + slot * max_udp_payload_, wait_len_[slot]}, now_ns, true);
    if (r == Send::Congested) return;
    // Sent, or never sendable: too big since it waited (the peer's limit or the DCID changed), or the connection
    // ended (finish() counted the rest). A head that cannot leave must not hold back the ones behind it.
    if (end_ != End::None) return;
    if (r != Send::Sent) ++stats_.waiting_dropped;
    wait_head_ = (wait_head_ + 1) % kWaitSlots;
    --wait_n_;
  }
}

MasqueConnection::Send MasqueConnection::write_datagram(std::span<const uint8_t> udp_payload, uint64_t now_ns,
                                                        bool more) {
  uint8_t header[16];
  const size_t hlen = h3_.write_datagram_header(header);
  ngtcp2_vec vec[2] = {{header, hlen}, {const_cast<uint8_t*>(udp_payload.data()), udp_payload.size()}};
  rearm_due_ = true;
  // An ACK ngtcp2 has to send first may take the packet: the datagram goes in the next one.
  for (int round = 0; round < 3; ++round) {
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi{};
    int accepted = 0;
    uint8_t* out = packet_room(more);
    const ngtcp2_ssize n = ngtcp2_conn_writev_datagram(conn_, &ps.path, &pi, out, max_udp_payload_, &accepted,
                                                       NGTCP2_WRITE_DATAGRAM_FLAG_NONE, 0, vec, 2, now_ns);
    if (n < 0) {
      if (n == NGTCP2_ERR_INVALID_ARGUMENT) return Send::TooBig;
      ended(int(n), now_ns);
      return Send::Closed;
    }
    if (n == 0) return Send::Congested;
    if (more)
      batch_packet(size_t(n));
    else
      send_packet(tx_buf_.data(), size_t(n));
    if (accepted) {
      ++stats_.datagrams_tx;
      return Send::Sent;
    }
  }
  return Send::Congested;
}

void MasqueConnection::rearm() {
  rearm_due_ = false;
  if (!conn_ || !timer_) return;
  arm_quic_timer(timer_.get(), end_ != End::None ? UINT64_MAX : ngtcp2_conn_get_expiry(conn_), &armed_ns_);
}

void MasqueConnection::close(uint64_t now_ns) {
  if (!conn_) return;
  finish(End::Local, "closed by dpagent");
  if (closing_) return;
  ngtcp2_connection_close_error ccerr;
  ngtcp2_connection_close_error_set_application_error(&ccerr, kH3NoError, nullptr, 0);
  send_close(ccerr, now_ns);
}

void MasqueConnection::send_close(const ngtcp2_connection_close_error& ccerr, uint64_t now_ns) {
  send_batch();
  closing_ = true;
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi{};
  const ngtcp2_ssize n = ngtcp2_conn_write_connection_close(conn_, &ps.path, &pi, tx_buf_.data(), tx_buf_.size(),
                                                            &ccerr, now_ns);
  if (n > 0) (void)::send(fd_.get(), tx_buf_.data(), size_t(n), 0);  // best effort: the gateway times it out otherwise
}

}  // namespace dptun
