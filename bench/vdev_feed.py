#!/usr/bin/env python3
"""Input and output of the same-run benchmarks (bench/secgw.sh, bench/edge.sh), stdlib only.

  vdev_feed.py clients FILE SIZE [FLOWS [REPEAT [LEAD]]]
                                           pcap of client UDP packets to 10.99.1.1:5201, SIZE bytes each on the
                                           wire (Ethernet without FCS), FLOWS (256) source address/port pairs, the
                                           FLOWS packets REPEAT (1) times over, after LEAD (0) 64-byte packets to
                                           10.98.0.1, which neither gateway forwards (they give a gateway time to
                                           learn the agent's MAC address before the clients' packets come)
  vdev_feed.py arp FILE                    pcap of ARP requests from the agent 10.99.2.2 for 10.99.2.1
  vdev_feed.py routed FILE SIZE REPEAT     the way out of bench/edge.sh's round trip: an ARP request from the
                                           clients' router 10.99.1.254 for 10.99.1.1 (the gateway learns where its
                                           answers go), then the 256 client packets of `clients` REPEAT times over
  vdev_feed.py replies FILE DELIVERED SIZE REPEAT
                                           the way back: an ARP request from the target for 10.99.2.1, then for
                                           each translated source in DELIVERED (what an edge sent its target, see
                                           `delivered`) the target's answer, SIZE bytes on the wire, from
                                           10.99.2.2:5201; the answers REPEAT times over
  vdev_feed.py rate PREFIX PORT [PREFIX PORT]... WARMUP SECONDS
                                           packets per second DPDK processes (EAL --file-prefix PREFIX) sent on
                                           ethdev PORT, read from their telemetry sockets (/ethdev/stats): waits
                                           until every port sends, WARMUP more seconds, then counts all of them
                                           over the same SECONDS. Prints one JSON object (`mpps`: the sum, `ports`:
                                           each PREFIX PORT's in the order given).
  vdev_feed.py delivered OUT IN            checks OUT, what an edge dpgw sent on its LAN port for the client packets
                                           of IN (bench/edge.sh): each a client's UDP packet to the target
                                           10.99.2.2:5201 from a translated source (100.64.0.0/16, port >= 32768),
                                           its payload intact and both checksums valid, one source per client flow.
                                           Exit 1 otherwise.
  vdev_feed.py returned OUT REPLIES        checks OUT, what the concentrator sent its clients for the answers of
                                           REPLIES: each a reply's payload, from the entry point 10.99.1.1:5201 to
                                           a client's own address and port (those of `clients`), checksums valid,
                                           every client reached. Exit 1 otherwise.
  vdev_feed.py check esp|relay OUT IN KEY  decrypts every packet of OUT (what a gateway sent for the client packets of
                                           IN) and checks it carries one of IN's packets: ESP tunnel mode (RFC 4303,
                                           AES-GCM per RFC 4106; KEY = the SA's key and salt, hex) or dptun relay
                                           frames (docs/protocol.md; KEY = the peer's 32-byte PSK, hex). Exit 1 when
                                           a packet does not decrypt or carry a client packet, or packets are missing.
"""
import json
import os
import socket
import struct
import sys
import time

GATEWAY_IP = bytes([10, 99, 1, 1])
AGENT_IP = bytes([10, 99, 2, 2])
UNDERLAY_IP = bytes([10, 99, 2, 1])
CLIENT_MAC = bytes([2, 0, 0, 0, 0, 2])
GATEWAY_MAC = bytes([2, 0, 0, 0, 0, 1])
AGENT_MAC = bytes([2, 0, 0, 0, 0, 9])
ROUTER_IP = bytes([10, 99, 1, 254])  # the clients' router on the entry point's subnet (bench/edge.sh, round trip)


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_frame(size: int, dst_mac: bytes, src_mac: bytes, src: bytes, sport: int, dst: bytes, dport: int,
              payload_byte) -> bytes:
    """An Ethernet/IPv4/UDP frame of SIZE bytes (without FCS), both checksums set; payload byte i = payload_byte(i)."""
    ip_len = size - 14
    payload = bytes(payload_byte(i) for i in range(8, ip_len - 20))
    udp_len = ip_len - 20
    pseudo = src + dst + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0) + payload
    c = csum(pseudo + udp) or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, udp_len, c) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, ip_len, 0, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return dst_mac + src_mac + b"\x08\x00" + ip + udp


