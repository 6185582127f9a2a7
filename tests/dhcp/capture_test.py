#!/usr/bin/env python3
"""Re-captures the client packets that tests/dhcp/wire_test.cpp pins, from the real clients, across a veth
pair between two network namespaces this test creates (and deletes): busybox udhcpc, ISC dhclient and
perfdhcp each send their first DISCOVER to a plain UDP socket on port 67 (no server answers), and the
captured bytes must equal the pinned ones except the fields a client draws at random or from the clock
(xid, secs). The commands are those recorded in tests/dhcp/README.md. Needs root (skipped outside CI).

usage: capture_test.py WIRE_TEST_CPP
"""
import argparse, os, re, socket, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from nstest import Harness, require_root_and_netns  # noqa: E402

ap = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n\n")[0])
ap.add_argument("wire_test", help="tests/dhcp/wire_test.cpp (the pinned captures)")
a = ap.parse_args()
require_root_and_netns()

src = open(a.wire_test).read()
pinned = {name: bytes.fromhex(re.search(rf'const char\* {name} =\s*"([0-9a-f]+)";', src).group(1))
          for name in ("kUdhcpc", "kDhclient", "kPerfdhcp")}

h = Harness(f"fccap{os.getpid()}-")
SRV, CL = f"fccap{os.getpid()}-s", f"fccap{os.getpid()}-c"
tmp = tempfile.mkdtemp(prefix="fleetconf-capture-")


def capture(start, seconds=10):
    """Starts the client with start(), returns the first DHCP packet that reaches port 67 in SRV."""
    listener = subprocess.Popen(["ip", "netns", "exec", SRV, "python3", "-c", f"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.bind(("0.0.0.0", 67))
s.settimeout({seconds})
print("ready", flush=True)
try:
    data, _ = s.recvfrom(2048)
    print(data.hex(), flush=True)
except socket.timeout:
    print("", flush=True)
"""], stdout=subprocess.PIPE, text=True)
    h.procs.append(listener)
    assert listener.stdout.readline().strip() == "ready"
    client = start()
    h.procs.append(client)
    got = bytes.fromhex(listener.stdout.readline().strip())
    client.kill()
    client.wait()
    listener.wait()
    return got


def same_but_random(got, want):
    """Equal except xid (bytes 4-7) and secs (8-9)."""
    return len(got) == len(want) and got[:4] == want[:4] and got[10:] == want[10:]


def diff(got, want):
    return [(i, f"{got[i]:02x}" if i < len(got) else None, f"{want[i]:02x}" if i < len(want) else None)
            for i in range(max(len(got), len(want))) if i not in range(4, 10) and (got[i:i + 1] != want[i:i + 1])][:12]


try:
    h.add_namespaces(SRV, CL)
    h.veth(SRV, "eth0", CL, "eth0")
    h.ns(SRV, "ip", "addr", "add", "10.77.0.1/24", "dev", "eth0")
    h.ns(SRV, "ip", "link", "set", "eth0", "up")
    h.ns(CL, "ip", "link", "set", "eth0", "address", "02:00:00:aa:bb:cc")
    h.ns(CL, "ip", "link", "set", "eth0", "up")
    h.ns(SRV, "ip", "link", "set", "lo", "up")
    h.ns(CL, "ip", "link", "set", "lo", "up")

    got = capture(lambda: subprocess.Popen(["ip", "netns", "exec", CL, "busybox", "udhcpc", "-i", "eth0", "-x", "hostname:web",
                                            "-f", "-n", "-q", "-t", "1", "-T", "5", "-s", "/bin/true"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    h.check("udhcpc (busybox udhcpc -i eth0 -x hostname:web): the pinned DISCOVER, byte for byte but xid and secs",
            same_but_random(got, pinned["kUdhcpc"]), diff(got, pinned["kUdhcpc"]) or got.hex())

    open(f"{tmp}/dh.conf", "w").write('send host-name "calendar";\n')
    got = capture(lambda: subprocess.Popen(["ip", "netns", "exec", CL, "dhclient", "-1", "-d", "-sf", "/bin/true",
                                            "-lf", f"{tmp}/dh.leases", "-pf", f"{tmp}/dh.pid", "-cf", f"{tmp}/dh.conf", "eth0"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    h.check("dhclient (send host-name \"calendar\"): the pinned DISCOVER, byte for byte but xid and secs",
            same_but_random(got, pinned["kDhclient"]), diff(got, pinned["kDhclient"]) or got.hex())

    h.ns(CL, "ip", "addr", "add", "10.77.0.2/24", "dev", "eth0")
    got = capture(lambda: subprocess.Popen(["ip", "netns", "exec", CL, "perfdhcp", "-4", "-r", "1", "-R", "1", "-n", "1",
                                            "-p", "5", "10.77.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    h.check("perfdhcp -4 -r 1 -R 1 -n 1 10.77.0.1 (a relay at 10.77.0.2): the pinned DISCOVER, byte for byte but xid and secs",
            same_but_random(got, pinned["kPerfdhcp"]), diff(got, pinned["kPerfdhcp"]) or got.hex())
finally:
    h.teardown()
h.finish(tmp)
