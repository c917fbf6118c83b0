// Settings every UDP socket of dpagent's data paths takes (the relay link, the QUIC control connection, dpagent udp).
#pragma once

namespace dptun {

// Receive and send buffers of `bytes` each way (SO_RCVBUFFORCE / SO_SNDBUFFORCE with CAP_NET_ADMIN, else capped by
// net.core.rmem_max / wmem_max), and SO_RXQ_OVFL: each received datagram's control data then carries the count of
// datagrams the kernel dropped for a full receive buffer. Best effort: a setting the kernel refuses is left as it is.
void set_udp_buffers(int fd, int bytes);

}  // namespace dptun