def client_addr(flow: int):
    return bytes([10, 99, 2 + flow // 200, flow % 200 + 2]), 10000 + flow


def client_frame(size: int, flow: int, dst: bytes = GATEWAY_IP) -> bytes:
    """The same packet as bench_gateway.cpp's client_frame: IPv4/UDP to the entry point 10.99.1.1:5201."""
    src, sport = client_addr(flow)
    return udp_frame(size, GATEWAY_MAC, CLIENT_MAC, src, sport, dst, 5201, lambda i: i & 0xFF)


def reply_byte(i: int) -> int:  # the target's answers: a payload no client sends
    return (i * 7 + 3) & 0xFF


def arp_request(sender_mac: bytes = AGENT_MAC, sender: bytes = AGENT_IP, target: bytes = UNDERLAY_IP) -> bytes:
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, sender_mac, sender, bytes(6), target)
    return b"\xff" * 6 + sender_mac + b"\x08\x06" + arp + bytes(60 - 14 - len(arp))


def write_pcap(path: str, frames) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))  # LINKTYPE_ETHERNET
        for fr in frames:
            f.write(struct.pack("<IIII", 0, 0, len(fr), len(fr)))
            f.write(fr)


def read_pcap(path: str):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24 or struct.unpack("<I", data[:4])[0] not in (0xA1B2C3D4, 0xA1B23C4D):
        raise SystemExit("%s: not a little-endian pcap" % path)
    off, out = 24, []
    while off + 16 <= len(data):
        caplen = struct.unpack("<IIII", data[off:off + 16])[2]
        if off + 16 + caplen > len(data):
            break  # (a record the writer was stopped in the middle of)
        out.append(data[off + 16:off + 16 + caplen])
        off += 16 + caplen
    return out


def check(kind: str, out_path: str, in_path: str, key_hex: str) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key = bytes.fromhex(key_hex)
    # A client packet as the far end should see it: source address and port, payload (the destination is the
    # entry point's for ESP and the target's for dptun, which rewrites it).
    want = {}
    for fr in read_pcap(in_path):
        ip = fr[14:]
        if ip[16:20] != GATEWAY_IP:
            continue  # (a lead packet)
        want[(ip[12:16], ip[20:22])] = ip[28:]
    seen, bad, arp, good = set(), 0, 0, 0
    keys = {}
    for fr in read_pcap(out_path):
        ip = fr[14:]
        if fr[12:14] == b"\x08\x06":  # the gateway's own ARP (dpgw resolving the agent, answering it)
            arp += 1
            continue
        try:
            if fr[12:14] != b"\x08\x00" or ip[0] != 0x45:
                raise ValueError("not IPv4")
            if kind == "esp":
                if ip[9] != 50:
                    raise ValueError("not ESP")
                esp = ip[20:]
                aesgcm = AESGCM(key[:-4])
                plain = aesgcm.decrypt(key[-4:] + esp[8:16], esp[16:], esp[:8])
                pad_len, next_header = plain[-2], plain[-1]
                if next_header != 4:
                    raise ValueError("inner protocol %d" % next_header)
                inner = plain[:len(plain) - 2 - pad_len]
            else:
                if ip[9] != 17 or struct.unpack("!H", ip[22:24])[0] != 51900:
                    raise ValueError("not a relay frame to port 51900")
                frame = ip[28:]
                index, counter = struct.unpack("!IQ", frame[4:16])
                epoch = counter >> 32
                if (index, epoch) not in keys:
                    okm = HKDF(algorithm=hashes.SHA256(), length=20, salt=b"dptun relay v1",
                               info=b"dptun v1 g2a" + struct.pack("!IQ", index, epoch)).derive(key)
                    keys[(index, epoch)] = (AESGCM(okm[:16]), okm[16:])
                aesgcm, salt = keys[(index, epoch)]
                plain = aesgcm.decrypt(salt + struct.pack("!Q", counter), frame[16:], frame[:16])
                inner = plain[12:]
            src = (inner[12:16], inner[20:22])
            if want.get(src) != inner[28:]:
                raise ValueError("inner packet is no client's")
            seen.add(src)
            good += 1
        except Exception as e:  # noqa: BLE001 (a report, then exit 1)
            bad += 1
            if bad <= 3:
                print("check %s: %s: %s %s" % (kind, out_path, type(e).__name__, e), file=sys.stderr)
    print(json.dumps({"check": kind, "decrypted": good, "bad": bad, "arp": arp, "clients": len(want),
                      "clients_seen": len(seen)}))
    if bad or len(seen) != len(want):
        sys.exit(1)


