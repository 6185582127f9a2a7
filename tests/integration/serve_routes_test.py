#!/usr/bin/env python3
"""Lease-driven routes through `fleetconf serve`, with udhcpc as the unikernel, across a veth pair between
two network namespaces that this test creates and always deletes. For each kind of target (the proxy's
block device served in the same process; a blockcfg editor reached over its control protocol; a tlstunnel
proxy, here a stand-in written from docs/tlstunnel-compat.md): a unikernel with public host names gets
its routes when its lease is acknowledged; a client sending option 81 with S gets its FQDN routed; a
RELEASE removes the routes; an expired lease (lease4-add with a short lifetime) loses them.

usage: serve_routes_test.py FLEETCONF_BINARY
"""
import argparse, json, os, signal, subprocess, sys, tempfile, time

from nstest import Harness, require_root_and_netns, udhcpc_record, udhcpc_script, wait_udhcpc_bound, wait_for as wait_until

_ap = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n\n")[0])
_ap.add_argument("fleetconf", help="the fleetconf binary to test")
FC = os.path.abspath(_ap.parse_args().fleetconf)
HERE = os.path.dirname(os.path.abspath(__file__))
require_root_and_netns()

P = f"frt{os.getpid() % 100000}"
SRV, C1 = f"{P}s", f"{P}c"
IF = f"{P}v"
tmp = tempfile.mkdtemp(prefix="fleetconf-routes-")
H = Harness(P)
sh, ns, check, procs = H.sh, H.ns, H.check, H.procs


def setup():
    H.add_namespaces(SRV, C1)
    H.veth(SRV, IF, C1, "eth0")
    sh("ip", "-n", SRV, "addr", "add", "10.77.0.1/24", "dev", IF)
    for n, i in ((SRV, IF), (C1, "eth0")):
        sh("ip", "-n", n, "link", "set", i, "up")
        sh("ip", "-n", n, "link", "set", "lo", "up")



def udhcpc(*extra):
    udhcpc_script(tmp)
    ns(C1, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "4", "-T", "1", "-s", f"{tmp}/u.sh", *extra, check=False, timeout=30)
    return udhcpc_record(tmp).get("ip")


