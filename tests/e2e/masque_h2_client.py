#!/usr/bin/python3
"""A CONNECT-UDP client over HTTP/2 (python3-h2, an implementation independent of dptun) or HTTP/1.1 (a plain TLS
socket and the Upgrade request, RFC 9298 3.2), with DATAGRAM capsules on the request stream (RFC 9297 3.5).

Run it with Debian's /usr/bin/python3 (python3-h2 4.1.0). Modes:
  send     the request, then --count datagrams of --size bytes; prints the answer and every reply
           ("reply N BYTES"), then "received M" (and "reset CODE" / "closed" when dpctld ended the stream within
           --wait); exit 0 when the answer was 2xx (101 over HTTP/1.1)
  refusal  the request; prints "status NNN" and "proxy-status ..." and exit 0 when the answer was not 2xx
  hostile  after a 2xx: a DATAGRAM capsule over 64 KiB, one with context ID 7, a capsule of an unknown type, a
           good datagram, then a malformed DATAGRAM capsule (no context ID); prints what the stream did
           ("reset CODE", "closed"); exit 0 when the good datagram went out and the stream ended
  slow     TLS, then half a request (HTTP/1.1: a head without its end; HTTP/2: the preface and a SETTINGS frame),
           and waits; prints "closed after S s" when dpctld closes the connection (exit 0), "open" otherwise (1)
  limit    HTTP/2: --count CONNECT-UDP streams on one connection; prints the status of each
Examples:
  masque_h2_client.py --connect 127.0.0.1:8443 --cert c.pem --key c.key --ca ca.pem --target dns.corp.test:53 \\
      --mode send --count 3
  masque_h2_client.py ... --http1 --mode refusal --target nowhere.test:53
"""
import argparse
import socket
import ssl
import sys
import time
import urllib.parse


def varint(v):
    if v < 64:
        return bytes([v])
    if v < 16384:
        return (0x4000 | v).to_bytes(2, "big")
    if v < 1 << 30:
        return (0x80000000 | v).to_bytes(4, "big")
    return (0xC000000000000000 | v).to_bytes(8, "big")


def read_varint(b, i):
    if i >= len(b):
        return None, i
    n = 1 << (b[i] >> 6)
    if i + n > len(b):
        return None, i
    v = b[i] & 0x3F
    for k in range(1, n):
        v = (v << 8) | b[i + k]
    return v, i + n


def capsule(ctype, value):
    return varint(ctype) + varint(len(value)) + value


def datagram(payload, context=0):
    return capsule(0, varint(context) + payload)


