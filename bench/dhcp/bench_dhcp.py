#!/usr/bin/env python3
"""DHCP benchmark: fleetconf against Kea 2.2 (memfile, persistence on; single- and multi-threaded) and
dnsmasq 2.90 (--no-ping), all in one run, each serving the same /16 pool, driven from another network
namespace across a veth pair that this script creates and deletes.

First the harness's own ceiling: a stateless responder (bench/dhcp/responder.cpp: answers every DISCOVER
and REQUEST from a template, keeps nothing, batched system calls) measured with the same search, so that every
server's figure can be read as a share of what the generator can drive at all. A server within 10% of the
ceiling, or a run where the generator used 95% or more of a core, is reported as generator-bound instead of
with a ratio.

For each server: the highest request rate with at most 2.5% drops in both DISCOVER-OFFER and
REQUEST-ACK (ISC's method: step the rate up, then bisect; after each run the server is left to work off its
backlog), the exchanges/s actually achieved there, the average latencies, and the server's CPU time per
exchange there (user + system time of the server process from /proc); then, with perfdhcp, a boot storm
(perfdhcp --scenario avalanche, 1,000 clients at once) timed to the last ACK and the server's CPU time per
exchange at one common rate that every server sustains. Prints a table with fleetconf's figures as ratios to
each reference.

The rate search's generator (--generator): bench/dhcp/loadgen.cpp (default; perfdhcp's exchanges with
sendmmsg/recvmmsg, about ten times perfdhcp's ceiling on the 2-core machine), or perfdhcp -g single / multi.
By default the generator runs on CPU 1 and the single-threaded servers on CPU 0 (taskset; multi-threaded Kea
may use every CPU); --no-pin lets the scheduler place every process. docs/benchmarks.md has the ceilings of
each set-up.

--postgresql: the lease database instead (issue 19): fleetconf with `services.dhcp.leases` in PostgreSQL
against Kea 2.2 with `"lease-database": {"type": "postgresql"}` (schema by `kea-admin db-init pgsql`),
single- and multi-threaded, all on the same throwaway PostgreSQL (tests/support/throwaway_pg.sh: initdb in
/tmp, unix socket only, synchronous_commit on), the tables emptied between servers; plus the journal-backed
fleetconf for reference; and two fleetconf servers on that one database (fleetconf-pg-x2), each on its own
segment (a second pair of namespaces addressed like the first) with its own generator at half the rate and its
own clients, the way two sites or two hosts share one lease table: the rate search gives their sum, reported
as a ratio to one server. Pinned, the second server runs on CPU 1 beside the generators.

Every server gets the same 4 MiB socket receive buffer: fleetconf and the responder ask for it
(SO_RCVBUFFORCE); Kea and dnsmasq have no setting for it, so net.core.rmem_default is raised to 4 MiB for
the run and restored afterwards (it is not per network namespace).

usage: bench_dhcp.py FLEETCONF_BINARY [--responder PATH] [--loadgen PATH] [--smoke] [--seconds S]
                     [--generator loadgen|single|multi] [--no-pin] [--only NAME,...] [--postgresql]
"""
import argparse, json, os, re, resource, shutil, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from netns import delete_namespaces, stop, veth_pair  # noqa: E402

_ap = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="\n\n".join(__doc__.strip().split("\n\n")[1:-1]))
_ap.add_argument("fleetconf", help="the fleetconf binary")
_ap.add_argument("--smoke", action="store_true", help="one short pass per server (what ctest runs)")
_ap.add_argument("--seconds", type=int, default=5, help="seconds per generator run (default 5)")
_ap.add_argument("--responder", help="the stateless responder (default: bench/dhcp_responder next to the fleetconf binary's build)")
_ap.add_argument("--loadgen", help="the load generator (default: bench/dhcp_loadgen next to the fleetconf binary's build)")
_ap.add_argument("--generator", choices=("loadgen", "single", "multi"), default="loadgen",
                 help="the rate search's load generator: bench/dhcp/loadgen.cpp (default: the highest ceiling on the 2-core "
                 "machine, docs/benchmarks.md), or perfdhcp -g single / -g multi")
_ap.add_argument("--no-pin", action="store_true", help="let the scheduler place every process (default: the generator on CPU 1, "
                 "single-threaded servers on CPU 0)")
