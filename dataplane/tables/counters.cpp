#include "dataplane/tables/counters.hpp"

namespace dptun {

const char* drop_reason_name(Drop d) {
  switch (d) {
    case Drop::ParseError: return "parse_error";
    case Drop::Vlan: return "vlan";
    case Drop::Ipv6: return "ipv6";
    case Drop::Multiseg: return "multiseg";
    case Drop::NotForUs: return "not_for_us";
    case Drop::UnsupportedProto: return "unsupported_proto";
    case Drop::Fragment: return "fragment";
    case Drop::NoEntryPoint: return "no_entry_point";
    case Drop::TcpNoFlow: return "tcp_no_flow";
    case Drop::NoSession: return "no_session";
    case Drop::FlowTableFull: return "flow_table_full";
    case Drop::NoRoute: return "no_route";
    case Drop::NoNeighbor: return "no_neighbor";
    case Drop::NoRoom: return "no_room";
    case Drop::TooBig: return "too_big";
    case Drop::FrameMalformed: return "frame_malformed";
    case Drop::UnknownSession: return "unknown_session";
    case Drop::Replay: return "replay";
    case Drop::StaleCounter: return "stale_counter";
    case Drop::AuthFail: return "auth_fail";
    case Drop::KeyUnavailable: return "key_unavailable";
    case Drop::BadInner: return "bad_inner";
    case Drop::StaleFlow: return "stale_flow";
    case Drop::FlowMismatch: return "flow_mismatch";
    case Drop::HandoffFull: return "handoff_full";
    case Drop::ControlFull: return "control_full";
    case Drop::KernelFull: return "kernel_full";
    case Drop::KernelRate: return "kernel_rate";
    case Drop::TxFull: return "tx_full";
    case Drop::NoMbuf: return "no_mbuf";
    case Drop::CryptoError: return "crypto_error";
    case Drop::NoHostname: return "no_hostname";
    case Drop::NoRule: return "no_rule";
    case Drop::PrivateRule: return "private_rule";
    case Drop::BadCookie: return "bad_cookie";
    case Drop::BindingFull: return "binding_full";
    case Drop::TargetRefused: return "target_refused";
    case Drop::DirectDisabled: return "direct_disabled";
    case Drop::BadChecksum: return "bad_checksum";
    case Drop::AmbiguousHost: return "ambiguous_host";
    case Drop::HeadTooBig: return "head_too_big";
    case Drop::HostnameTimeout: return "hostname_timeout";
    case Drop::TargetTimeout: return "target_timeout";
    case Drop::TargetUnreachable: return "target_unreachable";
    case Drop::FragMalformed: return "frag_malformed";
    case Drop::FragDuplicate: return "frag_duplicate";
    case Drop::FragOverlap: return "frag_overlap";
    case Drop::FragOversize: return "frag_oversize";
    case Drop::FragTooMany: return "frag_too_many";
    case Drop::FragTimeout: return "frag_timeout";
    case Drop::FragEvicted: return "frag_evicted";
    case Drop::NoSnat: return "no_snat";
    case Drop::QuicBadConnectionId: return "quic_bad_connection_id";
    case Drop::QuicSlowPathFull: return "quic_slow_path_full";
    case Drop::QuicSlowPathLimit: return "quic_slow_path_limit";
    case Drop::MasqueUnknownStream: return "masque_unknown_stream";
    case Drop::MasqueContext: return "masque_context";
    case Drop::MasqueMalformed: return "masque_malformed";
    case Drop::MasqueTooLarge: return "masque_too_large";
    case Drop::MasqueTargetUnreachable: return "masque_target_unreachable";
    case Drop::MasqueCapsuleFrame: return "masque_capsule_frame";
    case Drop::MasqueCapsuleFull: return "masque_capsule_full";
    case Drop::StunMalformed: return "stun_malformed";
    case Drop::StunNotRequest: return "stun_not_request";
    case Drop::StunLimited: return "stun_limited";
    case Drop::PairUnknown: return "pair_unknown";
    case Drop::PairWrongSource: return "pair_wrong_source";
    case Drop::PairNoPeer: return "pair_no_peer";
    case Drop::PairBadSession: return "pair_bad_session";
    case Drop::Count: break;
  }
  return "unknown";
}

}  // namespace dptun