def udhcpc_bound(*extra):
    """A running udhcpc (it RELEASEs only from BOUND, on SIGUSR2): returns (process, leased address)."""
    udhcpc_script(tmp)
    d = subprocess.Popen(["ip", "netns", "exec", C1, "busybox", "udhcpc", "-i", "eth0", "-f", "-t", "4", "-T", "1",
                          "-s", f"{tmp}/u.sh", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(d)
    return d, wait_udhcpc_bound(d.pid, tmp).get("ip")  # in BOUND, where SIGUSR2 releases


def release(d, ip):
    # busybox udhcpc: SIGUSR2 sends a RELEASE from BOUND; its pid is the child of `ip netns exec` (exec'd: the same).
    # Wait until the server has logged that RELEASE (not a fixed time), then stop the client.
    seen = open(f"{tmp}/serve.log").read().count(f"RELEASE {ip} by")
    os.kill(d.pid, signal.SIGUSR2)
    wait_until(lambda: open(f"{tmp}/serve.log").read().count(f"RELEASE {ip} by"), lambda n: n > seen, 10)
    d.kill()
    d.wait()


def site(target, extra_routes=None):
    routes = {"target": target, "fqdn": True}
    routes.update(extra_routes or {})
    return {
        "networks": [{"name": IF, "subnet": "10.77.0.0/24", "gateway": "10.77.0.1", "domain": "t.example",
                      "pools": ["10.77.0.100-10.77.0.150"], "lease_time": 120}],
        "unikernels": [
            {"name": "proxy", "network": IF, "address": "10.77.0.10", "dhcp": False, "block": {}},
            {"name": "web", "network": IF, "mac": "02:00:00:00:00:01", "public_hosts": ["www.example.org", "web.example.org"],
             "backend_port": 8080},
            {"name": "api", "network": IF, "mac": "02:00:00:00:00:07", "address": "10.77.0.20", "public_hosts": ["api.example.org"]}],
        "services": {"data_dir": f"{tmp}/data", "status": "off", "dhcp": {"routes": routes}, "git": {"enabled": False},
                     "block": {"listen": "127.0.0.1:7399"}}}


def start(s):
    json.dump(s, open(f"{tmp}/site.json", "w"))
    log = open(f"{tmp}/serve.log", "a")
    p = subprocess.Popen(["ip", "netns", "exec", SRV, FC, "serve", f"{tmp}/site.json"], stdout=log, stderr=subprocess.STDOUT)
    procs.append(p)
    for _ in range(100):
        if "service(s) running" in open(f"{tmp}/serve.log").read() or p.poll() is not None:
            break
        time.sleep(0.1)
    return p


def stop(p):
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=20)


def wait_for(get, want, seconds=15):
    """Polls `get` until it returns `want` (routes are applied by a worker after the ACK)."""
    return wait_until(get, lambda got: got == want, seconds)


def block_routes():
    r = ns(SRV, FC, "block", "list", "--json", "--connect", "127.0.0.1:7399", "--key-file", f"{tmp}/data/block/keys", check=False)
    if r.returncode != 0:
        return {"error": r.stderr.strip()}
    return {x["host"]: f'{x["address"]}:{x["port"]}' for x in json.loads(r.stdout)["routes"]}


def set_mac(mac):
    ns(C1, "ip", "addr", "flush", "dev", "eth0", check=False)
    ns(C1, "ip", "link", "set", "eth0", "address", mac)


def scenario(label, routes_of):
    set_mac("02:00:00:00:00:01")
    d, ip = udhcpc_bound()
    check(f"{label}: the unikernel gets a lease", bool(ip), ip)
    ok, got = wait_for(routes_of, {"www.example.org": f"{ip}:8080", "web.example.org": f"{ip}:8080"})
    check(f"{label}: its public host names route to the leased address and backend_port", ok, got)
    release(d, ip)
    ok, got = wait_for(routes_of, {})
    check(f"{label}: RELEASE removes them", ok, got)
    set_mac("02:00:00:00:00:05")
    d, ip2 = udhcpc_bound("-F", "laptop")
    ok, got = wait_for(routes_of, {"laptop.t.example": f"{ip2}:80"})
    check(f"{label}: option 81 with S: the completed FQDN routes to the lease on routes.port", ok, got)
    release(d, ip2)
    ok, got = wait_for(routes_of, {})
    check(f"{label}: and its RELEASE removes it", ok, got)
    # A unikernel with a reserved address (issue 16.6): its RELEASE ends the lease and its routes go too.
    set_mac("02:00:00:00:00:07")
    d, ip3 = udhcpc_bound()
    ok, got = wait_for(routes_of, {"api.example.org": "10.77.0.20:80"})  # routes.port, the default 80
    check(f"{label}: a reserved unikernel's lease routes its public host", ip3 == "10.77.0.20" and ok, (ip3, got))
    release(d, ip3)
    ok, got = wait_for(routes_of, {})
    check(f"{label}: and the RELEASE of the reserved address removes it", ok, got)
    # Expiry: a lease added with a 2-second lifetime for the unikernel's MAC.
    r = ns(SRV, FC, "dhcp", "ctl", "lease4-add", "--socket", f"{tmp}/data/dhcp/control.sock", "--args",
           json.dumps({"ip-address": "10.77.0.140", "hw-address": "02:00:00:00:00:01", "valid-lft": 2}), check=False)
    ok, got = wait_for(routes_of, {"www.example.org": "10.77.0.140:8080", "web.example.org": "10.77.0.140:8080"})
    check(f"{label}: lease4-add routes too", r.returncode == 0 and ok, (r.stdout, got))
    ok, got = wait_for(routes_of, {}, seconds=20)
    check(f"{label}: when that lease expires its routes go", ok, got)
    ns(SRV, FC, "dhcp", "ctl", "lease4-del", "--socket", f"{tmp}/data/dhcp/control.sock", "--args",
       json.dumps({"ip-address": "10.77.0.140"}), check=False)


def block(*args):
    return ns(SRV, FC, "block", *args, "--connect", "127.0.0.1:7399", "--key-file", f"{tmp}/data/block/keys", check=False)


def reconciliation(p):
    """Routes follow the site (issue 23): a rollback that takes lease-owned routes away warns and they come
    back; a renamed public host and a removed unikernel lose their routes on reload; an unknown client that
    then takes the old address gets none."""
    set_mac("02:00:00:00:00:01")
    d, ip = udhcpc_bound()
    want = {"www.example.org": f"{ip}:8080", "web.example.org": f"{ip}:8080"}
    ok, got = wait_for(block_routes, want)
    check("reconcile: the unikernel's routes are there", ok, got)
    first = min(g["generation"] for g in json.loads(block("history", "--json").stdout)["generations"])
    r = block("rollback", str(first))
    check("a rollback that takes lease-owned routes away warns", r.returncode == 0 and "warning" in r.stderr and "lease-owned" in r.stderr
          and "www.example.org" in r.stderr, (r.stdout, r.stderr))
    ok, got = wait_for(block_routes, want)
    check("and the lease router sets them again", ok, got)
    s = json.load(open(f"{tmp}/site.json"))
    s["unikernels"][1]["public_hosts"] = ["www.example.org", "shop.example.org"]
    json.dump(s, open(f"{tmp}/site.json", "w"))
    r = ns(SRV, FC, "reload", f"{tmp}/site.json", check=False)
    ok, got = wait_for(block_routes, {"www.example.org": f"{ip}:8080", "shop.example.org": f"{ip}:8080"})
    check("reload with a renamed public host: the old name's route goes, the new one comes", r.returncode == 0 and ok, (r.stderr, got))
    del s["unikernels"][1]
    json.dump(s, open(f"{tmp}/site.json", "w"))
    r = ns(SRV, FC, "reload", f"{tmp}/site.json", check=False)
    ok, got = wait_for(block_routes, {})
    check("reload without the unikernel: its routes are removed", r.returncode == 0 and ok, (r.stderr, got))
    d.kill()
    d.wait()
    # Its address, given to a client the site does not know: still no route.
    ns(SRV, FC, "dhcp", "ctl", "lease4-del", "--socket", f"{tmp}/data/dhcp/control.sock", "--args", json.dumps({"ip-address": ip}), check=False)
    ns(SRV, FC, "dhcp", "ctl", "lease4-add", "--socket", f"{tmp}/data/dhcp/control.sock", "--args",
       json.dumps({"ip-address": ip, "hw-address": "02:00:00:00:00:66"}), check=False)
    time.sleep(1)  # the routes worker applies changes asynchronously; nothing must arrive
    check("an unknown client on the old address gets no route", block_routes() == {}, block_routes())
    state = json.load(open(f"{tmp}/data/routes.json"))
    check("routes.json records no owned route", state == {"owned": []}, state)
    ns(SRV, FC, "dhcp", "ctl", "lease4-del", "--socket", f"{tmp}/data/dhcp/control.sock", "--args", json.dumps({"ip-address": ip}), check=False)


try:
    setup()
    # 1. The proxy's block device, served by the same process.
    p = start(site("proxy"))
    scenario("local device", block_routes)
    reconciliation(p)
    log = open(f"{tmp}/serve.log").read()
    check("every route change is logged with its generation", "routes: www.example.org -> 10.77.0." in log and "generation" in log, log[-600:])
    stop(p)
    # 2. The same device through its editor's authenticated control protocol (blockcfg://).
    p = start(site("blockcfg://127.0.0.1:7399/proxy", {"key_file": f"{tmp}/data/block/keys"}))
    scenario("blockcfg editor", block_routes)
    stop(p)
    # 3. A tlstunnel proxy (the stand-in, in the server's namespace).
    fd = os.open(f"{tmp}/tt.key", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"tlstunnel shared key\n")
    os.close(fd)
    standin = subprocess.Popen(["ip", "netns", "exec", SRV, "python3", os.path.join(HERE, "..", "blockcfg", "tlstunnel_reference.py"),
                                "serve", "1234", f"{tmp}/tt.key", f"{tmp}/tt.json"], stdout=subprocess.PIPE, text=True)
    procs.append(standin)
    check("tlstunnel (the port of its source) started", standin.stdout.readline().strip() == "ready 1234")

    def tlstunnel_routes():
        try:
            return {k: f"{v[0]}:{v[1]}" for k, v in json.load(open(f"{tmp}/tt.json")).items()}
        except (OSError, ValueError):
            return {"error": "unreadable"}
    p = start(site("tlstunnel://127.0.0.1:1234", {"key_file": f"{tmp}/tt.key"}))
    scenario("tlstunnel", tlstunnel_routes)
    check("the tlstunnel target's log says the protocol has no replay protection",
          "no replay protection" in open(f"{tmp}/serve.log").read())
    stop(p)
    # A site that names a target without a block device is refused with the reason.
    bad = site("nosuch")
    json.dump(bad, open(f"{tmp}/bad.json", "w"))
    r = sh(FC, "site", "check", f"{tmp}/bad.json", check=False)
    check("routes to a unikernel without a block device: refused", r.returncode != 0 and "is not a unikernel with a \"block\" device" in (r.stdout + r.stderr),
          r.stdout + r.stderr)
finally:
    H.teardown()
H.finish(tmp)
