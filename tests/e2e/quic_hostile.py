#!/usr/bin/env python3
"""Hostile datagrams to dpgw's QUIC port (issue 11), from the agent's host, next to a live QUIC session.

usage: quic_hostile.py PCAP GATEWAY_IP PORT INDEX

PCAP holds short-header packets the agent sent (tcpdump -w); INDEX is its session's index at dpgw. Sends, each from
a socket of its own: truncated and garbage datagrams, short headers with the session's index and a wrong
connection-ID tail, the captured packets again (replays), the captured packets with one ciphertext bit flipped and
with the top packet-number byte flipped (neither authenticates), and long headers of garbage. Prints what it sent
as JSON: {"kind": count, ...}.
"""
import json
import os
import socket
import struct
import sys


def captured(path):
    """UDP payloads of the pcap's Ethernet/IPv4 frames (classic pcap, either byte order)."""
    data = open(path, "rb").read()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    off, out = 24, []
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
            continue
        ihl = (frame[14] & 15) * 4
        out.append(frame[14 + ihl + 8:])
    return out


def main():
    pcap, gw, port, index = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    packets = [p for p in captured(pcap) if len(p) >= 29 and p[0] & 0xC0 == 0x40]
    if not packets:
        sys.exit("no short-header packets in " + pcap)
    sent = {}

    def send(kind, payload):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(payload, (gw, port))
        s.close()
        sent[kind] = sent.get(kind, 0) + 1

    for n in (0, 1, 9, 20, 28):  # truncated: shorter than a short header with its sample
        send("truncated", bytes([0x40]) + os.urandom(max(n - 1, 0)))
    for _ in range(20):
        send("garbage", os.urandom(60))
    for _ in range(20):  # the session's index, another tail
        send("wrong_dcid", bytes([0x43]) + struct.pack(">I", index) + os.urandom(4) + os.urandom(40))
    for p in packets:
        send("replayed", p)
        flipped = bytearray(p)
        flipped[-1] ^= 0x01  # in the tag
        send("tampered", bytes(flipped))
        pn = bytearray(p)
        pn[9] ^= 0x80  # the protected packet number's top byte: another number, which does not open
        send("tampered_pn", bytes(pn))
    for _ in range(10):
        send("long_header", bytes([0xC0]) + b"\x00\x00\x00\x01" + os.urandom(60))
    print(json.dumps(sent))


if __name__ == "__main__":
    main()