def udp_sent(name: str, out_path: str, payloads, each):
    """Checks every packet of OUT_PATH (ARP aside) is IPv4/UDP with valid checksums and a payload of PAYLOADS, and
    passes each(ip, udp), which raises ValueError or returns what the packet stands for. Returns
    (good, bad, arp, the set of what each returned); reports the first bad packets on stderr."""
    seen, good, bad, arp = set(), 0, 0, 0
    for fr in read_pcap(out_path):
        ip = fr[14:]
        if fr[12:14] == b"\x08\x06":  # (a gateway resolving or answering a neighbour)
            arp += 1
            continue
        try:
            if fr[12:14] != b"\x08\x00" or ip[0] != 0x45 or ip[9] != 17:
                raise ValueError("not IPv4 UDP")
            if csum(ip[:20]) != 0:
                raise ValueError("bad IPv4 header checksum")
            udp = ip[20:struct.unpack("!H", ip[2:4])[0]]
            key = each(ip, udp)
            if csum(ip[12:20] + struct.pack("!BBH", 0, 17, len(udp)) + udp) != 0:
                raise ValueError("bad UDP checksum")
            if udp[8:] not in payloads:
                raise ValueError("payload is not one sent")
            seen.add(key)
            good += 1
        except Exception as e:  # noqa: BLE001 (a report, then exit 1)
            bad += 1
            if bad <= 3:
                print("%s: %s: %s %s" % (name, out_path, type(e).__name__, e), file=sys.stderr)
    return good, bad, arp, seen


def delivered(out_path: str, in_path: str) -> None:
    want = {}
    for fr in read_pcap(in_path):
        ip = fr[14:]
        if ip[16:20] == GATEWAY_IP:
            want[(ip[12:16], ip[20:22])] = ip[28:]

    def each(ip, udp):
        if ip[16:20] != AGENT_IP or udp[2:4] != struct.pack("!H", 5201):
            raise ValueError("not to the target 10.99.2.2:5201")
        sport = struct.unpack("!H", udp[0:2])[0]
        if ip[12:14] != bytes([100, 64]) or sport < 32768:
            raise ValueError("source %s:%d is not a translated one" % (socket.inet_ntoa(ip[12:16]), sport))
        return ip[12:16], udp[0:2]

    good, bad, arp, sources = udp_sent("delivered", out_path, set(want.values()), each)
    print(json.dumps({"check": "delivered", "delivered": good, "bad": bad, "arp": arp, "clients": len(want),
                      "sources": len(sources)}))
    if bad or not good or len(sources) != len(want):
        sys.exit(1)


def replies(out_path: str, delivered_path: str, size: int, repeat: int) -> None:
    answers = {}
    for fr in read_pcap(delivered_path):
        ip = fr[14:]
        if fr[12:14] != b"\x08\x00" or ip[12:14] != bytes([100, 64]):
            continue
        to, port = ip[12:16], struct.unpack("!H", ip[20:22])[0]
        answers[(to, port)] = udp_frame(size, fr[6:12], AGENT_MAC, AGENT_IP, 5201, to, port, reply_byte)
    if not answers:
        sys.exit("replies: %s holds no packet to a translated source" % delivered_path)
    write_pcap(out_path, [arp_request()] + list(answers.values()) * repeat)


