#!/usr/bin/python3
"""UDP probe for the MTU tests: send datagrams of a given size with DF set or clear, or receive them.

  udp_probe.py recv BIND_IP PORT SECONDS          -> JSON {"datagrams": n, "sizes": [...distinct sizes]}
  udp_probe.py send DST_IP PORT SIZE COUNT df|nodf -> JSON {"sent": n, "emsgsize": n}
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


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "recv":
        recv(*sys.argv[2:])
    elif len(sys.argv) == 7 and sys.argv[1] == "send":
        send(*sys.argv[2:])
    else:
        sys.exit(__doc__)
