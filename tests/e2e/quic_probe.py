#!/usr/bin/python3
"""QUIC probe for the hostname tests: a client whose ClientHello spans two Initials, with the server name only in
the second (as a browser's with a post-quantum key share and scattered pieces can be), then reads what the server
answers.

  quic_probe.py DST_IP PORT NAME in-order|reversed|first-only|late-second:S|restart|hold-flood:N SECONDS

late-second:S sends the second Initial S seconds after the first. restart sends the first Initial of one
connection, then both of another from the same port (a client that started over). hold-flood:N sends only the first Initial of N
connections, each from its own port, and does not wait.

The ClientHello is deliberately not one a TLS 1.3 server can accept (no key share): a real QUIC server that got
all of it answers with a CONNECTION_CLOSE carrying a TLS alert (error 0x100 + alert), which this probe decrypts
with the server's Initial keys (RFC 9001 5.2). One that got only a part of it has nothing to refuse yet.
A server may instead answer a first datagram that does not start the ClientHello with a Retry ("retry").
Prints JSON: {"sent": n, "replies": n, "close_error": code, "retry" or null}.
"""
import hashlib
import hmac
import json
import os
import socket
import struct
import sys
import time

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

INITIAL_SALT = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")


def expand_label(secret, label, length):
    info = struct.pack("!HB", length, 6 + len(label)) + b"tls13 " + label.encode() + b"\x00"
    return hmac.new(secret, info + b"\x01", hashlib.sha256).digest()[:length]


def initial_keys(dcid, side):
    initial = hmac.new(INITIAL_SALT, dcid, hashlib.sha256).digest()
    secret = expand_label(initial, side + " in", 32)
    return expand_label(secret, "quic key", 16), expand_label(secret, "quic iv", 12), expand_label(secret, "quic hp", 16)


def hp_mask(hp, sample):
    enc = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    return enc.update(sample) + enc.finalize()


def varint(v):
    if v < 64:
        return bytes([v])
    if v < 16384:
        return struct.pack("!H", 0x4000 | v)
    return struct.pack("!I", 0x80000000 | v)


def read_varint(b, i):
    n = 1 << (b[i] >> 6)
    v = b[i] & 0x3F
    for k in range(1, n):
        v = v << 8 | b[i + k]
    return v, i + n