_ap.add_argument("--postgresql", action="store_true", help="leases in PostgreSQL: fleetconf against Kea's postgresql backend")
_ap.add_argument("--only", help="comma-separated servers to run (for profiling one server)")
ARGS = _ap.parse_args()
FC = os.path.abspath(ARGS.fleetconf)
RESPONDER = os.path.abspath(ARGS.responder or os.path.join(os.path.dirname(FC), "..", "bench", "dhcp_responder"))
LOADGEN = os.path.abspath(ARGS.loadgen or os.path.join(os.path.dirname(FC), "..", "bench", "dhcp_loadgen"))
SMOKE = ARGS.smoke
SECONDS = 1 if SMOKE else ARGS.seconds
if os.geteuid() != 0:
    print("SKIP: needs root for network namespaces" + (" (and CI is root: failing)" if os.environ.get("CI") else ""))
    sys.exit(1 if os.environ.get("CI") else 77)
for tool in ("perfdhcp", "kea-dhcp4", "dnsmasq"):
    if not shutil.which(tool):
        print(f"FAIL: {tool} is not installed (./dev deps installs it)")
        sys.exit(1)

if not os.access(RESPONDER, os.X_OK):
    print(f"FAIL: {RESPONDER}: no responder (build the dhcp_responder target, or pass --responder)")
    sys.exit(1)
if ARGS.generator == "loadgen" and not os.access(LOADGEN, os.X_OK):
    print(f"FAIL: {LOADGEN}: no load generator (build the dhcp_loadgen target, or pass --loadgen)")
    sys.exit(1)
PIN = (os.cpu_count() or 1) >= 2 and not ARGS.no_pin
SERVER_CPU = ["taskset", "-c", "0"] if PIN else []
GENERATOR_CPU = ["taskset", "-c", "1"] if PIN else []
P = f"fb{os.getpid() % 100000}"
SRV, CLI = f"{P}s", f"{P}c"
SRV2, CLI2 = f"{P}t", f"{P}d"  # the second segment (--postgresql: two servers on one database)
IF_S, IF_C = f"{P}a", f"{P}b"
tmp = tempfile.mkdtemp(prefix="fleetconf-bench-dhcp-")


def sh(*a, check=True, **kw):
    r = subprocess.run(list(a), capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(a)}: {r.stderr.strip()}")
    return r


RMEM = "/proc/sys/net/core/rmem_default"
rmem_before = None


def setup():
    global rmem_before
    veth_pair(SRV, CLI, IF_S, IF_C, "10.99.0.1/16", "10.99.0.2/16")
    if ARGS.postgresql:  # interface names and addresses are per namespace: the second segment looks like the first
        veth_pair(SRV2, CLI2, IF_S, IF_C, "10.99.0.1/16", "10.99.0.2/16")
    rmem_before = open(RMEM).read().strip()
    open(RMEM, "w").write(str(4 << 20))  # Kea and dnsmasq cannot ask for a buffer: give them the same 4 MiB


PG_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "support", "throwaway_pg.sh")
PG = {}


