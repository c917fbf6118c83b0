#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz harnesses into fuzz/corpus/<harness>/seed-*.

Small real inputs, each in the layout its harness reads (the comment at the top of fuzz/<harness>.cpp):
packets with correct checksums, ClientHellos from this machine's OpenSSL (Python's ssl module), the client
Initial of RFC 9001 Appendix A.2 (rebuilt from its plaintext and checked against the RFC's bytes), relay
frames, QUIC short-header packets, TCP headers, dpctld's messages, a state file and the sample configs in conf/.
Run it again after changing a harness's input layout; the files it writes are committed. Inputs libFuzzer
found and crash regressions live next to the seeds under other names and are left alone.
"""
import os
import re
import ssl
import struct
import sys
import zlib

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CORPUS = os.path.join(HERE, "corpus")


def write(harness, name, data):
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- packets
def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip4(a):
    return bytes(int(x) for x in a.split("."))


def ipv4(proto, payload, src="10.99.1.2", dst="10.99.1.1", frag=0x4000, options=b"", ident=0x1234):
    ihl = 5 + len(options) // 4
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload), ident, frag, 64, proto, 0,
                    ip4(src), ip4(dst)) + options
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def tcp(sport, dport, flags, options=b"", payload=b"", seq=1000, ack=0, src="10.99.1.2", dst="10.99.1.1"):
    hl = 20 + len(options)
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (hl // 4) << 4, flags, 64240, 0, 0) + options + payload
    pseudo = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, 6, len(seg))
    c = csum(pseudo + seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def udp(sport, dport, payload, src="10.99.1.2", dst="10.99.1.1"):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    pseudo = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, 17, len(seg))
    return seg[:6] + struct.pack("!H", csum(pseudo + seg) or 0xFFFF) + seg[8:]


def eth(ethertype, payload, vlans=()):
    h = bytes.fromhex("020000000001") + bytes.fromhex("020000000002")
    for tpid, tci in vlans:
        h += struct.pack("!HH", tpid, tci)
    return h + struct.pack("!H", ethertype) + payload


# Linux's SYN options: MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
SYN_OPTIONS = bytes.fromhex("020405b4") + bytes.fromhex("0402080a") + struct.pack("!II", 123456, 0) + bytes.fromhex("01030307")
DNS_QUERY = bytes.fromhex("12340100000100000000000003777777076578616d706c6503636f6d0000010001")


def packets():
    syn = ipv4(6, tcp(40000, 443, 0x02, SYN_OPTIONS))
    write("packet_parser", "eth-ipv4-tcp-syn", eth(0x0800, syn))
    write("packet_parser", "eth-ipv4-udp-dns", eth(0x0800, ipv4(17, udp(53000, 53, DNS_QUERY))))
    icmp = struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"ping" * 8
    icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
    write("packet_parser", "eth-vlan-ipv4-icmp-echo", eth(0x0800, ipv4(1, icmp), vlans=[(0x8100, 100)]))
    write("packet_parser", "eth-qinq-ipv4-udp",
          eth(0x0800, ipv4(17, udp(5000, 5001, b"x" * 32)), vlans=[(0x88A8, 10), (0x8100, 20)]))
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + bytes.fromhex("020000000002") + ip4("10.99.1.2") + \
        bytes(6) + ip4("10.99.1.1")
    write("packet_parser", "eth-arp-request", eth(0x0806, arp + bytes(18)))
    # IPv6: hop-by-hop options, a fragment header (first fragment), then TCP.
    tcp6 = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    ext = bytes([44, 0]) + bytes(6) + bytes([6, 0]) + struct.pack("!HI", 0x0001, 0xABCD)
    ip6 = struct.pack("!IHBB", 0x60000000, len(ext) + len(tcp6), 0, 64) + bytes(15) + b"\1" + bytes(15) + b"\2"
    write("packet_parser", "eth-ipv6-hbh-frag-tcp", eth(0x86DD, ip6 + ext + tcp6))
    hbh = bytes([6, 0]) + bytes([1, 4, 0, 0, 0, 0])  # hop-by-hop: PadN
    ip6 = struct.pack("!IHBB", 0x60000000, len(hbh) + len(tcp6), 0, 64) + bytes(15) + b"\1" + bytes(15) + b"\2"
    write("packet_parser", "eth-ipv6-hbh-tcp", eth(0x86DD, ip6 + hbh + tcp6))
    big = udp(5000, 5001, b"y" * 100)
    write("packet_parser", "eth-ipv4-first-fragment", eth(0x0800, ipv4(17, big[:48], frag=0x2000)))
    write("packet_parser", "eth-ipv4-later-fragment", eth(0x0800, ipv4(17, big[48:], frag=0x0006)))
    write("packet_parser", "ipv4-options-udp", ipv4(17, udp(1, 2, b"z"), options=bytes.fromhex("94040000")))
    write("packet_parser", "ipv4-tcp-data", ipv4(6, tcp(443, 40000, 0x18, payload=b"hello", seq=5, ack=9)))
    write("packet_parser", "eth-truncated-ipv4", eth(0x0800, syn)[:30])
    # Ethernet padding after a short IP packet, as on the wire.
    write("packet_parser", "eth-ipv4-udp-padded", eth(0x0800, ipv4(17, udp(1, 2, b""))) + bytes(18))


# ---------------------------------------------------------------- TLS ClientHello
def client_hello_record(sni, maximum=None, alpn=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if maximum:
        ctx.maximum_version = maximum
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def client_hellos():
    rec = client_hello_record("app-a.example", alpn=["h2", "http/1.1"])
    assert rec[0] == 22 and b"app-a.example" in rec
    write("client_hello", "openssl-tls13-sni", rec)
    write("client_hello", "openssl-tls12-sni", client_hello_record("www.example.org", maximum=ssl.TLSVersion.TLSv1_2))
    write("client_hello", "openssl-no-sni", client_hello_record(None))
    msg = rec[5:]
    write("client_hello", "handshake-message", msg)  # as QUIC's CRYPTO stream carries it
    cut = msg.find(b"app-a.example") - 3
    two = bytes([22, 3, 1]) + struct.pack("!H", cut) + msg[:cut] + bytes([22, 3, 3]) + struct.pack("!H", len(msg) - cut) + msg[cut:]
    write("client_hello", "two-records", two)
    write("client_hello", "first-segment", rec[:100])
    return msg


# ---------------------------------------------------------------- HTTP
def http():
    write("http_host", "curl-get", "GET / HTTP/1.1\r\nHost: app-a.example\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n")
    write("http_host", "host-port", "GET /x?y=1 HTTP/1.1\r\nhost:  App-B.Example.:8080 \r\n\r\n")
    write("http_host", "absolute-form", "GET http://app-a.example/ HTTP/1.0\r\n\r\n")
    write("http_host", "two-hosts", "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n")
    write("http_host", "post-body", "POST /form HTTP/1.1\r\nHost: api.example\r\nContent-Length: 5\r\n"
          "Cookie: " + "k=v; " * 40 + "\r\n\r\nhello")
    write("http_host", "ipv6-literal", "OPTIONS * HTTP/1.1\r\nHost: [::1]:80\r\n\r\n")
    write("http_host", "request-line-only", "GET / HTTP/1.1\r\n")
    write("http_host", "bare-lf", "GET / HTTP/1.1\nHost: lf.example\n\n")
    write("http_host", "absolute-form-other-host", "GET http://a.example:8080/x HTTP/1.1\r\nHost: b.example\r\n\r\n")
    write("http_host", "obs-fold", "GET / HTTP/1.1\r\nHost: a.example\r\nX-Long: one\r\n two\r\n\r\n")
    write("http_host", "connect", "CONNECT app.example:443 HTTP/1.1\r\nHost: app.example:443\r\n\r\n")


# ---------------------------------------------------------------- QUIC Initial (RFC 9001 Appendix A)
RFC9001_DCID = bytes.fromhex("8394c8f03e515708")
RFC9001_CRYPTO_FRAME = bytes.fromhex(
    "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868"
    "04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578"
    "616d706c652e636f6dff01000100000a00080006001d00170018001000070005"
    "04616c706e000500050100000000003300260024001d00209370b2c9caa47fba"
    "baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400"
    "0d0010000e0403050306030203080408050806002d00020101001c0002400100"
    "3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000"
    "75300901100f088394c8f03e51570806048000ffff")


def hkdf_expand_label(secret, label, length):
    info = struct.pack("!HB", length, 6 + len(label)) + b"tls13 " + label + b"\0" + b"\1"
    h = hmac.HMAC(secret, hashes.SHA256())
    h.update(info)
    return h.finalize()[:length]


def quic_protect(dcid, pn, pn_len, frames, token=b"", pad=True):
    h = hmac.HMAC(bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"), hashes.SHA256())
    h.update(dcid)
    client = hkdf_expand_label(h.finalize(), b"client in", 32)
    key, iv, hp = (hkdf_expand_label(client, b"quic key", 16), hkdf_expand_label(client, b"quic iv", 12),
                   hkdf_expand_label(client, b"quic hp", 16))
    header = bytes([0xC0 | (pn_len - 1)]) + b"\0\0\0\1" + bytes([len(dcid)]) + dcid + b"\0"
    header += bytes([len(token)]) + token  # tokens below 64 bytes: a 1-byte varint
    payload = frames
    fixed = len(header) + 2 + pn_len + 16
    if pad and len(payload) + fixed < 1200:
        payload += bytes(1200 - fixed - len(payload))
    length = pn_len + len(payload) + 16
    header += struct.pack("!H", 0x4000 | length) + pn.to_bytes(pn_len, "big")
    nonce = bytes(a ^ b for a, b in zip(iv, pn.to_bytes(12, "big")))
    sealed = AESGCM(key).encrypt(nonce, payload, header)
    pkt = bytearray(header + sealed)
    pn_offset = len(header) - pn_len
    enc = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    mask = enc.update(bytes(pkt[pn_offset + 4:pn_offset + 20])) + enc.finalize()
    pkt[0] ^= mask[0] & 0x0F
    for i in range(pn_len):
        pkt[pn_offset + i] ^= mask[1 + i]
    return bytes(pkt)


def varint(x):
    if x < 64:
        return bytes([x])
    if x < 16384:
        return struct.pack("!H", 0x4000 | x)
    return struct.pack("!I", 0x80000000 | x)


def crypto_frame(data, off, length):
    return b"\x06" + varint(off) + varint(length) + data[off:off + length]


def sealed(flags, pn, frames, token=b""):
    return bytes([flags]) + struct.pack("!I", pn) + bytes([len(token)]) + token + struct.pack("!H", len(frames)) + frames


def quic(hello_msg):
    a2 = quic_protect(RFC9001_DCID, 2, 4, RFC9001_CRYPTO_FRAME)
    # The RFC's protected packet starts and ends with these bytes.
    assert a2.hex().startswith("c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11"), a2[:32].hex()
    assert a2.hex().endswith("e221af44860018ab0856972e194cd934"), a2[-16:].hex()
    assert len(a2) == 1200
    write("quic_initial", "raw-rfc9001-a2", b"\0" + struct.pack("!H", len(a2)) + a2)
    write("quic_initial", "raw-rfc9001-a2-twice", b"\0" + (struct.pack("!H", len(a2)) + a2) * 2)
    # Sealed mode: flags 0x03 = 4-byte packet number, RFC DCID, padded.
    write("quic_initial", "sealed-rfc9001-a2", b"\1" + sealed(0x03, 2, RFC9001_CRYPTO_FRAME))
    msg = hello_msg
    write("quic_initial", "sealed-openssl-hello", b"\1" + sealed(0x03, 0, crypto_frame(msg, 0, len(msg))))
    cut = msg.find(b"app-a.example") - 2
    first = b"\x01" + crypto_frame(msg, cut, len(msg) - cut) + b"\x00\x01"
    second = b"\x02\x05\x00\x00\x00" + crypto_frame(msg, 0, cut)  # ACK, then the start
    # 2-byte packet numbers; the second Initial has the start of the ClientHello, after an ACK frame.
    write("quic_initial", "sealed-two-initials-reversed", b"\1" + sealed(0x01, 1, first) + sealed(0x01, 2, second))
    write("quic_initial", "sealed-token-scid", b"\1" + sealed(0x83, 7, crypto_frame(msg, 0, len(msg)), token=b"t" * 40))


# ---------------------------------------------------------------- relay frames
def relay_header(ftype, counter, flags=0, receiver=40000):
    key_phase = 1 if (counter >> 32) & 1 else 0
    return struct.pack("!BBBBIQ", 1, ftype, (flags & ~1) | key_phase, 0, receiver, counter)


def inner_header(flow_id, proto, flags=0, service=0):
    return struct.pack("!QBBH", flow_id, proto, flags, service)


def relay():
    pkt = ipv4(17, udp(5000, 53, DNS_QUERY, src="10.99.1.2", dst="10.0.0.10"), src="10.99.1.2", dst="10.0.0.10")
    tag = bytes(range(16))
    write("relay_frame", "plain-data", b"\0" + relay_header(1, 5) + inner_header(0x10002, 17, 1) + pkt + tag)
    name = b"app-a.example"
    tpkt = ipv4(6, tcp(40000, 443, 0x02, SYN_OPTIONS, src="10.99.1.2", dst="0.0.0.0"), src="10.99.1.2", dst="0.0.0.0")
    write("relay_frame", "plain-data-name-trailer",
          b"\0" + relay_header(1, (3 << 32) + 9) + inner_header(0x20003, 6, 0x05) + tpkt + name + bytes([len(name)]) + tag)
    write("relay_frame", "plain-keepalive", b"\0" + relay_header(2, 77, flags=2) + tag)
    write("relay_frame", "plain-control", b"\0" + relay_header(3, 78) + b"{}" + tag)
    plain = inner_header(0x10002, 17) + pkt

    def frame(step, arg=b"", ms=1, data=plain, type_flags=0):
        return bytes([type_flags, step]) + arg + struct.pack("!H", ms) + struct.pack("!H", len(data)) + data

    # In order, a replay, a reordered one, a loss, a rekey and a frame of the previous epoch, a keepalive.
    seq = frame(0) + frame(0) + frame(7) + frame(1, b"\x01") + frame(2, b"\x00\x10") + \
        frame(4, b"\x00") + frame(6, b"\x00") + frame(2, b"\x00\x05", type_flags=1, data=b"")
    write("relay_frame", "sealed-sequence", b"\1" + seq)
    named = inner_header(0x20003, 6, 0x05) + tpkt + name + bytes([len(name)])
    write("relay_frame", "sealed-name-trailer", b"\1" + frame(0, data=named) + frame(3, b"\x10\x00", data=named))


def replay_windows():
    def steps(*ops):
        return b"".join(ops)
    start = struct.pack("!Q", 0)
    inc = b"\x00"
    write("replay_window", "in-order", start + inc * 64)
    write("replay_window", "reorder-and-replay", start + inc * 10 + b"\x01\x05" + b"\x07" + b"\x02\x00\x40" + b"\x01\x20" * 3)
    write("replay_window", "past-the-window", start + b"\x02\x10\x00" + b"\x03\x0f\xc0" + b"\x03\x00\x40" + b"\x00" * 3)
    write("replay_window", "rekeys", start + inc * 4 + b"\x04\x00\x00" + b"\x06\x00" + b"\x04\x02\x05" + b"\x06\x03" + inc)
    write("replay_window", "high-counters", struct.pack("!Q", (1 << 64) - 4) + inc * 6 + b"\x05" + struct.pack("!Q", 1 << 40))


def tcp_headers():
    def case(max_mss, header, now=1_700_000_000):
        return struct.pack("!H", max_mss) + ip4("10.99.1.2") + ip4("10.99.1.1") + struct.pack("!HHII", 40000, 443, 1000, 0x12345678) + \
            struct.pack("!I", now & 0xFFFFFFFF) + header
    write("tcp_options", "linux-syn", case(1360, tcp(40000, 443, 0x02, SYN_OPTIONS)))
    # MSS at an odd offset (one NOP before it), then padding.
    write("tcp_options", "mss-odd-offset", case(1200, tcp(40000, 443, 0x02, bytes.fromhex("01020405b4010100"))))
    write("tcp_options", "timestamps-only-ack", case(1460, tcp(40000, 443, 0x10, bytes.fromhex("0101080a") + struct.pack("!II", 5, 6))))
    write("tcp_options", "malformed-length", case(536, tcp(40000, 443, 0x02, bytes.fromhex("0200000000000000"))))
    write("tcp_options", "no-options", case(1460, tcp(40000, 443, 0x02)))


UUID1 = "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f"
UUID2 = "11111111-2222-3333-4444-555555555555"
SECRET = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


def control():
    m = "gateway_messages"
    write(m, "hello", '{"type":"hello","version":1,"seq":1}')
    write(m, "sync", '{"type":"sync","seq":2,"tunnels":[{"id":"%s","name":"web"}],'
          '"sessions":[{"index":32768,"tunnel":"%s","weight":3,"secret":"%s"},'
          '{"index":32769,"tunnel":"%s","weight":1,"secret":"%s","role":"visitor"}],'
          '"entry_points":[{"proto":"tcp","port":80,"route":"http","keepalive":false,"ttl":5.0},'
          '{"proto":"udp","port":5353,"tunnel":"%s","target":"10.0.0.10:53","keepalive":true,"ttl":30.5,"listen":"10.99.1.1"}],'
          '"ingress":[{"hostname":"app.example.org","tunnel":"%s","private":false,"target":"10.0.0.10"}]}'
          % (UUID1, UUID1, SECRET, UUID1, SECRET, UUID1, UUID1))
    write(m, "tunnel-set", '{"type":"tunnel_set","id":"%s","name":"db","seq":3}' % UUID2)
    write(m, "session-add", '{"type":"session_add","index":40000,"tunnel":"%s","weight":255,"secret":"%s","seq":4}' % (UUID2, SECRET))
    write(m, "session-add-quic", '{"type":"session_add","index":40001,"tunnel":"%s","weight":1,"secret":"%s","seq":5,'
          '"quic":{"cipher":"TLS_AES_128_GCM_SHA256","rx_secret":"%s","tx_secret":"%s",'
          '"cid_tails":["a1b2c3d4","0badf00d"],"peer_cid":"0000000701020304","first_tx_pn":1073741824,'
          '"max_udp_payload_size":1452,"max_datagram_frame_size":1200,"path":"10.99.2.2:40400"}}'
          % (UUID2, SECRET, SECRET, SECRET))
    write(m, "entry-set-quic", '{"type":"entry_set","proto":"udp","port":443,"route":"quic","ttl":0.1}')
    write(m, "entry-set-fixed", '{"type":"entry_set","proto":"tcp","port":6201,"tunnel":"%s","target":"10.0.0.11:22"}' % UUID2)
    write(m, "ingress-set", '{"type":"ingress_set","rules":[{"hostname":"*.example.com","tunnel":"%s","private":true,'
          '"proxy_protocol":true,"target":"10.0.0.12:8443"},{"hostname":"~api[0-9]+\\\\.example","tunnel":"%s"}]}' % (UUID1, UUID2))
    write(m, "entry-del", '{"type":"entry_del","proto":"tcp","port":6201}')
    write(m, "pair-set", '{"type":"pair_set","pairs":[{"pair":123,"sessions":[40000,32768]},'
          '{"pair":4294967295,"sessions":[40001,1]}],"seq":6}')

    write("state_file", "state", """{
  "version": 1,
  "tunnels": [
    {"id": "%s", "name": "web", "allow": ["CN=agent-1", "DNS:agent1.example.com"], "max_weight": 254},
    {"id": "%s", "name": "db", "allow": ["*"], "weight": 5}
  ],
  "entry_points": [
    {"proto": "tcp", "port": 8080, "tunnel": "%s", "target": "10.0.0.10:80", "keepalive": false, "ttl": 5.0},
    {"proto": "tcp", "port": 443, "route": "sni", "keepalive": false, "ttl": 5.0, "listen": "10.99.1.1"},
    {"proto": "udp", "port": 443, "route": "quic", "keepalive": true, "ttl": 30.0}
  ],
  "ingress": [
    {"hostname": "app.example.org", "tunnel": "%s", "private": false, "target": "10.0.0.10"},
    {"hostname": "*.example.com", "tunnel": "%s", "private": true, "target": "10.0.0.11:8443", "proxy_protocol": true},
    {"hostname": "~api[0-9]+\\\\.example", "tunnel": "%s", "private": false}
  ]
}
""" % (UUID1, UUID2, UUID1, UUID1, UUID2, UUID2))
    write("state_file", "empty", '{"version": 1, "tunnels": [], "entry_points": [], "ingress": []}\n')

    with open(os.path.join(ROOT, "conf", "dptun.conf")) as f:
        gw = f.read()
    # The harness skips inputs that mention psk_file (it reads another file): the same peer with its key inline.
    gw = re.sub(r'psk_file = "[^"]*";', 'psk = "%s";' % SECRET, gw)
    assert "psk_file" not in gw
    write("gateway_config", "conf-dptun", gw)
    write("gateway_config", "two-ports-two-tunnels", """dpgw = {
  workers = 2;
  eal = { memory_mb = 256; file_prefix = "fz"; args = [ "--log-level=lib.eal:8" ]; };
  ports = (
    { name = "wan"; device = "net_af_packet0,iface=eth1"; address = "10.0.1.1/24"; gateway = "10.0.1.254"; mtu = 1500; },
    { name = "lan"; device = "0000:3b:00.0"; address = "192.168.7.1/16"; rx_desc = 2048; kernel_interface = "dpgw-lan"; kernel_rate = 5000; }
  );
  idle = { backoff = true; pause_polls = 64; max_sleep_us = 100; };
  flows = { table_size = 4096; tcp_syn_timeout = 12.0; };
  crypto = { engine = "openssl"; cipher = "aes-256-gcm"; rekey_interval = 60.0; };
  direct_mode = true;
};
tunnels = (
  { id = "%s"; name = "alpha";
    peers = ( { index = 7; psk = "%s"; endpoint = "10.0.2.2:51901"; weight = 3; } ); },
  { id = "%s"; peers = ( { index = 8; psk = "%s"; } ); }
);
entry_points = (
  { proto = "tcp"; port = 5201; tunnel = "alpha"; target = "10.0.2.2:5201"; },
  { proto = "udp"; port = 5353; tunnel = "%s"; target = "10.0.2.3:53"; keepalive = true; ttl = 30.0; listen = "10.0.1.1"; }
);
""" % (UUID1, SECRET, UUID2, SECRET[::-1], UUID2))
    with open(os.path.join(ROOT, "conf", "dpctld.conf")) as f:
        write("dpctld_config", "conf-dpctld", f.read())
    write("dpctld_config", "routed-entries", """dpctld = {
  tls = { ca = "ca.pem"; cert = "d.pem"; key = "d.key"; crl = "crl.pem"; handshake_timeout = 0.5; };
  gateway_endpoint = "10.99.2.1:51900";
  metrics_listen = "";
  cipher = "aes-256-gcm";
};
tunnels = (
  { id = "%s"; name = "web"; allow = [ "*" ]; weight = 5; },
  { id = "%s"; allow = [ "URI:spiffe://example/agent" ]; }
);
entry_points = (
  { proto = "tcp"; port = 443; route = "sni"; },
  { proto = "udp"; port = 443; route = "quic"; listen = "10.99.1.1"; },
  { proto = "udp"; port = 53; tunnel = "web"; target = "10.0.0.10:53"; keepalive = true; ttl = 2.5; }
);
ingress = (
  { hostname = "*.example.com"; tunnel = "web"; target = "10.0.0.10:8443"; proxy_protocol = true; },
  { hostname = "%s"; tunnel = "$%s"; },
  { hostname = "~api[0-9]+\\\\.example"; tunnel = "web"; }
);
""" % (UUID1, UUID2, "private.example", UUID2))


def reassembly():
    def frag(k, off, length, more=False, options=0, step=0):
        return bytes([k | (4 if more else 0) | options << 3 | step << 6]) + struct.pack("!HH", off // 8, length)
    # One datagram in three fragments, in order; the same reversed with options on the first.
    write("ipv4_reassembly", "in-order", frag(0, 0, 1480, True) + frag(0, 1480, 1480, True) + frag(0, 2960, 40))
    write("ipv4_reassembly", "reversed-options", frag(1, 1472, 8) + frag(1, 736, 736, True) + frag(1, 0, 736, True, options=3))
    write("ipv4_reassembly", "overlap-then-more", frag(0, 0, 16, True) + frag(0, 8, 16, True) + frag(0, 24, 8))
    write("ipv4_reassembly", "duplicate", frag(2, 0, 8, True) + frag(2, 0, 8, True) + frag(2, 8, 8))
    write("ipv4_reassembly", "too-many", b"".join(frag(0, 8 * i, 8, True) for i in range(7)) + frag(0, 56, 8))
    write("ipv4_reassembly", "four-datagrams-evict", b"".join(frag(k, 0, 8, True) for k in range(4)) +
          b"".join(frag(k, 8, 8) for k in range(4)))
    write("ipv4_reassembly", "timeout", frag(3, 0, 8, True) + frag(3, 8, 8, step=3) + frag(3, 0, 8, True) + frag(3, 8, 8))
    write("ipv4_reassembly", "oversize-end-disagree", frag(0, 3992, 8) + frag(1, 16, 8) + frag(1, 8, 8) + frag(1, 0, 8, True))


def icmp_errors():
    def case(error, new=("10.99.1.1", "10.99.1.2", "10.99.1.2", 40000, "10.99.1.1", 5201)):
        f, t, qs, qsp, qd, qdp = new
        return ip4(f) + ip4(t) + ip4(qs) + struct.pack("!H", qsp) + ip4(qd) + struct.pack("!H", qdp) + error

    def icmp(type_, code, quoted, rest=0, src="10.99.2.9", dst="10.99.2.2"):
        body = struct.pack("!BBHI", type_, code, 0, rest) + quoted
        body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
        return ipv4(1, body, src=src, dst=dst, frag=0)

    syn = ipv4(6, tcp(40000, 80, 0x02, src="10.99.2.2", dst="10.99.2.9"), src="10.99.2.2", dst="10.99.2.9")
    dgram = ipv4(17, udp(40000, 53, b"q" * 30, src="10.99.2.2", dst="10.99.2.9"), src="10.99.2.2", dst="10.99.2.9")
    write("icmp_error", "host-unreachable-tcp", case(icmp(3, 1, syn[:28])))
    write("icmp_error", "port-unreachable-udp-whole", case(icmp(3, 3, dgram)))
    write("icmp_error", "frag-needed-mtu", case(icmp(3, 4, dgram[:28], rest=1400)))
    write("icmp_error", "time-exceeded", case(icmp(11, 0, syn[:28])))
    opts = ipv4(17, udp(40000, 53, b"", src="10.99.2.2", dst="10.99.2.9"), src="10.99.2.2", dst="10.99.2.9",
                options=b"\x01\x01\x01\x00")
    write("icmp_error", "quote-with-ip-options", case(icmp(3, 13, opts)))
    write("icmp_error", "quote-cut-short", case(icmp(3, 1, syn[:24])))
    write("icmp_error", "echo-not-an-error", case(icmp(8, 0, syn[:28])))


def failure_log():
    def case(flags, sni, versions=(0x0304, 0x0303), cert=None, reason=b""):
        b = bytes([flags]) + struct.pack("!I", 0) + bytes([len(versions)]) + b"".join(struct.pack("!H", v) for v in versions)
        b += bytes([len(sni)]) + sni
        if cert:
            for part in cert:
                b += bytes([len(part)]) + part
        return b + reason
    write("failure_log", "agent-sni-unknown-ca", case(1, (UUID1 + ".agents").encode(),
          cert=(b"CN=agent-9", b"CN=Other CA", b"01ab"), reason=b"certificate verify failed"))
    write("failure_log", "latin1-sni-timeout", case(4, "caf\u00e9.example".encode("latin-1"), versions=(0x0303,)))
    write("failure_log", "utf8-sni-not-tls", case(2, "b\u00fccher.example".encode()))
    write("failure_log", "shed-no-sni", case(16, b"", versions=()))


# ---------------------------------------------------------------- QUIC short headers
# fuzz/quic_short_header.cpp's keys: the raw mode's receiver removes header protection with QS_HP_RX.
QS_HP_RX = bytes([0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0])
QS_TAIL = bytes.fromhex("d00dfeed")


def quic_short_protected(pn, pn_len, frames, index=7, first_extra=0):
    """A short header (RFC 9000 17.3.1) with header protection (RFC 9001 5.4) over frames left in clear and a
    dummy tag: what the raw mode reads as if the AEAD had accepted it."""
    header = bytes([0x40 | first_extra | (pn_len - 1)]) + struct.pack("!I", index) + QS_TAIL + \
        (pn & ((1 << (8 * pn_len)) - 1)).to_bytes(pn_len, "big")
    pkt = bytearray(header + frames + bytes(range(16)))
    enc = Cipher(algorithms.AES(QS_HP_RX), modes.ECB()).encryptor()
    mask = enc.update(bytes(pkt[13:29])) + enc.finalize()
    pkt[0] ^= mask[0] & 0x1F
    for i in range(pn_len):
        pkt[9 + i] ^= mask[1 + i]
    return bytes(pkt)


def quic_short():
    pkt = ipv4(17, udp(5000, 53, DNS_QUERY, src="10.99.1.2", dst="10.0.0.10"), src="10.99.1.2", dst="10.0.0.10")
    data = inner_header(0x10002, 17, 1) + pkt
    dgram = b"\x30" + data
    dgram_len = b"\x31" + varint(len(data)) + data
    ack = b"\x02" + varint(1000) + varint(3) + varint(1) + varint(5) + varint(2) + varint(7)  # one more range
    ack_ecn = b"\x03" + varint(70) + varint(0) + varint(0) + varint(70) + varint(1) + varint(2) + varint(3)
    u64 = lambda v: struct.pack("!Q", v)
    write("quic_short_header", "raw-datagram", b"\0" + u64(1000) + quic_short_protected(1001, 2, dgram))
    write("quic_short_header", "raw-ack-datagram-padding",
          b"\0" + u64(0xffffffffffffffff) + quic_short_protected(3, 1, b"\x01" + ack + dgram_len + bytes(5)))
    write("quic_short_header", "raw-ping", b"\0" + u64(5) + quic_short_protected(6, 4, b"\x01" + bytes(20)))
    write("quic_short_header", "raw-stream", b"\0" + u64(5) + quic_short_protected(6, 3, b"\x08\x00\x04abcd" + bytes(10)))
    write("quic_short_header", "raw-reserved-bits", b"\0" + u64(5) + quic_short_protected(6, 1, dgram, first_extra=0x18))
    path = b"\x1a" + bytes(range(8)) + b"\x1b" + bytes(range(8, 16))
    ncid = b"\x18\x05\x02\x08" + bytes(range(8)) + bytes(16)
    close = b"\x1c\x0a\x08\x03bye" + b"\x1d\x00\x00"
    write("quic_short_header", "raw-slow-path-frames",
          b"\0" + u64(5) + quic_short_protected(6, 4, b"\x01" + path + ncid + b"\x19\x01\x10\x05" + dgram_len + close))
    write("quic_short_header", "raw-two-datagrams", b"\0" + u64(5) + quic_short_protected(6, 2, dgram_len + dgram))
    write("quic_short_header", "raw-wrong-tail", b"\0" + u64(5) + bytes([0x40]) + struct.pack("!I", 7) + b"abcd" + bytes(40))
    write("quic_short_header", "raw-long-header", b"\0" + u64(5) + bytes([0xc0, 0, 0, 0, 1]) + bytes(40))

    def sealed_packet(pn_len, flags, pn, largest, frames):
        return bytes([(pn_len - 1) | flags << 2]) + u64(pn) + u64(largest) + struct.pack("!H", len(frames)) + frames

    seq = sealed_packet(4, 1, 0, 0xffffffffffffffff, dgram) + \
        sealed_packet(1, 0, 1, 0, ack + dgram_len + bytes(3)) + \
        sealed_packet(2, 2, 0x1_0000, 0xff00, ack_ecn + dgram) + \
        sealed_packet(1, 0, 0x3fffffffffffffff, 0x3ffffffffffffffe, b"\x01") + \
        sealed_packet(1, 0, 0x500, 0x300, dgram) + \
        sealed_packet(3, 1, 77, 76, dgram_len + dgram_len) + \
        sealed_packet(2, 0, 100, 99, b"\x30" + inner_header(1, 17) + bytes(10))
    write("quic_short_header", "sealed-sequence", b"\1" + seq)


def quic_handshake():
    """Extension bodies of a ClientHello as GnuTLS hands them to dpctld's QUIC port (control/quic_handshake.hpp)."""
    names = [b"dptun", b"h3"]
    alpn = b"".join(bytes([len(n)]) + n for n in names)
    write("quic_handshake", "alpn", struct.pack(">H", len(alpn)) + alpn)
    write("quic_handshake", "supported-versions", bytes([6]) + struct.pack(">HHH", 0x0304, 0x7A7A, 0x0303))
    host = b"6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f"
    entry = b"\x00" + struct.pack(">H", len(host)) + host
    write("quic_handshake", "server-name", struct.pack(">H", len(entry)) + entry)
    write("quic_handshake", "certificate-empty", b"\x00\x00\x00\x00")
    write("quic_handshake", "certificate-one", b"\x00\x00\x00\x08" + b"\x00\x00\x03abc\x00\x00")
    write("quic_handshake", "cid", bytes([0, 0, 0x80, 1, 9, 8, 7, 6]))
    write("quic_handshake", "alert", bytes([116, 1]))


def masque():
    p = "/.well-known/masque/udp/"
    write("masque_path", "name", p + "time.corp.example.com/123/")
    write("masque_path", "ipv4", p + "192.0.2.6/443/")
    write("masque_path", "ipv6", p + "2001%3Adb8%3A%3A42/443/")
    write("masque_path", "bad-port", p + "dns.example/65536/")
    write("masque_path", "trailing", p + "dns.example/53/x?y")
    write("masque_path", "bad-encoding", p + "a%2Fb%zz/53/")
    # QUIC DATAGRAM payloads: quarter stream ID, context ID, UDP payload (RFC 9297 2.1, RFC 9298 5).
    write("masque_datagram", "stream0-ctx0", varint(0) + varint(0) + b"dns query")
    write("masque_datagram", "long-varints", bytes([0x80, 0, 0, 1]) + bytes([0x40, 0x02]) + b"x")
    write("masque_datagram", "quarter-too-big", bytes([0xd0] + [0] * 7) + b"\x00")
    write("masque_datagram", "truncated", bytes([0x40]))

    def capsule(ctype, value):
        return varint(ctype) + varint(len(value)) + value
    dg = capsule(0, varint(0) + b"hello") + capsule(0x2f00, b"unknown" * 3) + capsule(0, varint(0) + b"")
    write("masque_capsule", "split-1", bytes([0]) + dg)
    write("masque_capsule", "split-7", bytes([6]) + dg)
    write("masque_capsule", "oversized", bytes([0x10]) + capsule(0, bytes(200)) + capsule(0, varint(0) + b"after"))
    write("masque_capsule", "cut-in-value", bytes([3]) + dg + varint(0) + varint(40) + b"short")
    write("masque_capsule", "huge-unknown", bytes([0xff]) + varint(0x77) + bytes([0xff] * 8) + bytes(300))
    # udp+https routes: dpctl's requests, the state file and dpctld.conf.
    write("dpctl_api", "route-add", '{"cmd":"route.add","from":"udp+https://ntp.example:123","tunnel":"$web",'
          '"to":"udp://10.0.0.5:123","allow":["CN=alice","*"]}')
    write("dpctl_api", "route-add-bad", '{"cmd":"route.add","from":"udp+https://[::1]:0","tunnel":"web",'
          '"to":"tcp://x","allow":[]}')
    write("dpctl_api", "route-del", '{"cmd":"route.del","from":"udp+https://NTP.example:123"}')
    write("dpctl_api", "route-list", '{"cmd":"route.list"}')
    write("state_file", "routes", """{"version": 1, "tunnels": [{"id": "%s", "name": "web", "allow": ["*"]}],
  "entry_points": [], "ingress": [],
  "routes": [
    {"from": "udp+https://ntp.example:123", "to": "udp://10.0.0.5:123", "tunnel": "%s", "private": false,
     "allow": ["CN=alice", "DNS:laptop.example"]},
    {"from": "udp+https://10.1.2.3:53", "to": "udp://resolver.internal:53", "tunnel": "%s", "private": true,
     "allow": ["*"]}
  ]}
""" % (UUID1, UUID1, UUID1))
    write("dpctld_config", "routes", """dpctld = {
  tls = { ca = "ca.pem"; cert = "d.pem"; key = "d.key"; };
  gateway_endpoint = "10.99.2.1:51900";
};
tunnels = ( { id = "%s"; name = "web"; allow = [ "*" ]; } );
routes = (
  { from = "udp+https://Time.Example:123"; tunnel = "web"; to = "udp://10.0.0.5:123"; allow = [ "CN=alice" ]; },
  { from = "udp+https://10.1.2.3:5353"; tunnel = "$%s"; to = "udp://ntp.internal:123/"; allow = [ "*" ]; private = true; }
);
""" % (UUID1, UUID1))


def h3_frame(ftype, payload):
    return varint(ftype) + varint(len(payload)) + payload


def h3():
    # HTTP/3 streams (RFC 9114 7): first byte the frame bound (16 << low 3 bits), second the cut point, then frames.
    settings = h3_frame(4, varint(8) + varint(1) + varint(0x33) + varint(1) + varint(6) + varint(16384))
    write("h3_frame", "control-settings", bytes([7, 0x80]) + settings + h3_frame(7, varint(0)))
    write("h3_frame", "settings-dup", bytes([3, 0x10]) + h3_frame(4, varint(8) + varint(1) + varint(8) + varint(0)))
    write("h3_frame", "settings-http2", bytes([3, 0x30]) + h3_frame(4, varint(2) + varint(0)))
    write("h3_frame", "request", bytes([2, 0x55]) + h3_frame(1, b"\x00\x00\xd1\xd7") + h3_frame(0, b"body" * 30) +
          h3_frame(0x21, b"") + h3_frame(0, b""))
    write("h3_frame", "http2-type", bytes([2, 0x02]) + h3_frame(6, b"ping"))
    write("h3_frame", "oversize", bytes([0, 0xff]) + h3_frame(1, bytes(17)))
    write("h3_frame", "cut", bytes([2, 0x80]) + settings[:-2])

    # QPACK field sections (RFC 9204 4.5), static table and literals written here, without Huffman coding: first
    # byte the size bound (64 << low 3 bits), then the section.
    def qint(first, prefix_bits, v):
        limit = (1 << prefix_bits) - 1
        if v < limit:
            return bytes([first | v])
        out, v = bytearray([first | limit]), v - limit
        while v >= 128:
            out.append(0x80 | (v & 0x7f))
            v >>= 7
        return bytes(out) + bytes([v])

    def lit(s):  # a string literal, H = 0, 7-bit length prefix
        return qint(0, 7, len(s)) + s.encode()

    def static(i):  # indexed field line, static table
        return qint(0xc0, 6, i)

    def with_name(i, value):  # literal field line with a static name reference
        return qint(0x50, 4, i) + lit(value)

    def literal(name, value):  # literal field line with a literal name
        return qint(0x20, 3, len(name)) + name.encode() + lit(value)

    prefix = bytes([0, 0])
    path = "/.well-known/masque/udp/time.corp.example.com/123/"
    connect_udp = prefix + static(15) + literal(":protocol", "connect-udp") + static(23) + \
        with_name(0, "gw.example.net") + with_name(1, path) + literal("capsule-protocol", "?1")
    write("h3_request", "connect-udp", bytes([3]) + connect_udp)
    write("h3_request", "connect-udp-ipv6", bytes([3]) + prefix + static(15) + literal(":protocol", "connect-udp") +
          static(23) + with_name(0, "gw.example.net:443") +
          with_name(1, "/.well-known/masque/udp/2001%3Adb8%3A%3A42/53/") + literal("capsule-protocol", "?1;x"))
    write("h3_request", "too-small", bytes([0]) + connect_udp)
    write("h3_request", "get", bytes([2]) + prefix + static(17) + static(23) + with_name(0, "gw") + static(1))
    write("h3_request", "tcp-connect", bytes([2]) + prefix + static(15) + with_name(0, "db.internal:5432"))
    write("h3_request", "bad-path", bytes([3]) + prefix + static(15) + literal(":protocol", "connect-udp") +
          static(23) + with_name(0, "gw") + with_name(1, "/.well-known/masque/udp/x/0/"))
    write("h3_request", "connection-field", bytes([3]) + connect_udp + literal("connection", "close"))
    write("h3_request", "answer-404", bytes([2]) + prefix + static(27) +
          literal("proxy-status", 'dptun; error=destination_not_found; details="no route"'))
    write("h3_request", "dynamic-ref", bytes([2]) + bytes([2, 0]) + bytes([0x80]))


def stun():
    """STUN messages (fuzz/stun_message.cpp): RFC 5769's sample request and IPv4 response, a request of header and
    FINGERPRINT, one with unknown comprehension-required attributes, an RFC 3489 client's (Debian's stun-client),
    and broken ones (a wrong FINGERPRINT, an attribute past the end, a length that is not the datagram's)."""
    def fingerprinted(m):
        m = m[:2] + struct.pack("!H", len(m) - 20 + 8) + m[4:]
        return m + struct.pack("!HHI", 0x8028, 4, (zlib.crc32(m) ^ 0x5354554E) & 0xFFFFFFFF)
    tid = bytes.fromhex("b7e7a701bc34d686fa87dfae")
    write("stun_message", "rfc5769-request", bytes.fromhex(
        "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74002400046e0001ff"
        "80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249"
        "c1b571a280280004e57a3bcf"))
    write("stun_message", "rfc5769-response", bytes.fromhex(
        "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000080001a147e112a643"
        "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96"))
    write("stun_message", "binding-fingerprint", fingerprinted(struct.pack("!HHI", 1, 0, 0x2112A442) + tid))
    write("stun_message", "binding-bare", struct.pack("!HHI", 1, 0, 0x2112A442) + tid)
    unknown = b"".join(struct.pack("!HH", t, 4) + b"\x01\x02\x03\x04" for t in (0x0024, 0x0003, 0x7f00, 0x8029))
    write("stun_message", "unknown-attributes",
          fingerprinted(struct.pack("!HHI", 1, len(unknown), 0x2112A442) + tid + unknown))
    write("stun_message", "classic-change-request", bytes.fromhex("000100080169d331f507b509b6868c3acebfd46e0003000400000004"))
    bad = bytearray(fingerprinted(struct.pack("!HHI", 1, 0, 0x2112A442) + tid))
    bad[-1] ^= 1
    write("stun_message", "bad-fingerprint", bytes(bad))
    write("stun_message", "overrun", struct.pack("!HHI", 1, 8, 0x2112A442) + tid + struct.pack("!HH", 0x8022, 9) + b"abcd")
    write("stun_message", "indication", fingerprinted(struct.pack("!HHI", 0x0011, 0, 0x2112A442) + tid))
    write("stun_message", "integrity-then-unknown",
          fingerprinted(struct.pack("!HHI", 1, 32, 0x2112A442) + tid + struct.pack("!HH", 8, 20) + bytes(20) +
                        struct.pack("!HH", 0x0030, 4) + b"skip"))


def main():
    packets()
    msg = client_hellos()
    http()
    quic(msg)
    relay()
    quic_short()
    replay_windows()
    tcp_headers()
    control()
    failure_log()
    reassembly()
    icmp_errors()
    quic_handshake()
    masque()
    h3()
    stun()
    print("seeds written under", CORPUS)


if __name__ == "__main__":
    sys.exit(main())
