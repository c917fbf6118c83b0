#!/usr/bin/python3
"""UDP reachability over time, for the restart tests.

  udp_ping.py echo BIND_IP PORT                 echoes every datagram back to its sender
  udp_ping.py ping DST_IP PORT SECONDS INTERVAL  sends one datagram every INTERVAL s from one socket (one flow);
                                                 prints the wall-clock time of every echo it gets back
"""
import socket
import sys
import time


def echo(bind_ip, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((bind_ip, int(port)))
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)


def ping(dst, port, seconds, interval):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(float(interval))
    end = time.time() + float(seconds)
    n = 0
    while time.time() < end:
        n += 1
        try:
            s.sendto(str(n).encode(), (dst, int(port)))
        except OSError:
            time.sleep(float(interval))
            continue
        deadline = time.time() + float(interval)
        while time.time() < deadline:
            try:
                s.recvfrom(2048)
                print("%.3f" % time.time(), flush=True)
            except socket.timeout:
                break
            except OSError:
                break


if __name__ == "__main__":
    if sys.argv[1] == "echo":
        echo(*sys.argv[2:4])
    else:
        ping(*sys.argv[2:6])
