#!/usr/bin/python3
"""Hostile clients of dpctld, for the control-plane tests (issue #8, item 12).

  hostile_control.py hold-tcp IP PORT COUNT SECONDS   COUNT connections that send nothing, held SECONDS
  hostile_control.py hold-unix PATH COUNT SECONDS     COUNT connections that send half a request, held SECONDS
  hostile_control.py bad-sni IP PORT COUNT            COUNT TLS ClientHellos whose server name holds bytes that are
                                                      not UTF-8 (and control characters); each connection is closed
                                                      after the server's answer
  hostile_control.py long-line IP PORT CA CERT KEY BYTES
                                                      one TLS connection with a client certificate that sends a
                                                      line of BYTES bytes ('x', then a newline) and reads what
                                                      comes back until the server closes
Each prints one JSON line: {"opened": n, "closed_by_server": n} (or {"sent": n}; long-line:
{"sent": n, "reply": "<what the server sent>", "closed_by_server": true|false}).
"""
import json
import os
import resource
import socket
import ssl
import struct
import sys
import time


def hold(socks, seconds):
    time.sleep(seconds)
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    return closed


def hold_tcp(ip, port, count, seconds):
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect((ip, port))
        except OSError:
            s.close()
            continue
        socks.append(s)
    print(json.dumps({"opened": len(socks)}), file=sys.stderr, flush=True)
    print(json.dumps({"opened": len(socks), "closed_by_server": hold(socks, seconds)}), flush=True)


def hold_unix(path, count, seconds):
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect(path)
            s.send(b'{"cmd": "sta')
        except OSError:
            s.close()
            continue
        socks.append(s)
    print(json.dumps({"opened": len(socks)}), file=sys.stderr, flush=True)
    print(json.dumps({"opened": len(socks), "closed_by_server": hold(socks, seconds)}), flush=True)


def client_hello(server_name):
    """A TLS 1.3 ClientHello (RFC 8446 section 4.1.2) naming `server_name` (raw bytes) in its SNI."""
    def ext(kind, body):
        return struct.pack("!HH", kind, len(body)) + body
    sni = struct.pack("!BH", 0, len(server_name)) + server_name
    exts = ext(0, struct.pack("!H", len(sni)) + sni)
    exts += ext(43, bytes([2, 3, 4]))                    # supported_versions: TLS 1.3
    exts += ext(10, struct.pack("!HH", 2, 0x001d))       # supported_groups: x25519
    exts += ext(13, struct.pack("!HH", 2, 0x0403))       # signature_algorithms: ecdsa_secp256r1_sha256
    key = os.urandom(32)
    exts += ext(51, struct.pack("!HHH", 36, 0x001d, 32) + key)  # key_share
    body = b"\x03\x03" + os.urandom(32) + b"\x20" + os.urandom(32)
    body += struct.pack("!H", 2) + b"\x13\x01" + b"\x01\x00" + struct.pack("!H", len(exts)) + exts
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def bad_sni(ip, port, count):
    names = [bytes([0x61, 0x80 + i % 0x7f, 0xff, 0xc3, 0x28, 0x01, 0x7f]) + b"\xed\xa0\x80.x" for i in range(count)]
    sent = 0
    for name in names:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect((ip, port))
            s.sendall(client_hello(name))
            try:
                s.recv(4096)
            except OSError:
                pass
            sent += 1
        except OSError:
            pass
        s.close()
    print(json.dumps({"sent": sent}), flush=True)


def long_line(ip, port, ca, cert, key, size):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    raw = socket.create_connection((ip, port), timeout=5)
    s = ctx.wrap_socket(raw, server_hostname="web")
    line = b"x" * size + b"\n"
    sent = 0
    try:
        while sent < len(line):
            sent += s.send(line[sent:sent + 16384])
    except OSError:
        pass  # the server stopped reading: it closed the connection
    reply = b""
    closed = False
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                closed = True
                break
            reply += chunk
    except socket.timeout:
        pass
    except (ssl.SSLError, OSError):
        closed = True
    s.close()
    print(json.dumps({"sent": sent, "reply": reply.decode("utf-8", "replace"), "closed_by_server": closed}), flush=True)


def main():
    cmd = sys.argv[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    if cmd == "hold-tcp":
        hold_tcp(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    elif cmd == "hold-unix":
        hold_unix(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif cmd == "bad-sni":
        bad_sni(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "long-line":
        long_line(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], int(sys.argv[7]))


if __name__ == "__main__":
    main()
