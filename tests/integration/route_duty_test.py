#!/usr/bin/env python3
"""Lease-driven routes with two `fleetconf serve` sharing one PostgreSQL lease table (issue 19.5): one
proxy (a blockcfg editor reached over its control protocol), two servers in network namespaces this test
creates and always deletes, a throwaway PostgreSQL (unix socket only) it starts and removes.

- one server holds the duty (the advisory lock): a lease made through the other is routed by the holder,
  and only by it; an expiry removes the route once;
- the holder killed with SIGKILL: the other takes the duty and routes new leases; routes already right
  are not written again;
- a route set by a holder that died before its lease ended (nobody held the duty at the expiry) is
  removed by the next holder, though its own record never had it.

usage: route_duty_test.py FLEETCONF_BINARY
"""
import argparse, json, os, subprocess, sys, tempfile, time

from nstest import Harness, ThrowawayPg, require_root_and_netns, wait_for

_ap = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n\n")[0])
_ap.add_argument("fleetconf", help="the fleetconf binary to test")
FC = os.path.abspath(_ap.parse_args().fleetconf)
require_root_and_netns()

P = f"fdu{os.getpid() % 100000}"
S1, S2, C = f"{P}1", f"{P}2", f"{P}c"
BR = f"{P}br"
EDITOR = "10.77.0.250:7399"
tmp = tempfile.mkdtemp(prefix="fleetconf-duty-")
pg = ThrowawayPg(f"{tmp}/pg.state")
H = Harness(P)
sh, ns, check, procs = H.sh, H.ns, H.check, H.procs
servers = {}
DUTY = "now holds the site-wide duties"


def setup():
    """S1 and S2 (the servers) and C (the proxy's editor) on one bridge in C."""
    H.add_namespaces(S1, S2, C)
    H.bridge(C, BR, {S1: "10.77.0.1/24", S2: "10.77.0.2/24"}, ["10.77.0.250/24"])


def site(i):
    pgdir = pg.value("PGDIR")
    uk = lambda name, n, hosts, **kw: {"name": name, "network": "eth0", "mac": f"02:00:00:00:00:0{n}", "public_hosts": hosts, **kw}
    return {
        "site": "duty", "networks": [{"name": "eth0", "subnet": "10.77.0.0/24", "gateway": "10.77.0.254", "server_address": f"10.77.0.{i}",
                                      "pools": ["10.77.0.100-10.77.0.200"], "lease_time": 600}],
        "unikernels": [uk("web", 1, ["www.example.org", "web.example.org"], backend_port=8080), uk("api", 2, ["api.example.org"]),
                       uk("db", 3, ["db.example.org"]), uk("cache", 4, ["cache.example.org"])],
        "services": {"data_dir": f"{tmp}/data{i}", "status": "off", "git": {"enabled": False},
                     "dhcp": {"leases": {"type": "postgresql", "conninfo": f"host={pgdir} dbname=postgres user=fleetconf",
                                         "password_file": f"{pgdir}/password"},
                              "routes": {"target": f"blockcfg://{EDITOR}", "key_file": f"{tmp}/editor.keys"}}}}


def log_of(i):
    try:
        return open(f"{tmp}/serve{i}.log").read()
    except FileNotFoundError:
        return ""


def start(i):
    nsname = S1 if i == 1 else S2
    mark = len(log_of(i))
    out = open(f"{tmp}/serve{i}.log", "a")
    servers[i] = subprocess.Popen(["ip", "netns", "exec", nsname, FC, "serve", f"{tmp}/site{i}.json"], stdout=out, stderr=subprocess.STDOUT)
    procs.append(servers[i])
    ok, _ = wait_for(lambda: log_of(i)[mark:], lambda t: "service(s) running" in t or servers[i].poll() is not None, 20)
    if not ok or servers[i].poll() is not None:
        raise RuntimeError(f"serve {i} did not start: " + log_of(i)[-2000:])


def kill(i):
    servers[i].kill()
    servers[i].wait()


def ctl(i, command, args):
    nsname = S1 if i == 1 else S2
    return ns(nsname, FC, "dhcp", "ctl", command, "--socket", f"{tmp}/data{i}/dhcp/control.sock", "--args", json.dumps(args), check=False)


def routes():
    r = ns(C, FC, "block", "list", "--json", "--connect", EDITOR, "--key-file", f"{tmp}/editor.keys", check=False)
    if r.returncode != 0:
        return {"error": r.stderr.strip()}
    return {x["host"]: f'{x["address"]}:{x["port"]}' for x in json.loads(r.stdout)["routes"]}


def wait_routes(want, seconds=20):
    return wait_for(routes, lambda got: got == want, seconds)


