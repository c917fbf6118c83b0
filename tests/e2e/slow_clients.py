#!/usr/bin/python3
"""Slow clients for the hostname tests: COUNT TCP connections that each send one byte of a request and then
nothing, held open for SECONDS (what a slowloris attack does to a proxy that reads the request first).

  slow_clients.py DST_IP PORT COUNT SECONDS -> JSON {"connected": n, "reset": n}

"reset": connections the server gave up on (RST or close) while they were held.
"""
import json
import resource
import socket
import sys
import time


def main():
    dst, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    resource.setrlimit(resource.RLIMIT_NOFILE, (count + 64, count + 64))
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect((dst, port))
            s.send(b"G")
        except OSError:
            s.close()
            continue
        socks.append(s)
    print(json.dumps({"opened": len(socks)}), file=sys.stderr, flush=True)
    time.sleep(seconds)
    reset = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                reset += 1
        except BlockingIOError:
            pass
        except OSError:
            reset += 1
        s.close()
    print(json.dumps({"connected": len(socks), "reset": reset}), flush=True)


if __name__ == "__main__":
    main()