class CapsuleParser:
    """DATAGRAM capsules from the stream's bytes (any split)."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data
        out = []
        while True:
            t, i = read_varint(self.buf, 0)
            if t is None:
                break
            length, j = read_varint(self.buf, i)
            if length is None or j + length > len(self.buf):
                break
            value = self.buf[j:j + length]
            self.buf = self.buf[j + length:]
            if t == 0:
                ctx, k = read_varint(value, 0)
                if ctx == 0:
                    out.append(value[k:])
        return out


def target_path(host, port):
    return "/.well-known/masque/udp/%s/%s/" % (urllib.parse.quote(host, safe=""), port)


def tls_socket(args, alpn):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(args.cert, args.key)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    host, port = args.connect.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=args.timeout)
    s = ctx.wrap_socket(raw, server_hostname=args.server_name)
    return s


def payloads(args):
    return [(b"dptun-%d-" % i).ljust(args.size, b"x")[: max(args.size, 1)] for i in range(args.count)]


# ------------------------------------------------------------------------------------------------------ HTTP/2

class H2Client:
    def __init__(self, args):
        import h2.config
        import h2.connection
        import h2.events
        import h2.settings

        self.h2ev = h2.events
        self.args = args
        self.sock = tls_socket(args, ["h2"])
        if self.sock.selected_alpn_protocol() != "h2":
            raise SystemExit("ALPN: the server chose %r, not h2" % self.sock.selected_alpn_protocol())
        self.conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()
        self.connect_protocol = False
        self.streams = {}
        deadline = time.time() + args.timeout
        while not self.connect_protocol and time.time() < deadline:
            if not self.read_events(deadline - time.time()):
                break
        if not self.connect_protocol:
            raise SystemExit("the server's SETTINGS lack SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 3)")

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def stream(self, sid):
        return self.streams.setdefault(sid, {"headers": None, "data": b"", "reset": None, "ended": False,
                                             "parser": CapsuleParser(), "replies": []})

    def read_events(self, timeout):
        self.sock.settimeout(max(timeout, 0.01))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return True
        except (ConnectionError, ssl.SSLError):
            return False
        if not data:
            return False
        for ev in self.conn.receive_data(data):
            if isinstance(ev, self.h2ev.RemoteSettingsChanged):
                import h2.settings
                if self.conn.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL, 0) == 1:
                    self.connect_protocol = True
            elif isinstance(ev, self.h2ev.ResponseReceived):
                self.stream(ev.stream_id)["headers"] = dict(ev.headers)
            elif isinstance(ev, self.h2ev.DataReceived):
                st = self.stream(ev.stream_id)
                st["replies"] += st["parser"].feed(ev.data)
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, self.h2ev.StreamReset):
                self.stream(ev.stream_id)["reset"] = int(ev.error_code)
            elif isinstance(ev, self.h2ev.StreamEnded):
                self.stream(ev.stream_id)["ended"] = True
            elif isinstance(ev, self.h2ev.ConnectionTerminated):
                self.flush()
                return False
        self.flush()
        return True

    def request(self, host, port):
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", "CONNECT"), (":protocol", "connect-udp"), (":scheme", "https"),
                   (":authority", self.args.authority), (":path", target_path(host, port)), ("capsule-protocol", "?1")]
        self.conn.send_headers(sid, headers, end_stream=False)
        self.flush()
        st = self.stream(sid)
        deadline = time.time() + self.args.timeout
        while st["headers"] is None and st["reset"] is None and time.time() < deadline:
            if not self.read_events(deadline - time.time()):
                break
        return sid

    def send(self, sid, data):
        while data:
            window = self.conn.local_flow_control_window(sid)
            n = min(len(data), window, self.conn.max_outbound_frame_size)
            if n <= 0:
                self.read_events(0.2)
                continue
            self.conn.send_data(sid, data[:n])
            data = data[n:]
            self.flush()

    def wait(self, seconds, until=lambda: False):
        deadline = time.time() + seconds
        while time.time() < deadline and not until():
            if not self.read_events(deadline - time.time()):
                return False
        return True


# ------------------------------------------------------------------------------------------------------ HTTP/1.1

class H1Client:
    def __init__(self, args):
        self.args = args
        self.sock = tls_socket(args, ["http/1.1"] if not args.no_alpn else None)
        self.rest = b""
        self.parser = CapsuleParser()
        self.replies = []
        self.closed = False

    def request(self, host, port):
        req = ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n\r\n"
               % (target_path(host, port), self.args.authority)).encode()
        self.sock.sendall(req)
        head = b""
        deadline = time.time() + self.args.timeout
        while b"\r\n\r\n" not in head and time.time() < deadline:
            self.sock.settimeout(max(deadline - time.time(), 0.01))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            if not data:
                break
            head += data
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        self.replies += self.parser.feed(rest)
        return status, headers

    def wait(self, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            self.sock.settimeout(max(deadline - time.time(), 0.01))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return
            except (ConnectionError, ssl.SSLError):
                self.closed = True
                return
            if not data:
                self.closed = True
                return
            self.replies += self.parser.feed(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connect", required=True, help="dpctld's masque_tcp_listen, IP:PORT")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--server-name", default="dpctld.test", help="the name dpctld's certificate carries")
    ap.add_argument("--authority", default="gw.corp.test", help=":authority / Host")
    ap.add_argument("--target", default="dns.corp.test:53", help="HOST:PORT of the udp+https route")
    ap.add_argument("--mode", choices=["send", "refusal", "hostile", "slow", "limit", "goaway"], default="send")
    ap.add_argument("--count", type=int, default=3)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--wait", type=float, default=2.0, help="seconds to wait for replies (send) or a close (slow)")
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--http1", action="store_true", help="HTTP/1.1 Upgrade: connect-udp instead of HTTP/2")
    ap.add_argument("--no-alpn", action="store_true", help="HTTP/1.1 without ALPN")
    args = ap.parse_args()
    host, port = args.target.rsplit(":", 1)

    if args.mode == "slow":
        start = time.time()
        s = tls_socket(args, ["http/1.1"] if args.http1 else ["h2"])
        if args.http1:
            s.sendall(b"GET /.well-known/masque/udp/%s/%s/ HTTP/1.1\r\nHost: " % (host.encode(), port.encode()))
        else:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
        s.settimeout(0.5)
        while time.time() - start < args.wait:
            try:
                data = s.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionError, ssl.SSLError):
                data = b""
            if not data:
                print("closed after %.1f s" % (time.time() - start))
                return 0
        print("open")
        return 1

    if args.http1:
        c = H1Client(args)
        status, headers = c.request(host, port)
        print("status %d" % status)
        if "proxy-status" in headers:
            print("proxy-status %s" % headers["proxy-status"])
        for k in ("connection", "upgrade", "capsule-protocol"):
            if k in headers:
                print("%s %s" % (k, headers[k]))
        if args.mode == "refusal":
            return 0 if status >= 300 else 1
        if status != 101:
            return 1
        if args.mode == "send":
            for p in payloads(args):
                c.sock.sendall(datagram(p))
            c.wait(args.wait)
            for i, r in enumerate(c.replies):
                print("reply %d %s" % (i, r[:64].decode("latin-1")))
            print("received %d" % len(c.replies))
            if c.closed:
                print("closed")
            return 0
        if args.mode == "hostile":
            c.sock.sendall(datagram(b"y" * 70000) + datagram(b"ctx", context=7) + capsule(0x2A, b"unknown") +
                           datagram(b"good") + capsule(0, b""))
            c.wait(args.wait)
            print("closed" if c.closed else "open")
            return 0 if c.closed else 1
        return 1

    c = H2Client(args)
    if args.mode == "goaway":
        # --count tunnels, then a connection error (a DATA frame on stream 0, RFC 9113 6.1): the server's GOAWAY and
        # close must end every tunnel of the connection (dpctld removes their sessions).
        for _ in range(args.count):
            sid = c.request(host, port)
            print("stream %d status %s" % (sid, (c.stream(sid)["headers"] or {}).get(":status", "none")))
        time.sleep(args.wait)
        c.sock.sendall(bytes(9))
        print("closed" if not c.wait(args.timeout) else "open")
        return 0
    if args.mode == "limit":
        for _ in range(args.count):
            sid = c.request(host, port)
            st = c.stream(sid)
            print("stream %d status %s" % (sid, (st["headers"] or {}).get(":status", "reset %s" % st["reset"])))
        return 0
    sid = c.request(host, port)
    st = c.stream(sid)
    if st["headers"] is None:
        print("no answer (reset %s)" % st["reset"])
        return 1
    status = int(st["headers"].get(":status", "0"))
    print("status %d" % status)
    for k in ("proxy-status", "capsule-protocol"):
        if k in st["headers"]:
            print("%s %s" % (k, st["headers"][k]))
    if args.mode == "refusal":
        return 0 if status >= 300 else 1
    if not 200 <= status < 300:
        return 1
    if args.mode == "send":
        for p in payloads(args):
            c.send(sid, datagram(p))
        c.wait(args.wait, until=lambda: len(st["replies"]) >= args.count or st["reset"] is not None)
        for i, r in enumerate(st["replies"]):
            print("reply %d %s" % (i, r[:64].decode("latin-1")))
        print("received %d" % len(st["replies"]))
        if st["reset"] is not None:
            print("reset %d" % st["reset"])
        sys.stdout.flush()
        return 0
    if args.mode == "hostile":
        c.send(sid, datagram(b"y" * 70000) + datagram(b"ctx", context=7) + capsule(0x2A, b"unknown") + datagram(b"good"))
        c.send(sid, capsule(0, b""))
        c.wait(args.wait, until=lambda: st["reset"] is not None or st["ended"])
        if st["reset"] is not None:
            print("reset %d" % st["reset"])
        elif st["ended"]:
            print("ended")
        else:
            print("open")
        # The connection still serves: a second request on it.
        sid2 = c.request(host, port)
        print("after: status %s" % (c.stream(sid2)["headers"] or {}).get(":status", "none"))
        return 0 if st["reset"] is not None else 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