def pg_setup():
    """A throwaway PostgreSQL: fleetconf's schema in database postgres, Kea's (kea-admin) in database kea."""
    state = f"{tmp}/pg.state"
    r = subprocess.run(["bash", PG_SCRIPT, "start", state], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("throwaway PostgreSQL: " + r.stderr)
    PG["state"] = state
    for line in open(state):
        k, _, v = line.strip().partition("=")
        PG[k] = v
    PG["password"] = open(PG["PASSWORD_FILE"]).read().strip()
    env = {**os.environ, "PGPASSWORD": PG["password"]}
    sh(os.path.join(PG["PGBIN"], "psql"), "-q", "-h", PG["PGDIR"], "-U", "fleetconf", "-d", "postgres", "-c", "CREATE DATABASE kea", env=env)
    sh("kea-admin", "db-init", "pgsql", "-u", "fleetconf", "-p", PG["password"], "-n", "kea", "-h", PG["PGDIR"], env=env)


def pg_sql(db, statement):
    sh(os.path.join(PG["PGBIN"], "psql"), "-q", "-h", PG["PGDIR"], "-U", "fleetconf", "-d", db, "-c", statement,
       env={**os.environ, "PGPASSWORD": PG["password"]})


def teardown():
    if PG.get("state"):
        subprocess.run(["bash", PG_SCRIPT, "stop", PG["state"]], capture_output=True)
    if rmem_before is not None:
        open(RMEM, "w").write(rmem_before)
    delete_namespaces(SRV, CLI, SRV2, CLI2)
    shutil.rmtree(tmp, ignore_errors=True)


POOL = ("10.99.1.0", "10.99.255.254")


def start(name):
    d = f"{tmp}/{name}"
    os.makedirs(d, exist_ok=True)
    env = dict(os.environ)
    if name == "responder":
        cmd = [RESPONDER, IF_S]
    elif name.startswith("fleetconf"):
        site = {"networks": [{"name": IF_S, "subnet": "10.99.0.0/16", "gateway": "10.99.0.1", "dns": ["10.99.0.1"],
                              "pools": [f"{POOL[0]}-{POOL[1]}"], "lease_time": 3600}],
                "services": {"data_dir": d, "status": "off"}}
        if name.startswith("fleetconf-pg"):
            site["services"]["dhcp"] = {"leases": {"type": "postgresql", "conninfo": f"host={PG['PGDIR']} dbname=postgres user=fleetconf",
                                                   "password_file": PG["PASSWORD_FILE"]}}
        json.dump(site, open(f"{d}/site.json", "w"))
        if name.startswith("fleetconf-pg"):
            if sh(FC, "dhcp", "db", "status", "--site", f"{d}/site.json", check=False).returncode != 0:
                sh(FC, "dhcp", "db", "init", "--site", f"{d}/site.json")
            pg_sql("postgres", "DELETE FROM fleetconf_lease4")
        cmd = [FC, "--log-level", "warn", "dhcp", "serve", f"{d}/site.json"] + (["--no-sync"] if name.endswith("nosync") else [])
    elif name.startswith("kea"):
        cfg = {"Dhcp4": {
            "interfaces-config": {"interfaces": [IF_S], "dhcp-socket-type": "udp"},
            "lease-database": {"type": "postgresql", "name": "kea", "host": PG.get("PGDIR", ""), "user": "fleetconf",
                               "password": PG.get("password", "")} if "-pg-" in name else
                              {"type": "memfile", "persist": True, "name": f"{d}/leases4.csv", "lfc-interval": 0},
            "valid-lifetime": 3600, "option-data": [{"name": "routers", "data": "10.99.0.1"}, {"name": "domain-name-servers", "data": "10.99.0.1"}],
            "subnet4": [{"id": 1, "subnet": "10.99.0.0/16", "pools": [{"pool": f"{POOL[0]} - {POOL[1]}"}]}],
            "multi-threading": {"enable-multi-threading": name.endswith("mt"), "thread-pool-size": 2, "packet-queue-size": 64},
            "loggers": [{"name": "kea-dhcp4", "severity": "WARN", "output_options": [{"output": f"{d}/kea.log"}]}]}}
        json.dump(cfg, open(f"{d}/kea.json", "w"))
        if "-pg-" in name:
            pg_sql("kea", "DELETE FROM lease4")
        env.update(KEA_PIDFILE_DIR=d, KEA_LOCKFILE_DIR=d)
        cmd = ["kea-dhcp4", "-c", f"{d}/kea.json"]
    else:
        cmd = ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", f"--interface={IF_S}", "--bind-interfaces",
               f"--dhcp-range={POOL[0]},{POOL[1]},255.255.0.0,1h", f"--dhcp-leasefile={d}/dnsmasq.leases", "--no-ping",
               "--dhcp-authoritative", "--dhcp-lease-max=200000", f"--pid-file={d}/pid", "--user=root",
               "--dhcp-option=3,10.99.0.1", "--dhcp-option=6,10.99.0.1", "--quiet-dhcp"]
    p = subprocess.Popen(["ip", "netns", "exec", SRV] + (SERVER_CPU if not name.endswith("-mt") else []) + cmd, stdout=open(f"{d}/out", "w"), stderr=subprocess.STDOUT, env=env)
    if name == "fleetconf-pg-x2":  # the second server: the same site on the second segment, its own data directory
        d2 = f"{d}-b"
        os.makedirs(d2, exist_ok=True)
        site["services"]["data_dir"] = d2
        json.dump(site, open(f"{d2}/site.json", "w"))
        cmd2 = [FC, "--log-level", "warn", "dhcp", "serve", f"{d2}/site.json"]
        PAIR["proc"] = subprocess.Popen(["ip", "netns", "exec", SRV2] + (["taskset", "-c", "1"] if PIN else []) + cmd2,
                                        stdout=open(f"{d2}/out", "w"), stderr=subprocess.STDOUT, env=env)
    time.sleep(1.0)
    if p.poll() is not None:
        raise RuntimeError(f"{name} did not start: " + open(f"{d}/out").read()[-800:])
    if PAIR.get("proc") and PAIR["proc"].poll() is not None:
        raise RuntimeError(f"{name} (second server) did not start: " + open(f"{d}-b/out").read()[-800:])
    return p


