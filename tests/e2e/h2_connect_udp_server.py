#!/usr/bin/python3
"""A small CONNECT-UDP over HTTP/2 server (RFC 9298 3.4 with RFC 8441 extended CONNECT, RFC 9297 capsules) written
for test_masque_h2_client.sh with python3-h2 (an implementation independent of nghttp2): TLS 1.3 with a client
certificate and ALPN h2; SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 in its first SETTINGS; extended CONNECT to --target
answered 200 with capsule-protocol: ?1, and each DATAGRAM capsule (context ID 0) echoed back as a DATAGRAM capsule
whose payload is b"echo:" + the payload; any other target answered 404 with a Proxy-Status. One line per event on
stdout (REQUEST ..., ANSWER ..., DATAGRAM ...). usage: h2_connect_udp_server.py --listen IP:PORT --cert F --key F
--ca F --target NAME:PORT"""
import argparse
import socket
import ssl
import sys
import threading

import h2.config
import h2.connection
import h2.events
import h2.settings


def log(*a):
    print(*a, flush=True)


def read_varint(buf, i):
    """(value, next index) of the QUIC varint (RFC 9000 16) at buf[i], or None when cut short."""
    if i >= len(buf):
        return None
    n = 1 << (buf[i] >> 6)
    if i + n > len(buf):
        return None
    v = buf[i] & 0x3F
    for b in buf[i + 1:i + n]:
        v = (v << 8) | b
    return v, i + n


def varint(v):
    if v < 64:
        return bytes([v])
    if v < 16384:
        return (v | 0x4000).to_bytes(2, "big")
    return (v | 0x80000000).to_bytes(4, "big")


def serve(sock, target_path):
    config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
    conn = h2.connection.H2Connection(config=config)
    # In the first SETTINGS: a client must not send extended CONNECT before it (RFC 8441 3).
    conn.local_settings = h2.settings.Settings(client=False, initial_values={
        h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
        h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,
    })
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    buffers = {}  # stream id -> capsule bytes not yet read
    open_streams = set()
    while True:
        try:
            data = sock.recv(65536)
        except (ssl.SSLError, OSError) as e:
            log("CLOSED", type(e).__name__, e)
            return
        if not data:
            log("CLOSED eof")
            return
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                h = dict(ev.headers)
                log("REQUEST", " ".join(f"{k}={v}" for k, v in ev.headers))
                ok = (h.get(":method") == "CONNECT" and h.get(":protocol") == "connect-udp"
                      and h.get(":scheme") == "https" and h.get("capsule-protocol") == "?1")
                if ok and h.get(":path") == target_path:
                    conn.send_headers(ev.stream_id, [(":status", "200"), ("capsule-protocol", "?1")])
                    open_streams.add(ev.stream_id)
                    buffers[ev.stream_id] = b""
                    log("ANSWER 200 stream", ev.stream_id)
                else:
                    conn.send_headers(ev.stream_id, [
                        (":status", "404"),
                        ("proxy-status", 'h2test; error=destination_not_found; details="no route serves '
                         + h.get(":path", "?") + '"')], end_stream=True)
                    log("ANSWER 404 stream", ev.stream_id)
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if ev.stream_id not in open_streams:
                    continue
                buf = buffers[ev.stream_id] + ev.data
                i = 0
                while True:
                    t = read_varint(buf, i)
                    if t is None:
                        break
                    ln = read_varint(buf, t[1])
                    if ln is None or ln[1] + ln[0] > len(buf):
                        break
                    value = buf[ln[1]:ln[1] + ln[0]]
                    i = ln[1] + ln[0]
                    if t[0] != 0:
                        log("CAPSULE type", t[0], "skipped")
                        continue
                    ctx = read_varint(value, 0)
                    if ctx is None or ctx[0] != 0:
                        log("DATAGRAM bad context")
                        continue
                    payload = value[ctx[1]:]
                    log("DATAGRAM", len(payload), "bytes on stream", ev.stream_id)
                    reply = b"\x00" + b"echo:" + payload  # context ID 0, then the payload
                    conn.send_data(ev.stream_id, b"\x00" + varint(len(reply)) + reply)
                buffers[ev.stream_id] = buf[i:]
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                open_streams.discard(ev.stream_id)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                log("GOAWAY", ev.error_code)
        out = conn.data_to_send()
        if out:
            sock.sendall(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--target", required=True)
    a = p.parse_args()
    host, port = a.listen.rsplit(":", 1)
    thost, tport = a.target.rsplit(":", 1)
    target_path = f"/.well-known/masque/udp/{thost}/{tport}/"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(a.cert, a.key)
    ctx.load_verify_locations(a.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2"])
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, int(port)))
    ls.listen(16)
    log("LISTENING", a.listen, "target", target_path)
    while True:
        raw, peer = ls.accept()
        try:
            s = ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log("TLS FAILED", peer, e)
            raw.close()
            continue
        log("CONNECTION", peer, "alpn", s.selected_alpn_protocol(),
            "client", dict(x[0] for x in s.getpeercert()["subject"]).get("commonName"))
        threading.Thread(target=serve, args=(s, target_path), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
