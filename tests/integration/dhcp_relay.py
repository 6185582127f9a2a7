#!/usr/bin/env python3
"""A scripted DHCP relay (like perfdhcp: giaddr = its own address, it listens on port 67) that runs full
DORA exchanges for N distinct MACs, over and over until SECONDS have passed, and prints {mac: address}
of every ACK as JSON. Runs inside a namespace the calling test created.

usage: dhcp_relay.py RELAY_IP SERVER_IP N SECONDS [MAC_BYTE]
"""
import argparse, json, socket, struct, sys, time

from dhcp_packets import relayed, selecting

_ap = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
_ap.add_argument("relay")
_ap.add_argument("server")
_ap.add_argument("n", type=int, help="distinct MACs")
_ap.add_argument("seconds", type=float)
_ap.add_argument("mac_byte", type=int, nargs="?", default=0x55, help="second byte of every MAC (default 0x55)")
_a = _ap.parse_args()
relay, server, n, seconds, tag = _a.relay, _a.server, _a.n, _a.seconds, _a.mac_byte
deadline = time.time() + seconds
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((relay, 67))
s.settimeout(0.005)  # drain replies between sends: at most ~200 DISCOVERs a second


acked = {}
macs = [bytes([2, tag, 0, 0, i >> 8, i & 255]) for i in range(n)]
i, rounds = 0, 0
while time.time() < deadline:
    s.sendto(relayed(1, macs[i % n], i % n, relay), (server, 67))
    i += 1
    if i % n == 0:
        rounds += 1
    try:
        while True:
            data, _ = s.recvfrom(2048)
            xid = struct.unpack("!I", data[4:8])[0]
            yi, opts = data[16:20], data[240:]
            mtype = opts[opts.index(53) + 2] if 53 in opts else 0
            if mtype == 2 and xid < n:
                s.sendto(relayed(3, macs[xid], xid, relay, selecting(yi, server)), (server, 67))
            elif mtype == 5 and xid < n:
                acked[macs[xid].hex(":")] = socket.inet_ntoa(yi)
    except (socket.timeout, OSError):
        pass
print(json.dumps(acked))
