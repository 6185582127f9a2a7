#!/usr/bin/env python3
"""Probes the DHCP server's group commit from a scripted relay (giaddr = its own address, listening on
port 67). Gets OFFERs for N clients, REQUESTs the first alone (its commit opens a commit interval), then
sends the other N-1 REQUESTs and one more DISCOVER at once, and prints JSON: the order in which the
replies came back ("offer"/"ack" per reply), the seconds from the first REQUEST to the last reply, and
the ACKed addresses. Runs inside a namespace the calling test created.

usage: dhcp_commit_probe.py RELAY_IP SERVER_IP N
"""
import argparse, json, socket, struct, sys, time

from dhcp_packets import relayed, selecting

_ap = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
_ap.add_argument("relay")
_ap.add_argument("server")
_ap.add_argument("n", type=int, help="clients")
_a = _ap.parse_args()
relay, server, n = _a.relay, _a.server, _a.n
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((relay, 67))
s.settimeout(3.0)
macs = [bytes([2, 0x77, 0, 0, 0, i]) for i in range(n + 1)]


def pkt(t, i, extra=b""):
    return relayed(t, macs[i], 0x7000 + i, relay, extra)


def reply():
    data, _ = s.recvfrom(2048)
    opts = data[240:]
    mtype = opts[opts.index(53) + 2] if 53 in opts else 0
    return struct.unpack("!I", data[4:8])[0] - 0x7000, {2: "offer", 5: "ack", 6: "nak"}.get(mtype, str(mtype)), data[16:20]


def request(i, yi):
    return pkt(3, i, selecting(yi, server))


offered = {}
for i in range(n):
    s.sendto(pkt(1, i), (server, 67))
while len(offered) < n:
    i, kind, yi = reply()
    if kind == "offer":
        offered[i] = yi
t0 = time.monotonic()
s.sendto(request(0, offered[0]), (server, 67))
i, kind, yi = reply()
acked = {i: socket.inet_ntoa(yi)} if kind == "ack" else {}
order = [kind]
for i in range(1, n):
    s.sendto(request(i, offered[i]), (server, 67))
s.sendto(pkt(1, n), (server, 67))
try:
    while len(order) < n + 1:
        i, kind, yi = reply()
        order.append(kind)
        if kind == "ack":
            acked[i] = socket.inet_ntoa(yi)
except socket.timeout:
    pass
print(json.dumps({"order": order, "seconds": time.monotonic() - t0, "acked": acked}))
