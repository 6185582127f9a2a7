#!/usr/bin/env python3
"""Two fleetconf DHCP servers sharing one PostgreSQL lease table (issue 19), across veth pairs between
network namespaces this test creates and always deletes, with a throwaway PostgreSQL (unix socket only,
tests/support/throwaway_pg.sh) that it starts and removes:

- both servers answer a storm of relayed clients drawn from one pool: every ACKed lease is in the
  database with the client that got it, no address is held by two clients (SQL and the clients' view);
- one server killed with SIGKILL mid-storm: the other goes on, and every client of the dead one renews
  the address it held, from the other server;
- the database restarted mid-storm: no ACK for a lease the database does not hold, and the service
  resumes by itself (ACKs again, /health back to 200) without a restart.

usage: dhcp_postgresql_test.py FLEETCONF_BINARY
"""
import argparse, json, os, subprocess, sys, tempfile, time, urllib.request

from nstest import Harness, ThrowawayPg, require_root_and_netns, wait_for

_ap = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n\n")[0])
_ap.add_argument("fleetconf", help="the fleetconf binary to test")
FC = os.path.abspath(_ap.parse_args().fleetconf)
require_root_and_netns()
HERE = os.path.dirname(os.path.abspath(__file__))

P = f"fpg{os.getpid() % 100000}"
S1, S2, C = f"{P}1", f"{P}2", f"{P}c"
BR = f"{P}br"
tmp = tempfile.mkdtemp(prefix="fleetconf-pg-")
pg = ThrowawayPg(f"{tmp}/pg.state")
H = Harness(P)
sh, ns, check, failures = H.sh, H.ns, H.check, H.failures
servers = {}


def setup():
    H.add_namespaces(S1, S2, C)
    H.bridge(C, BR, {S1: "10.77.0.1/24", S2: "10.77.0.2/24"}, ["10.77.0.250/24", "10.77.0.251/24"])


def site(i):
    pgdir = pg.value("PGDIR")
    return {
        "site": "pg", "networks": [{"name": "eth0", "subnet": "10.77.0.0/24", "gateway": "10.77.0.254", "server_address": f"10.77.0.{i}",
                                    "pools": ["10.77.0.10-10.77.0.240"], "lease_time": 600}],
        "unikernels": [],
        "services": {"data_dir": f"{tmp}/data{i}", "status": "127.0.0.1:9467",
                     "dhcp": {"leases": {"type": "postgresql", "conninfo": f"host={pgdir} dbname=postgres user=fleetconf",
                                         "password_file": f"{pgdir}/password"}}}}


def start(i):
    nsname = S1 if i == 1 else S2
    log = open(f"{tmp}/server{i}.log", "a")
    mark = os.path.getsize(f"{tmp}/server{i}.log")
    servers[i] = subprocess.Popen(["ip", "netns", "exec", nsname, FC, "dhcp", "serve", f"{tmp}/site{i}.json"], stderr=log)
    H.procs.append(servers[i])  # killed at teardown
    for _ in range(100):
        if b"listening on" in open(f"{tmp}/server{i}.log", "rb").read()[mark:]:
            return
        time.sleep(0.1)
    raise RuntimeError(f"server {i} did not start: " + open(f"{tmp}/server{i}.log").read())


def relay(relay_ip, server_ip, n, seconds, tag):
    """dhcp_relay.py in C: DORA for n MACs (second byte `tag`) against one server; {mac: address} of ACKs."""
    return subprocess.Popen(["ip", "netns", "exec", C, "python3", os.path.join(HERE, "dhcp_relay.py"), relay_ip, server_ip, str(n),
                             str(seconds), str(tag)], stdout=subprocess.PIPE, text=True)


def result(p):
    out, _ = p.communicate(timeout=120)
    return json.loads(out or "{}")


def db_leases():
    """{address: mac} of the bound rows, as the database holds them."""
    rows = json.loads(sh(FC, "dhcp", "leases", "--json", "--site", f"{tmp}/site1.json").stdout)
    return {r["address"]: r["mac"] for r in rows if r["state"] == "bound"}


