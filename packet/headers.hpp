// Wire constants for the L2-L4 headers dptun parses and builds.
#pragma once
#include <cstddef>
#include <cstdint>

namespace dptun {

inline constexpr size_t kEthHeaderLen = 14;
inline constexpr size_t kVlanTagLen = 4;
inline constexpr size_t kIpv4HeaderLen = 20;  // without options
inline constexpr size_t kIpv6HeaderLen = 40;
inline constexpr size_t kUdpHeaderLen = 8;
inline constexpr size_t kTcpHeaderLen = 20;   // without options
inline constexpr size_t kIcmpHeaderLen = 8;
inline constexpr size_t kArpIpv4Len = 28;

inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeArp = 0x0806;
inline constexpr uint16_t kEtherTypeVlan = 0x8100;
inline constexpr uint16_t kEtherTypeQinQ = 0x88a8;
inline constexpr uint16_t kEtherTypeIpv6 = 0x86dd;

inline constexpr uint8_t kIpProtoIcmp = 1;
inline constexpr uint8_t kIpProtoTcp = 6;
inline constexpr uint8_t kIpProtoUdp = 17;
inline constexpr uint8_t kIpProtoIcmpv6 = 58;

inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpPsh = 0x08;
inline constexpr uint8_t kTcpAck = 0x10;

inline constexpr uint8_t kIcmpEchoReply = 0;
inline constexpr uint8_t kIcmpDestUnreachable = 3;
inline constexpr uint8_t kIcmpPortUnreachable = 3;  // code of kIcmpDestUnreachable
inline constexpr uint8_t kIcmpFragNeeded = 4;  // code of kIcmpDestUnreachable
inline constexpr uint8_t kIcmpEchoRequest = 8;
inline constexpr uint8_t kIcmpTimeExceeded = 11;
inline constexpr uint8_t kIcmpParamProblem = 12;

inline constexpr uint16_t kArpRequest = 1;
inline constexpr uint16_t kArpReply = 2;

// IPv4 header field offsets.
inline constexpr size_t kIpv4OffTotalLen = 2;
inline constexpr size_t kIpv4OffId = 4;
inline constexpr size_t kIpv4OffFrag = 6;
inline constexpr size_t kIpv4OffTtl = 8;
inline constexpr size_t kIpv4OffProto = 9;
inline constexpr size_t kIpv4OffChecksum = 10;
inline constexpr size_t kIpv4OffSrc = 12;
inline constexpr size_t kIpv4OffDst = 16;
inline constexpr uint16_t kIpv4FlagDf = 0x4000;
inline constexpr uint16_t kIpv4FlagMf = 0x2000;
inline constexpr uint16_t kIpv4FragOffsetMask = 0x1fff;

inline constexpr size_t kTcpOffChecksum = 16;
inline constexpr size_t kUdpOffLength = 4;
inline constexpr size_t kUdpOffChecksum = 6;
inline constexpr size_t kIcmpOffChecksum = 2;

}  // namespace dptun
