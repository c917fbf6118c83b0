#!/usr/bin/python3
"""UDP probe for the MTU and fragment tests: send datagrams of a given size with DF set or clear, receive them,
echo them, or send and check their echoes.

  udp_probe.py recv BIND_IP PORT SECONDS          -> JSON {"datagrams": n, "sizes": [...distinct sizes]}
  udp_probe.py send DST_IP PORT SIZE COUNT df|nodf -> JSON {"sent": n, "emsgsize": n}
  udp_probe.py echo BIND_IP PORT SECONDS          -> sends every datagram back (DF clear);
                                                     JSON {"echoed": n, "sizes": [...]}
  udp_probe.py ping DST_IP PORT SIZES COUNT       -> from one socket, COUNT datagrams of each size (comma-separated,
                                                     DF clear), each waiting up to 3 s for its echo;
                                                     JSON {"sent": n, "echoed": n, "intact": n, "sizes": [...]}
"""
import errno
import json
import socket
import sys
import time

IP_MTU_DISCOVER = 10
IP_PMTUDISC_DONT = 0
IP_PMTUDISC_DO = 2


def recv(bind_ip, port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((bind_ip, int(port)))
    s.settimeout(0.2)
    end = time.time() + float(seconds)
    count, sizes = 0, set()
    while time.time() < end:
        try:
            data, _ = s.recvfrom(65535)
        except socket.timeout:
            continue
        count += 1
        sizes.add(len(data))
    print(json.dumps({"datagrams": count, "sizes": sorted(sizes)}), flush=True)


def send(dst, port, size, count, df):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO if df == "df" else IP_PMTUDISC_DONT)
    sent = emsgsize = 0
    payload = bytes(i % 251 for i in range(int(size)))
    for _ in range(int(count)):
        try:
            s.sendto(payload, (dst, int(port)))
            sent += 1
        except OSError as e:
            if e.errno != errno.EMSGSIZE:
                raise
            emsgsize += 1
        time.sleep(0.02)
    print(json.dumps({"sent": sent, "emsgsize": emsgsize}), flush=True)


def echo(bind_ip, port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((bind_ip, int(port)))
    s.settimeout(0.2)
    end = time.time() + float(seconds)
    count, sizes = 0, set()
    while time.time() < end:
        try:
            data, peer = s.recvfrom(65535)
        except socket.timeout:
            continue
        s.sendto(data, peer)
        count += 1
        sizes.add(len(data))
    print(json.dumps({"echoed": count, "sizes": sorted(sizes)}), flush=True)


def ping(dst, port, sizes, count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.settimeout(3)
    sent = echoed = intact = 0
    seen = set()
    for size in [int(x) for x in sizes.split(",")]:
        for i in range(int(count)):
            payload = bytes((i * 131 + j * 7) % 256 for j in range(size))
            s.sendto(payload, (dst, int(port)))
            sent += 1
            try:
                data, _ = s.recvfrom(65535)
            except socket.timeout:
                continue
            echoed += 1
            seen.add(len(data))
            intact += data == payload
    print(json.dumps({"sent": sent, "echoed": echoed, "intact": intact, "sizes": sorted(seen)}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "recv":
        recv(*sys.argv[2:])
    elif len(sys.argv) == 7 and sys.argv[1] == "send":
        send(*sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "echo":
        echo(*sys.argv[2:])
    elif len(sys.argv) == 6 and sys.argv[1] == "ping":
        ping(*sys.argv[2:])
    else:
        sys.exit(__doc__)