def changes(i, host):
    """The route changes server i applied to host (its log: `routes: HOST -> ...` or `routes: remove HOST`)."""
    return [l for l in log_of(i).splitlines() if f"routes: {host} -> " in l or f"routes: remove {host} " in l]


try:
    pg("start")
    setup()
    sh(FC, "block", "keygen", f"{tmp}/editor.keys")
    editor = subprocess.Popen(["ip", "netns", "exec", C, FC, "block", "serve", f"{tmp}/proxy.img", "--key-file", f"{tmp}/editor.keys",
                               "--listen", EDITOR, "--create-size", str(1 << 20)], stdout=open(f"{tmp}/editor.log", "w"),
                              stderr=subprocess.STDOUT)
    procs.append(editor)
    ok, got = wait_for(routes, lambda r: "error" not in r, 15)
    check("the proxy's editor answers", ok and got == {}, got)
    for i in (1, 2):
        json.dump(site(i), open(f"{tmp}/site{i}.json", "w"))
    sh(FC, "dhcp", "db", "init", "--site", f"{tmp}/site1.json")

    # 1. One holder; a lease made through the other server is routed by the holder alone.
    start(1)
    ok, _ = wait_for(lambda: log_of(1), lambda t: DUTY in t, 10)
    check("server 1 takes the duty", ok, log_of(1)[-1500:])
    start(2)
    r = ctl(2, "lease4-add", {"ip-address": "10.77.0.100", "hw-address": "02:00:00:00:00:01"})
    web = {"www.example.org": "10.77.0.100:8080", "web.example.org": "10.77.0.100:8080"}
    ok, got = wait_routes(web)
    check("a lease made through server 2 is routed (by the holder, within the sweep)", r.returncode == 0 and ok, (r.stdout, r.stderr, got))
    check("server 2 does not hold the duty", DUTY not in log_of(2), log_of(2)[-1500:])
    check("the route was changed once, by server 1 only", len(changes(1, "www.example.org")) == 1 and changes(2, "www.example.org") == [],
          (changes(1, "www.example.org"), changes(2, "www.example.org")))
    # An expiry, once: api's lease lives 3 s.
    ctl(2, "lease4-add", {"ip-address": "10.77.0.101", "hw-address": "02:00:00:00:00:02", "valid-lft": 3})
    ok, got = wait_routes({**web, "api.example.org": "10.77.0.101:80"})
    check("a short lease through server 2: routed", ok, got)
    ok, got = wait_routes(web)
    check("its expiry removes the route", ok, got)
    check("added once and removed once, by the holder only", len(changes(1, "api.example.org")) == 2 and changes(2, "api.example.org") == [],
          (changes(1, "api.example.org"), changes(2, "api.example.org")))

    # 2. The holder killed: server 2 takes the duty and routes; what was right is not written again.
    kill(1)
    ok, _ = wait_for(lambda: log_of(2), lambda t: DUTY in t, 10)
    check("server 1 killed (SIGKILL): server 2 takes the duty", ok, log_of(2)[-1500:])
    r = ctl(2, "lease4-add", {"ip-address": "10.77.0.102", "hw-address": "02:00:00:00:00:03"})
    ok, got = wait_routes({**web, "db.example.org": "10.77.0.102:80"})
    check("a new lease is routed by the new holder", r.returncode == 0 and ok, got)
    check("the new holder did not rewrite routes that were right", changes(2, "www.example.org") == [], changes(2, "www.example.org"))

    # 3. A holder dies before its lease ends and nobody holds the duty at the expiry: the next holder
    # removes the route, though its own record (routes.json) never had it.
    ctl(2, "lease4-add", {"ip-address": "10.77.0.103", "hw-address": "02:00:00:00:00:04", "valid-lft": 3})
    ok, got = wait_routes({**web, "db.example.org": "10.77.0.102:80", "cache.example.org": "10.77.0.103:80"})
    check("cache's short lease is routed by server 2", ok, got)
    kill(2)
    time.sleep(4)  # cache's lease ends while no server runs
    check("the stale route is still there while nobody holds the duty", "cache.example.org" in routes(), routes())
    mark = len(log_of(1))
    start(1)
    ok, got = wait_routes({**web, "db.example.org": "10.77.0.102:80"})
    check("the next holder removes the stale route and keeps the live ones", ok, got)
    check("its log says so", DUTY in log_of(1)[mark:] and "duty taken" in log_of(1)[mark:] and
          len(changes(1, "cache.example.org")) == 1, log_of(1)[mark:][-1500:])
    check("server 1 never wrote a lease's route twice", len(changes(1, "www.example.org")) == 1, changes(1, "www.example.org"))
finally:
    H.teardown()
    pg("stop")
H.finish(tmp)