PAIR = {}  # the second server of fleetconf-pg-x2 while it runs


def rcvbuf_errors(netns):
    """UDP datagrams dropped because a socket's receive buffer was full, in one namespace (/proc/net/snmp)."""
    rows = [l.split() for l in sh("ip", "netns", "exec", netns, "cat", "/proc/net/snmp").stdout.splitlines() if l.startswith("Udp:")]
    return int(dict(zip(rows[0][1:], rows[1][1:]))["RcvbufErrors"])


def perfdhcp(*args, timeout=120):
    overflow0 = (rcvbuf_errors(SRV), rcvbuf_errors(CLI))
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    r = sh("ip", "netns", "exec", CLI, *GENERATOR_CPU, "perfdhcp", "-4", "-g", "single" if ARGS.generator == "loadgen" else ARGS.generator, "-l", "10.99.0.2", "-W", "500000", *args, "10.99.0.1",
           check=False, timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = r.stdout + r.stderr
    sections = re.split(r"\*\*\*Statistics for: ", out)
    def field(sec, name):
        m = re.search(name + r": ([0-9.]+)", sec)
        return float(m.group(1)) if m else None
    res = {"rc": r.returncode, "out": out,
           "gen_cpu": ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / (time.monotonic() - t0),
           # where packets were lost: the server's socket or perfdhcp's own (a generator that cannot keep up)
           "srv_overflow": rcvbuf_errors(SRV) - overflow0[0], "gen_overflow": rcvbuf_errors(CLI) - overflow0[1]}
    for sec in sections[1:]:
        key = "do" if sec.startswith("DISCOVER-OFFER") else "ra" if sec.startswith("REQUEST-ACK") else None
        if key:
            res[key + "_sent"] = field(sec, "sent packets") or 0
            res[key + "_recv"] = field(sec, "received packets") or 0
            res[key + "_drop"] = field(sec, "drops ratio") or 0
            res[key + "_delay"] = field(sec, "avg delay")
    m = re.search(r"Rate: ([0-9.]+)", out)
    res["rate"] = float(m.group(1)) if m else 0.0
    return res


def machine_busy():
    """(busy, total) CPU time of the whole machine from /proc/stat, in ticks."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = f[3] + f[4]
    return sum(f) - idle, sum(f)


def loadgen(rate, seconds, clients):
    """One fixed-rate run of bench/dhcp/loadgen.cpp; the same fields as perfdhcp(). With two servers
    (fleetconf-pg-x2) one generator per segment at half the rate, each with its own half of the clients
    (MACs 02:00:... and 02:01:...), run at once; the figures are their sums."""
    segments = [(SRV, CLI, 0)] + ([(SRV2, CLI2, 1)] if PAIR.get("proc") else [])
    overflow0 = [(rcvbuf_errors(s), rcvbuf_errors(c)) for s, c, _ in segments]
    before, t0, m0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic(), machine_busy()
    procs = [subprocess.Popen(["ip", "netns", "exec", c, *GENERATOR_CPU, LOADGEN, "--local", "10.99.0.2", "--server", "10.99.0.1",
                               "--rate", str(rate / len(segments)), "--seconds", str(seconds), "--clients", str(clients // len(segments)),
                               "--mac-byte", str(b)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _, c, b in segments]
    outs = [p.communicate(timeout=seconds + 60) for p in procs]
    after, m1 = resource.getrusage(resource.RUSAGE_CHILDREN), machine_busy()
    parts = []
    for o, _ in outs:
        try:
            parts.append(json.loads(o))
        except ValueError:
            pass
    res = {}
    if len(parts) == len(segments):
        for k in ("do_sent", "do_recv", "do_late", "ra_sent", "ra_recv", "ra_late", "send_errors", "rate"):
            res[k] = sum(x.get(k, 0) for x in parts)
        for ph in ("do", "ra"):
            sent, recv = res[ph + "_sent"], res[ph + "_recv"]
            res[ph + "_drop"] = 100.0 * (sent - recv) / sent if sent else 100.0
            res[ph + "_delay"] = sum(x[ph + "_delay"] * x[ph + "_recv"] for x in parts if x.get(ph + "_delay") is not None) / recv if recv else None
    res.update(rc=max(p.returncode for p in procs), out="".join(o + e for o, e in outs),
               gen_cpu=((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / (time.monotonic() - t0),
               machine_cpu=(m1[0] - m0[0]) / max(1, m1[1] - m0[1]),
               srv_overflow=sum(rcvbuf_errors(s) - o[0] for (s, _, _), o in zip(segments, overflow0)),
               gen_overflow=sum(rcvbuf_errors(c) - o[1] for (_, c, _), o in zip(segments, overflow0)))
    return res


SERVER = None  # the process under test (for its CPU time in each run)


def run_at(rate, clients=50000):
    """One run at `rate`; a failed run is repeated once, so that one stall of this shared machine (a slow
    disk sync, a noisy neighbour) does not end the search: a rate fails when two runs in a row fail."""
    for attempt in (1, 2):
        c0 = server_cpu()
        if ARGS.generator == "loadgen":
            r = loadgen(rate, SECONDS, clients)
        else:
            r = perfdhcp("-r", str(rate), "-p", str(SECONDS), "-R", str(clients))
        used = server_cpu() - c0
        r["cpu_us_max"] = used * 1e6 / r["ra_recv"] if r.get("ra_recv") else None
        settle()
        ok = r.get("do_sent", 0) > 0 and r.get("do_drop", 100) <= 2.5 and r.get("ra_drop", 100) <= 2.5
        if ok or SMOKE:
            break
    return ok, r


def settle():
    """Waits (at most 5 s) until the server has worked off what queued up: a run that overloaded it must not
    leave a backlog that the next, lower rate inherits."""
    if not SERVER:
        return
    last, quiet_since, t_end = server_cpu(), time.monotonic(), time.monotonic() + 5
    while time.monotonic() < t_end:
        time.sleep(0.1)
        now = server_cpu()
        if now > last + 0.02:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= 0.3:
            return


def search():
    """Highest rate with <= 2.5% drops: double until it fails, then bisect five steps."""
    rates = [200] if SMOKE else [500, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000]
    best, best_r, bad = 0, None, None
    for rate in rates:
        ok, r = run_at(rate)
        if not ok:
            bad = rate
            if SMOKE:  # a smoke run only shows that the server answers: its figures are kept whatever the drops
                best_r = r
            break
        best, best_r = rate, r
    if not SMOKE and best == 0:  # could not sustain the first step: look below it
        for rate in (250, 100, 50):
            ok, r = run_at(rate)
            if ok:
                best, best_r, bad = rate, r, bad or rates[0]
                break
    if not SMOKE and bad and best:
        lo, hi = best, bad
        for _ in range(5):  # resolution: 1/32 of the bracket
            mid = (lo + hi) // 2
            ok, r = run_at(mid)
            if ok:
                lo, best, best_r = mid, mid, r
            else:
                hi = mid
    return best, best_r


def cpu_seconds(pid):
    """user + system CPU seconds of a process (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu():
    """CPU seconds of the server under test (both servers of fleetconf-pg-x2)."""
    return sum(cpu_seconds(p.pid) for p in [SERVER, PAIR.get("proc")] if p)


EFFICIENCY_RATE = 200 if SMOKE else 2000


def efficiency(p):
    """Server CPU microseconds per 4-way exchange at EFFICIENCY_RATE (a rate every server sustains)."""
    c0 = server_cpu()
    r = perfdhcp("-r", str(EFFICIENCY_RATE), "-p", str(max(SECONDS, 2)), "-R", "50000")
    used = server_cpu() - c0
    exchanges = r.get("ra_recv", 0)
    return (used * 1e6 / exchanges if exchanges else None), exchanges


def avalanche(clients):
    t0 = time.time()
    r = perfdhcp("--scenario", "avalanche", "-R", str(clients), timeout=180)
    return time.time() - t0, r


SERVERS = ["responder", "fleetconf", "fleetconf-nosync", "kea-st", "kea-mt", "dnsmasq"]
if ARGS.postgresql:
    SERVERS = ["responder", "fleetconf-pg", "fleetconf-pg-x2", "fleetconf", "kea-pg-st", "kea-pg-mt"]
if ARGS.only:  # for profiling one server; the full table needs all of them
    SERVERS = ARGS.only.split(",")
LABEL = {"responder": "stateless responder (the ceiling)", "fleetconf": "fleetconf (durable: synced before ACK)", "fleetconf-nosync": "fleetconf --no-sync",
         "kea-st": "Kea 2.2 memfile, single-threaded", "kea-mt": "Kea 2.2 memfile, multi-threaded (2)",
         "dnsmasq": "dnsmasq 2.90 --no-ping", "fleetconf-pg": "fleetconf, leases in PostgreSQL (durable)",
         "fleetconf-pg-x2": "two fleetconf servers, one PostgreSQL",
         "kea-pg-st": "Kea 2.2 postgresql, single-threaded", "kea-pg-mt": "Kea 2.2 postgresql, multi-threaded (2)"}
results = {}
try:
    setup()
    if ARGS.postgresql:
        pg_setup()
    for name in SERVERS:
        p = start(name)
        SERVER = p
        try:
            cpu_us, _ = efficiency(p)
            best, r = search()
            storm_clients = 100 if SMOKE else 1000
            storm_time, sr = avalanche(storm_clients)
            acked = int(sr.get("ra_recv", 0))
            results[name] = {"rate": best, "achieved": (r or {}).get("rate", 0.0), "do_delay": (r or {}).get("do_delay"),
                             "ra_delay": (r or {}).get("ra_delay"), "storm_s": storm_time, "storm_acked": acked,
                             "storm_clients": storm_clients, "cpu_us": cpu_us, "cpu_us_max": (r or {}).get("cpu_us_max"),
                             "gen_cpu": (r or {}).get("gen_cpu", 0.0), "machine_cpu": (r or {}).get("machine_cpu"),
                             "srv_overflow": (r or {}).get("srv_overflow", 0), "gen_overflow": (r or {}).get("gen_overflow", 0)}
        finally:
            stop(p)
            if PAIR.get("proc"):
                stop(PAIR.pop("proc"))
        print(f"  measured {name}: {results[name]}", file=sys.stderr)
finally:
    teardown()

GEN_LABEL = "dhcp_loadgen (rate search), perfdhcp -g single (CPU at a fixed rate, boot storm)" if ARGS.generator == "loadgen" else f"perfdhcp -g {ARGS.generator}"
GEN = "dhcp_loadgen" if ARGS.generator == "loadgen" else "perfdhcp"
print(f"\nDHCP benchmark ({'smoke, ' if SMOKE else ''}{SECONDS} s per rate step; {GEN_LABEL} as relay across a veth pair; "
      f"/16 pool; {'generators on CPU 1, servers on CPU 0 (multi-threaded Kea on all)' if PIN else 'not pinned'}; 4 MiB receive buffers)")
ceiling = results.get("responder", {}).get("achieved", 0)


def bound(name):
    """Why a server's figure is the generator's rather than the server's, or None."""
    x = results.get(name, {})
    if name == "responder" or not x:
        return None
    if x.get("gen_cpu", 0) >= 0.95:
        return f"{GEN} at {x['gen_cpu'] * 100:.0f}% of a core"
    if ceiling and x.get("achieved", 0) >= 0.9 * ceiling:
        return f"within 10% of the ceiling ({x['achieved']:.0f} of {ceiling:.0f})"
    return None


print(f"{'server':42} {'max rate':>9} {'exch/s':>9} {'ceiling':>8} {'D-O ms':>7} {'R-A ms':>7} {'storm s':>8} {'acked':>9} "
      f"{'CPU us/exch':>11} {'at max':>7} {'gen. CPU':>12}")
for name in SERVERS:
    x = results.get(name)
    if not x:
        continue
    fmt = lambda v: f"{v:7.3f}" if isinstance(v, float) else "      -"
    share = f"{x['achieved'] / ceiling * 100:7.0f}%" if ceiling else "       -"
    print(f"{LABEL[name]:42} {x['rate']:9d} {x['achieved']:9.0f} {share} {fmt(x['do_delay'])} {fmt(x['ra_delay'])} "
          f"{x['storm_s']:8.2f} {x['storm_acked']:4d}/{x['storm_clients']:<4d} "
          f"{(x['cpu_us'] or 0):11.1f} {(x['cpu_us_max'] or 0):7.1f} {x['gen_cpu'] * 100:11.0f}%")
print(f"(ceiling: exchanges/s as a share of the stateless responder's maximum in this run; CPU us/exch at {EFFICIENCY_RATE}/s "
      "and at each server's own maximum)")
MAIN = "fleetconf-pg" if ARGS.postgresql else "fleetconf"
print(f"\n{LABEL[MAIN]}, as a ratio of each reference (exchanges/s at <= 2.5% drops):")
f = results.get(MAIN, {}).get("achieved", 0)
for name in [n for n in SERVERS if not n.startswith("fleetconf") and n != "responder"]:
    ref = results.get(name, {}).get("achieved", 0)
    why = bound(MAIN) or bound(name)
    if why:
        print(f"  vs {LABEL[name]:40}     generator-bound, no ratio ({MAIN if bound(MAIN) else name}: {why})")
    else:
        print(f"  vs {LABEL[name]:40} {f / ref:5.2f}x" if ref else f"  vs {LABEL[name]:40}     -")
print(f"\n{LABEL[MAIN]}, server CPU per exchange at {EFFICIENCY_RATE}/s, as a ratio (reference CPU / fleetconf CPU):")
fc = results.get(MAIN, {}).get("cpu_us")
for name in [n for n in SERVERS if not n.startswith("fleetconf") and n != "responder"]:
    ref = results.get(name, {}).get("cpu_us")
    print(f"  vs {LABEL[name]:40} {ref / fc:5.2f}x" if ref and fc else f"  vs {LABEL[name]:40}     -")
if results.get("fleetconf-pg", {}).get("achieved") and "fleetconf-pg-x2" in results:
    one, two = results["fleetconf-pg"], results["fleetconf-pg-x2"]
    busy = lambda x: f"{x['machine_cpu'] * 100:.0f}%" if x.get("machine_cpu") is not None else "-"
    print(f"\ntwo fleetconf servers on one PostgreSQL against one (exchanges/s at <= 2.5% drops): {two['achieved'] / one['achieved']:.2f}x "
          f"({two['achieved']:.0f} / {one['achieved']:.0f}); the whole machine's CPU busy during the run at the max rate: "
          f"one server {busy(one)}, two {busy(two)} (near 100% the figure is the machine's: servers, PostgreSQL and generators share 2 cores)")
print(f"(gen. CPU: {GEN}'s share of one core at the max rate; near 100% the rate is the generator's limit)")
print(f"\npackets lost to a full socket receive buffer at the max rate (server's socket / {GEN}'s socket):")
for name in SERVERS:
    if name in results:
        print(f"  {LABEL[name]:42} {results[name]['srv_overflow']:7d} / {results[name]['gen_overflow']:7d}")
# Each server must answer (exchanges completed in the rate run and ACKs in the storm); no threshold on drops
# or speed here: figures come from full runs on a quiet machine, never from a pass/fail check.
answered = [n for n in SERVERS if results.get(n, {}).get("achieved", 0) > 0 and results.get(n, {}).get("storm_acked", 0) > 0]
silent = [n for n in SERVERS if n not in answered]
for n in silent:
    print(f"FAIL {LABEL.get(n, n)}: no exchange completed")
print(f"{len(answered)} passed, {len(silent)} failed")
sys.exit(0 if not silent else 1)