def client_hello(name):
    """A ClientHello whose padding extension comes first, so the server_name extension is ~1.2 kB in."""
    sni = name.encode()
    server_name = struct.pack("!HHHBH", 0, len(sni) + 5, len(sni) + 3, 0, len(sni)) + sni
    padding = struct.pack("!HH", 21, 1300) + bytes(1300)
    alpn = struct.pack("!HHHB", 16, 5, 3, 2) + b"h3"
    exts = padding + server_name + alpn
    body = b"\x03\x03" + os.urandom(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + struct.pack("!H", len(exts)) + exts
    return b"\x01" + struct.pack("!I", len(body))[1:] + body


def initial(dcid, scid, pn, payload):
    key, iv, hp = initial_keys(dcid, "client")
    head = bytes([0xC3]) + struct.pack("!I", 1) + bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid + b"\x00"
    fixed = len(head) + 2 + 4 + 16
    if len(payload) + fixed < 1200:
        payload += bytes(1200 - fixed - len(payload))  # PADDING frames
    head += struct.pack("!H", 0x4000 | (4 + len(payload) + 16))
    pn_offset = len(head)
    head += struct.pack("!I", pn)
    nonce = bytes(a ^ b for a, b in zip(iv, bytes(8) + struct.pack("!I", pn)))
    packet = bytearray(head + AESGCM(key).encrypt(nonce, payload, head))
    mask = hp_mask(hp, bytes(packet[pn_offset + 4:pn_offset + 20]))
    packet[0] ^= mask[0] & 0x0F
    for k in range(4):
        packet[pn_offset + k] ^= mask[1 + k]
    return bytes(packet)


def close_error(datagram, dcid):
    """The error code of a CONNECTION_CLOSE in the server's Initial packets of `datagram` ("retry" for a Retry
    packet), or None."""
    key, iv, hp = initial_keys(dcid, "server")
    i = 0
    while i + 7 < len(datagram) and datagram[i] & 0x80:
        first = datagram[i]
        j = i + 5
        j += 1 + datagram[j]  # destination connection id
        j += 1 + datagram[j]  # source connection id
        ptype = (first >> 4) & 3
        if ptype == 3:
            return "retry"  # the server wants the client's address validated first (RFC 9000 8.1.2)
        if ptype == 0:
            tlen, j = read_varint(datagram, j)
            j += tlen
        length, j = read_varint(datagram, j)
        end = j + length
        if ptype == 0:
            pkt = bytearray(datagram[i:end])
            pn_offset = j - i
            mask = hp_mask(hp, bytes(pkt[pn_offset + 4:pn_offset + 20]))
            pkt[0] ^= mask[0] & 0x0F
            pn_len = (pkt[0] & 3) + 1
            pn = 0
            for k in range(pn_len):
                pkt[pn_offset + k] ^= mask[1 + k]
                pn = pn << 8 | pkt[pn_offset + k]
            hdr = bytes(pkt[:pn_offset + pn_len])
            nonce = bytes(a ^ b for a, b in zip(iv, bytes(4) + struct.pack("!Q", pn)))
            try:
                plain = AESGCM(key).decrypt(nonce, bytes(pkt[pn_offset + pn_len:]), hdr)
            except Exception:
                plain = b""
            f = 0
            while f < len(plain):
                t, f = read_varint(plain, f)
                if t in (0, 1):
                    continue
                if t in (2, 3):
                    _, f = read_varint(plain, f)
                    _, f = read_varint(plain, f)
                    ranges, f = read_varint(plain, f)
                    _, f = read_varint(plain, f)
                    for _ in range(2 * ranges + (3 if t == 3 else 0)):
                        _, f = read_varint(plain, f)
                    continue
                if t == 6:
                    _, f = read_varint(plain, f)
                    n, f = read_varint(plain, f)
                    f += n
                    continue
                if t == 0x1C:
                    code, f = read_varint(plain, f)
                    return code
                break
        i = end
    return None


def main():
    dst, port, name, order, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
    hello = client_hello(name)
    cut = hello.index(name.encode()) - 64  # the server name is in the second part only
    assert cut > 900
    dcid, scid = os.urandom(8), os.urandom(8)
    first = initial(dcid, scid, 0, b"\x06" + varint(0) + varint(cut) + hello[:cut])
    second = initial(dcid, scid, 1, b"\x06" + varint(cut) + varint(len(hello) - cut) + hello[cut:])
    if order.startswith("hold-flood:"):
        n = int(order.split(":")[1])
        for _ in range(n):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as f:
                f.sendto(initial(os.urandom(8), scid, 0, b"\x06" + varint(0) + varint(cut) + hello[:cut]), (dst, port))
        print(json.dumps({"sent": n}), flush=True)
        return
    gap = 0.05
    if order.startswith("late-second:"):
        order, gap = "in-order", float(order.split(":")[1])
    abandoned = initial(os.urandom(8), os.urandom(8), 0, b"\x06" + varint(0) + varint(cut) + hello[:cut])
    packets = {"in-order": [first, second], "reversed": [second, first], "first-only": [first],
               "restart": [abandoned, first, second]}[order]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    for k, p in enumerate(packets):
        if k:
            time.sleep(gap)
        s.sendto(p, (dst, port))
    replies, code = 0, None
    end = time.time() + seconds
    while time.time() < end and code is None:
        try:
            data, _ = s.recvfrom(65535)
        except socket.timeout:
            continue
        replies += 1
        code = close_error(data, dcid)
    print(json.dumps({"sent": len(packets), "replies": replies, "close_error": code}), flush=True)


if __name__ == "__main__":
    main()