def returned(out_path: str, replies_path: str) -> None:
    payloads = {fr[14 + 28:] for fr in read_pcap(replies_path) if fr[12:14] == b"\x08\x00"}
    clients = {client_addr(f) for f in range(256)}  # (the clients of `routed`)

    def each(ip, udp):
        if ip[12:16] != GATEWAY_IP or udp[0:2] != struct.pack("!H", 5201):
            raise ValueError("not from the entry point 10.99.1.1:5201")
        to = (ip[16:20], struct.unpack("!H", udp[2:4])[0])
        if to not in clients:
            raise ValueError("to %s:%d, no client" % (socket.inet_ntoa(to[0]), to[1]))
        return to

    good, bad, arp, reached = udp_sent("returned", out_path, payloads, each)
    print(json.dumps({"check": "returned", "returned": good, "bad": bad, "arp": arp, "clients": len(clients),
                      "reached": len(reached)}))
    if bad or not good or len(reached) != len(clients):
        sys.exit(1)


def runtime_dir(prefix: str) -> str:
    base = os.environ.get("RUNTIME_DIRECTORY") or ("/var/run/dpdk" if os.getuid() == 0 else
                                                  os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/tmp"), "dpdk"))
    return os.path.join(base, prefix)


class Telemetry:
    def __init__(self, prefix: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.connect(os.path.join(runtime_dir(prefix), "dpdk_telemetry.v2"))
        info = json.loads(self.sock.recv(4096).decode())
        self.max_len = int(info.get("max_output_len", 16384))

    def query(self, cmd: str):
        self.sock.send(cmd.encode())
        return json.loads(self.sock.recv(self.max_len).decode())

    def opackets(self, port: int) -> int:
        return int(self.query("/ethdev/stats,%d" % port)["/ethdev/stats"]["opackets"])


def connect(prefix: str, deadline: float) -> Telemetry:
    while True:
        try:
            return Telemetry(prefix)
        except OSError:
            if time.monotonic() > deadline:
                sys.exit("no telemetry socket for file prefix %s within 30 s" % prefix)
            time.sleep(0.2)


def rate(pairs, warmup: float, seconds: float) -> None:
    deadline = time.monotonic() + 30
    ports = [(connect(prefix, deadline), port) for prefix, port in pairs]
    for tel, port in ports:
        while tel.opackets(port) == 0:
            if time.monotonic() > deadline:
                sys.exit("port %d sent nothing within 30 s" % port)
            time.sleep(0.1)
    time.sleep(warmup)
    t0, c0 = time.monotonic(), [tel.opackets(port) for tel, port in ports]
    time.sleep(seconds)
    t1, c1 = time.monotonic(), [tel.opackets(port) for tel, port in ports]
    each = [(b - a) / (t1 - t0) / 1e6 for a, b in zip(c0, c1)]
    print(json.dumps({"packets": sum(c1) - sum(c0), "seconds": round(t1 - t0, 4), "mpps": sum(each),
                      "ports": each}))


def main() -> None:
    a = sys.argv[1:]
    if len(a) >= 3 and a[0] == "clients":
        flows = int(a[3]) if len(a) > 3 else 256
        repeat = int(a[4]) if len(a) > 4 else 1
        lead = int(a[5]) if len(a) > 5 else 0
        size = int(a[2])
        if not 64 <= size <= 1514:
            sys.exit("size must be 64..1514")
        write_pcap(a[1], [client_frame(64, 0, bytes([10, 98, 0, 1]))] * lead +
                   [client_frame(size, f) for f in range(flows)] * repeat)
    elif len(a) == 2 and a[0] == "arp":
        write_pcap(a[1], [arp_request()] * 3)
    elif len(a) == 4 and a[0] == "routed":
        write_pcap(a[1], [arp_request(CLIENT_MAC, ROUTER_IP, GATEWAY_IP)] +
                   [client_frame(int(a[2]), f) for f in range(256)] * int(a[3]))
    elif len(a) == 5 and a[0] == "replies":
        replies(a[1], a[2], int(a[3]), int(a[4]))
    elif len(a) == 3 and a[0] == "delivered":
        delivered(a[1], a[2])
    elif len(a) == 3 and a[0] == "returned":
        returned(a[1], a[2])
    elif len(a) == 5 and a[0] == "check" and a[1] in ("esp", "relay"):
        check(a[1], a[2], a[3], a[4])
    elif len(a) >= 5 and len(a) % 2 == 1 and a[0] == "rate":
        rate([(a[i], int(a[i + 1])) for i in range(1, len(a) - 2, 2)], float(a[-2]), float(a[-1]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
