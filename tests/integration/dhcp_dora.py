#!/usr/bin/env python3
"""One DISCOVER-OFFER-REQUEST-ACK exchange from a scripted relay (giaddr = its own address, listening on
port 67), with extra options in both requests (hex, already TLV-encoded), so that a test can send what
a hostile client sends (a host name that is not UTF-8, a newline). Prints JSON: {"offer": ADDR or null,
"ack": ADDR or null}. Runs inside a namespace the calling test created.

usage: dhcp_dora.py RELAY_IP SERVER_IP MAC EXTRA_OPTIONS_HEX
"""
import argparse, json, socket

from dhcp_packets import relayed, selecting

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("relay")
ap.add_argument("server")
ap.add_argument("mac", help="aa:bb:cc:dd:ee:ff")
ap.add_argument("extra", help="extra options, hex")
a = ap.parse_args()
mac = bytes.fromhex(a.mac.replace(":", ""))
extra = bytes.fromhex(a.extra)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((a.relay, 67))
s.settimeout(3.0)


def reply(xid):
    while True:
        data, _ = s.recvfrom(2048)
        if int.from_bytes(data[4:8], "big") != xid:
            continue
        opts = data[240:]
        i, mtype = 0, 0
        while i < len(opts) and opts[i] != 255:
            if opts[i] == 0:
                i += 1
                continue
            if opts[i] == 53:
                mtype = opts[i + 2]
            i += 2 + opts[i + 1]
        return mtype, data[16:20]


out = {"offer": None, "ack": None}
try:
    s.sendto(relayed(1, mac, 0x5150, a.relay, extra), (a.server, 67))
    t, yi = reply(0x5150)
    if t == 2:
        out["offer"] = socket.inet_ntoa(yi)
        s.sendto(relayed(3, mac, 0x5151, a.relay, extra + selecting(yi, a.server)), (a.server, 67))
        t, yi = reply(0x5151)
        if t == 5:
            out["ack"] = socket.inet_ntoa(yi)
except socket.timeout:
    pass
print(json.dumps(out))
