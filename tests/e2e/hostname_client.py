#!/usr/bin/python3
"""Clients for the hostname-routing edge cases (tests/e2e/test_hostname_edge.sh), with plain sockets (Nagle on,
as applications have it) so that dpgw meets the TCP behaviour of a real kernel. Each prints one JSON line.

  hostname_client.py pieces IP PORT GAP PIECE...   send the pieces (Python escapes: \\r\\n) GAP seconds apart,
                                                   then read the answer until the server closes
  hostname_client.py head IP PORT SIZE NAME        a GET for NAME whose head is SIZE bytes (Cookie lines of 3 kB)
  hostname_client.py tls IP PORT NAME GAP [ALPN_BYTES]
                                                   a TLS handshake whose ClientHello goes in 3 pieces GAP seconds
                                                   apart (ALPN_BYTES: a long ALPN list makes it that big), then
                                                   GET / over it
  hostname_client.py timestamps PCAP IP PORT [from|to]
                                                   per connection, the TSvals of segments from (to) IP:PORT in
                                                   the capture: {"connections", "segments", "went_back": [...]}

Answers: {"status": 200, "body": "...", "error": null}; status 0 when no HTTP answer came (error says why).
"""
import codecs
import json
import os
import socket
import ssl
import struct
import sys
import time

# A client that got no ACK for its first piece waits out its retransmission backoff: longer than this.
TIMEOUT = float(os.environ.get("HOSTNAME_CLIENT_TIMEOUT", "8"))


def read_answer(recv):
    data = b""
    error = None
    try:
        while True:
            chunk = recv()
            if not chunk:
                break
            data += chunk
    except (OSError, ssl.SSLError) as e:
        error = type(e).__name__ + ": " + str(e)
    status = 0
    body = ""
    if data.startswith(b"HTTP/1."):
        try:
            status = int(data.split(b" ", 2)[1])
        except ValueError:
            pass
        body = data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")
    return {"status": status, "body": body, "error": error, "bytes": len(data)}


def connect(ip, port):
    s = socket.create_connection((ip, port), timeout=TIMEOUT)
    s.settimeout(TIMEOUT)
    return s


def pieces(ip, port, gap, parts):
    s = connect(ip, port)
    start = time.monotonic()
    try:
        for i, p in enumerate(parts):
            if i:
                time.sleep(gap)
            s.sendall(codecs.decode(p, "unicode_escape").encode("latin-1"))
        out = read_answer(lambda: s.recv(65536))
    except OSError as e:
        out = {"status": 0, "body": "", "error": type(e).__name__ + ": " + str(e)}
    out["seconds"] = round(time.monotonic() - start, 3)
    return out


def head(ip, port, size, name):
    start = "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n" % name
    lines = []
    left = size - len(start) - 2
    i = 0
    while left > 0:
        n = min(3000, left)
        prefix = "Cookie: c%d=" % i
        if n < len(prefix) + 3:  # too short for a cookie line: pad the last one instead
            lines[-1] = lines[-1][:-2] + "x" * n + "\r\n"
            break
        lines.append(prefix + "v" * (n - len(prefix) - 2) + "\r\n")
        left -= n
        i += 1
    req = (start + "".join(lines) + "\r\n").encode()
    assert len(req) == size, (len(req), size)
    s = connect(ip, port)
    try:
        s.sendall(req)
        out = read_answer(lambda: s.recv(65536))
    except OSError as e:
        out = {"status": 0, "body": "", "error": type(e).__name__ + ": " + str(e)}
    out["sent"] = len(req)
    return out