def health(i):
    nsname = S1 if i == 1 else S2
    r = ns(nsname, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:9467/health", check=False)
    return r.stdout.strip()


def consistent(label, acked, db):
    """Every ACK's lease is in the database with that client; no address went to two clients."""
    wrong = {m: a for m, a in acked.items() if db.get(a) != m}
    check(f"{label}: every ACKed lease is in the database with its client ({len(acked)} ACKs)", not wrong, wrong)
    by_addr = {}
    for m, a in acked.items():
        by_addr.setdefault(a, set()).add(m)
    dup = {a: sorted(ms) for a, ms in by_addr.items() if len(ms) > 1}
    check(f"{label}: no address was ACKed to two clients", not dup, dup)


try:
    pg("start")
    setup()
    for i in (1, 2):
        json.dump(site(i), open(f"{tmp}/site{i}.json", "w"))
    sh(FC, "dhcp", "db", "init", "--site", f"{tmp}/site1.json")
    start(1)
    start(2)

    # 1. Both servers, one pool, two sets of clients racing for the same free addresses.
    a = relay("10.77.0.250", "10.77.0.1", 40, 6, 0x55)
    b = relay("10.77.0.251", "10.77.0.2", 40, 6, 0x66)
    acked_a, acked_b = result(a), result(b)
    check("server 1 answers (ACKs for its clients)", len(acked_a) >= 30, len(acked_a))
    check("server 2 answers (ACKs for its clients)", len(acked_b) >= 30, len(acked_b))
    db = db_leases()
    both = {**acked_a, **acked_b}
    consistent("two servers", both, db)
    sql = subprocess.run([os.path.join(pg.value("PGBIN"), "psql"), "-At", "-h", pg.value("PGDIR"), "-U", "fleetconf", "-d", "postgres", "-c",
                          "SELECT count(*), count(DISTINCT address), count(DISTINCT client) FROM fleetconf_lease4 WHERE state = 1"],
                         capture_output=True, text=True, env={**os.environ, "PGPASSWORD": open(pg.value("PASSWORD_FILE")).read().strip()})
    counts = sql.stdout.strip().split("|")
    check("SQL: bound rows have distinct addresses and distinct clients", len(counts) == 3 and counts[0] == counts[1] == counts[2]
          and int(counts[0]) >= len(both), (sql.stdout, sql.stderr))

    # 2. Server 1 killed with SIGKILL mid-storm; its clients renew from server 2 and keep their addresses.
    a = relay("10.77.0.250", "10.77.0.1", 40, 4, 0x55)
    time.sleep(2)
    servers[1].kill()
    servers[1].wait()
    mid = result(a)
    db = db_leases()
    consistent("until the kill", mid, db)
    after = result(relay("10.77.0.250", "10.77.0.2", 40, 4, 0x55))
    kept = {m: (mid.get(m) or acked_a.get(m), after.get(m)) for m in set(acked_a) | set(mid)}
    moved = {m: v for m, v in kept.items() if v[1] != v[0]}
    check("server 1 dead: every one of its clients renews its address from server 2", not moved, moved)
    consistent("after the kill", {**after, **acked_b}, db_leases())

    # 3. The database restarted mid-storm: no ACK for an unsaved lease; the service resumes by itself.
    b = relay("10.77.0.251", "10.77.0.2", 60, 8, 0x77)
    time.sleep(2)
    pg("restart")
    storm = result(b)
    check("ACKs during the storm around the restart", len(storm) >= 30, len(storm))
    consistent("database restarted mid-storm", storm, db_leases())
    deadline, got = time.time() + 30, {}
    while time.time() < deadline and len(got) < 5:
        got = result(relay("10.77.0.251", "10.77.0.2", 5, 2, 0x78))
    check("ACKs again after the restart (5 new clients), no server restarted", len(got) == 5, got)
    consistent("after the restart", got, db_leases())
    held, got = wait_for(lambda: health(2), lambda c: c == "200", 15)
    check("server 2 healthy again (/health 200)", held, got)
    log = open(f"{tmp}/server2.log").read()
    check("server 2's log says the database was lost and is back", "lost the lease database" in log and "reachable again" in log,
          log[-2000:])
    check("server 2 never exited", servers[2].poll() is None)
finally:
    H.teardown()
    pg("stop")
H.finish(tmp)
