#!/usr/bin/env python3
"""Byte-exact transfers for the end-to-end tests (TCP both ways, UDP datagrams), each side checking what it got.

  stream_check.py tcp-sink   IP PORT              accept once; read to EOF; send back the SHA-256 of what came
  stream_check.py tcp-source IP PORT BYTES SEED   accept once; send BYTES of seeded random data; close
  stream_check.py tcp-put    IP PORT BYTES SEED   connect; send the data; print {"sent", "sha256", "echoed"}
  stream_check.py tcp-get    IP PORT BYTES SEED   connect; read to EOF; print {"received", "ok"}
  stream_check.py udp-sink   IP PORT SECONDS      count datagrams until SECONDS of silence after the first;
                                                  print {"datagrams", "bad"} (bad: content not what its number says)
  stream_check.py udp-send   IP PORT COUNT SIZE   send COUNT datagrams of SIZE bytes: a number, then bytes derived
                                                  from it, in bursts (so that segments of one flow arrive together)
Everything is bounded in time (sockets time out after 20 s)."""
import hashlib
import json
import random
import socket
import sys
import time


def data(nbytes, seed):
    rng = random.Random(seed)
    return rng.randbytes(nbytes)


def accept(ip, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(1)
    s.settimeout(20)
    c, _ = s.accept()
    c.settimeout(20)
    return c


def connect(ip, port):
    c = socket.create_connection((ip, port), timeout=20)
    c.settimeout(20)
    return c


def payload(n, size):
    head = n.to_bytes(4, "big")
    body = hashlib.sha256(head).digest() * (size // 32 + 1)
    return head + body[: size - 4]


def main():
    mode, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "tcp-sink":
        c = accept(ip, port)
        h = hashlib.sha256()
        while True:
            b = c.recv(1 << 16)
            if not b:
                break
            h.update(b)
        c.sendall(h.hexdigest().encode())
        c.close()
    elif mode == "tcp-source":
        c = accept(ip, port)
        c.sendall(data(int(sys.argv[4]), int(sys.argv[5])))
        c.close()
    elif mode == "tcp-put":
        blob = data(int(sys.argv[4]), int(sys.argv[5]))
        c = connect(ip, port)
        c.sendall(blob)
        c.shutdown(socket.SHUT_WR)
        echoed = b""
        while True:
            b = c.recv(100)
            if not b:
                break
            echoed += b
        print(json.dumps({"sent": len(blob), "sha256": hashlib.sha256(blob).hexdigest(), "echoed": echoed.decode()}))
    elif mode == "tcp-get":
        want = data(int(sys.argv[4]), int(sys.argv[5]))
        c = connect(ip, port)
        got = bytearray()
        while True:
            b = c.recv(1 << 16)
            if not b:
                break
            got += b
        print(json.dumps({"received": len(got), "ok": bytes(got) == want}))
    elif mode == "udp-sink":
        quiet = float(sys.argv[4])
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((ip, port))
        s.settimeout(20)
        count = bad = 0
        while True:
            try:
                b = s.recv(65535)
            except socket.timeout:
                break
            count += 1
            if len(b) < 4 or b != payload(int.from_bytes(b[:4], "big"), len(b)):
                bad += 1
            s.settimeout(quiet)
        print(json.dumps({"datagrams": count, "bad": bad}))
    elif mode == "udp-send":
        count, size = int(sys.argv[4]), int(sys.argv[5])
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((ip, port))
        for n in range(count):
            s.send(payload(n, size))
            if n % 32 == 31:
                time.sleep(0.002)
        print(json.dumps({"sent": count}))


main()