def tls(ip, port, name, gap, alpn_bytes=0):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn_bytes:
        protos = []
        while sum(len(p) + 1 for p in protos) < alpn_bytes:
            protos.append("proto-%04d-" % len(protos) + "x" * 200)
        ctx.set_alpn_protocols(protos + ["http/1.1"])
    inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, outg, server_hostname=name)
    s = connect(ip, port)
    hello_size = 0

    try:
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = outg.read()
        hello_size = len(hello)
        third = max(1, len(hello) // 3)
        for i, part in enumerate([hello[:third], hello[third:2 * third], hello[2 * third:]]):
            if i:
                time.sleep(gap)
            s.sendall(part)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            inc.write(chunk)
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                data = outg.read()
                if data:
                    s.sendall(data)
        data = outg.read()
        if data:
            s.sendall(data)
        obj.write(("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % name).encode())
        s.sendall(outg.read())

        def recv():
            while True:
                try:
                    return obj.read(65536)
                except ssl.SSLWantReadError:
                    chunk = s.recv(65536)
                    if not chunk:
                        return b""
                    inc.write(chunk)
                except ssl.SSLZeroReturnError:
                    return b""

        out = read_answer(recv)
    except (OSError, ssl.SSLError) as e:
        out = {"status": 0, "body": "", "error": type(e).__name__ + ": " + str(e)}
    out["hello"] = hello_size
    return out


def timestamps(path, ip, port, direction="from"):
    """TSvals of the segments IP:PORT sent ("from") or was sent ("to"), per connection, in capture order: any that
    went back (a peer's PAWS check would drop them). A SYN or SYN-ACK starts a connection's record."""
    want = socket.inet_aton(ip)
    conns = {}
    segments = 0
    with open(path, "rb") as f:
        header = f.read(24)
        endian = "<" if header[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        linktype = struct.unpack(endian + "I", header[20:24])[0]
        # Where the IP packet starts and where its EtherType is: Ethernet, Linux cooked v1 or v2 (-i any).
        l2, ethertype_at = {1: (14, 12), 113: (16, 14), 276: (20, 0)}.get(linktype, (14, 12))
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                break
            _, _, incl, _ = struct.unpack(endian + "IIII", rec)
            pkt = f.read(incl)
            if len(pkt) < l2 + 20 or pkt[ethertype_at:ethertype_at + 2] != b"\x08\x00":
                continue
            ip_hdr = pkt[l2:]
            ihl = (ip_hdr[0] & 15) * 4
            if ip_hdr[9] != 6:
                continue
            tcp = ip_hdr[ihl:]
            sport, dport = struct.unpack("!HH", tcp[:4])
            if direction == "from":
                if ip_hdr[12:16] != want or sport != port:
                    continue
                key = (socket.inet_ntoa(ip_hdr[16:20]), dport)
            else:
                if ip_hdr[16:20] != want or dport != port:
                    continue
                key = (socket.inet_ntoa(ip_hdr[12:16]), sport)
            flags = tcp[13]
            off = (tcp[12] >> 4) * 4
            i, tsval = 20, None
            while i < off:
                kind = tcp[i]
                if kind == 0:
                    break
                if kind == 1:
                    i += 1
                    continue
                length = tcp[i + 1]
                if length < 2:
                    break
                if kind == 8 and length == 10:
                    tsval = struct.unpack("!I", tcp[i + 2:i + 6])[0]
                i += length
            if tsval is None:
                continue  # (RSTs carry none)
            if flags & 0x02:
                conns[key] = {"last": tsval, "n": 1, "went_back": []}
                segments += 1
                continue
            c = conns.get(key)
            if c is None:
                continue
            segments += 1
            c["n"] += 1
            if ((tsval - c["last"]) & 0xffffffff) >= 0x80000000:
                c["went_back"].append({"port": key[1], "segment": c["n"], "from": c["last"], "to": tsval})
            else:
                c["last"] = tsval
    back = [b for c in conns.values() for b in c["went_back"]]
    return {"connections": len(conns), "segments": segments, "went_back": back[:10], "went_back_count": len(back)}


def main():
    cmd = sys.argv[1]
    if cmd == "pieces":
        out = pieces(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:])
    elif cmd == "head":
        out = head(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif cmd == "tls":
        out = tls(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]),
                  int(sys.argv[6]) if len(sys.argv) > 6 else 0)
    elif cmd == "timestamps":
        out = timestamps(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else "from")
    else:
        sys.exit("unknown command " + cmd)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
