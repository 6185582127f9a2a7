#!/usr/bin/env python3
"""DHCP under git load: one `fleetconf serve` running DHCP and git together, against the same two services
in two processes, in one run (issue 17). A fleet boot is this load: every unikernel does DHCP, then a git
fetch.

DHCP: perfdhcp sends DISCOVERs at a fixed rate (default 400/s, far below what it or the server can do:
the generator is not the bottleneck, and its CPU share is printed) across a veth pair between two network
namespaces that this script creates and deletes. Git: on loopback inside the server's namespace,
bench/gitconf/git_load replays depth-1 fetches from many clients, and stock git clients make shallow clones
of a long history (walks of tens of thousands of commits), in a loop, for the whole run. Printed: the
DISCOVER-OFFER drops and delays in each set-up, and the ratio of one process to two. No thresholds.

usage: bench_isolation.py FLEETCONF GIT_LOAD [--seconds 10] [--rate 400] [--commits 60000] [--smoke]
"""
import argparse, json, os, re, shutil, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from netns import delete_namespaces, sh, stop, veth_pair  # noqa: E402

ap = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n\n")[0])
ap.add_argument("fleetconf")
ap.add_argument("git_load")
ap.add_argument("--seconds", type=float, default=10, help="seconds of DHCP load per set-up (default 10)")
ap.add_argument("--rate", type=int, default=400, help="DISCOVERs per second (default 400)")
ap.add_argument("--commits", type=int, default=60000, help="history of the repository the shallow clones walk (default 60000)")
ap.add_argument("--clients", type=int, default=32, help="git_load's concurrent fetch clients (default 32)")
ap.add_argument("--smoke", action="store_true", help="a short run that only shows the harness works (CI)")
a = ap.parse_args()
if a.smoke:
    a.seconds, a.commits, a.clients = 2, 3000, 8
FC, LOAD = os.path.abspath(a.fleetconf), os.path.abspath(a.git_load)
if os.geteuid() != 0:
    print("SKIP: needs root for network namespaces" + (" (and CI is root: failing)" if os.environ.get("CI") else ""))
    sys.exit(1 if os.environ.get("CI") else 77)
if not shutil.which("perfdhcp"):
    print("FAIL: perfdhcp is not installed (./dev deps installs it)")
    sys.exit(1)

P = f"fi{os.getpid() % 100000}"
SRV, CLI, IF_S, IF_C = f"{P}s", f"{P}c", f"{P}a", f"{P}b"
tmp = tempfile.mkdtemp(prefix="fleetconf-bench-isolation-")
procs = []


def in_srv(*args):
    return ["ip", "netns", "exec", SRV, *args]


def site(data, dhcp, git):
    return {"networks": [{"name": IF_S, "subnet": "10.98.0.0/16", "gateway": "10.98.0.1", "pools": ["10.98.1.0-10.98.255.254"]}],
            "unikernels": [{"name": "fleet", "network": IF_S, "git": {"git_protocol": True}}],
            "services": {"data_dir": data, "status": "off", "block": {"enabled": False},
                         "dhcp": {"enabled": dhcp}, "git": {"enabled": git, "git": "127.0.0.1:0", "read_timeout": 120},
                         "limits": {"git": {"max_connections": 4096, "max_per_address": 4095}}}}


def start(name, s, *flags):
    d = s["services"]["data_dir"]
    os.makedirs(d, exist_ok=True)
    json.dump(s, open(f"{d}/site.json", "w"))
    log = f"{d}/serve.log"
    p = subprocess.Popen(in_srv(FC, "--log-level", "warn,serve=info,git=info", "serve", f"{d}/site.json", *flags),
                         stdout=open(log, "w"), stderr=subprocess.STDOUT)
    procs.append(p)
    for _ in range(300):
        if p.poll() is not None:
            raise RuntimeError(f"{name} did not start: " + open(log).read()[-800:])
        if "service(s) running" in open(log).read():
            break
        time.sleep(0.1)
    m = re.search(r"git:// listening on 127\.0\.0\.1:(\d+)", open(log).read())
    return p, int(m.group(1)) if m else 0


def make_repo(data):
    """The served repository: `commits` commits of one small file (fast-import), written through the file system."""
    sh(FC, "git", "create", "--site", f"{data}/site.json")
    bare = f"{data}/git/repos/fleet.git"
    stream = ["reset refs/heads/main\n\n"]  # a root of its own, not on top of the first commit `git create` made
    for i in range(a.commits):
        content = f'{{"generation": {i}}}\n'
        stream.append(f"commit refs/heads/main\ncommitter bench <bench@fleetconf> {1700000000 + i} +0000\ndata 4\ngen\n"
                      + ("from refs/heads/main^0\n" if i else "")
                      + f"M 100644 inline config.json\ndata {len(content)}\n{content}\n")
    sh("git", "--git-dir", bare, "fast-import", "--force", "--quiet", input="".join(stream))
    return sh("git", "--git-dir", bare, "rev-parse", "main").stdout.strip()


def git_load_run(port, tip, seconds, out):
    r = sh(*in_srv(LOAD, "--mode", "git", "--port", str(port), "--repo", "fleet", "--want", tip, "--clients", str(a.clients),
                   "--seconds", str(seconds)), check=False)
    out.append(json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else {"fetches": 0, "errors": 1, "rate": 0, "why": r.stderr[-300:]})


def shallow_clones(port, until, out):
    n = 0
    while time.monotonic() < until:
        d = tempfile.mkdtemp(dir=tmp)
        r = sh(*in_srv("git", "clone", "-q", "--bare", f"--depth={a.commits}", f"git://127.0.0.1:{port}/fleet.git", d), check=False,
               env=dict(os.environ, HOME=tmp, GIT_CONFIG_NOSYSTEM="1"))
        shutil.rmtree(d, ignore_errors=True)
        n += r.returncode == 0
    out.append(n)


def perfdhcp(seconds):
    p = subprocess.Popen(["ip", "netns", "exec", CLI, "perfdhcp", "-4", "-g", "single", "-W", "500000", "-l", "10.98.0.2", "-r", str(a.rate),
                          "-p", str(int(seconds)), "-R", "60000", "10.98.0.1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.monotonic()
    out = p.stdout.read()
    _, _, usage = os.wait4(p.pid, 0)  # this process tree's CPU alone (not the git clients')
    gen_cpu = (usage.ru_utime + usage.ru_stime) / (time.monotonic() - t0)
    class R:
        stdout, stderr = out, ""
    r = R()
    out = r.stdout + r.stderr
    sec = next((s for s in re.split(r"\*\*\*Statistics for: ", out) if s.startswith("DISCOVER-OFFER")), "")

    def field(name):
        m = re.search(name + r": ([0-9.]+)", sec)
        return float(m.group(1)) if m else float("nan")
    return {"sent": field("sent packets"), "received": field("received packets"), "drops": field("drops ratio"),
            "avg_ms": field("avg delay"), "max_ms": field("max delay"),
            "gen_cpu": gen_cpu}


def measure(name, git_port, tip):
    """DHCP at the fixed rate while git load runs for the whole measurement."""
    until = time.monotonic() + a.seconds + 2
    loads, clones = [], []
    threads = [threading.Thread(target=git_load_run, args=(git_port, tip, a.seconds + 2, loads))]
    threads += [threading.Thread(target=shallow_clones, args=(git_port, until, clones)) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(1)  # the git load is running before the first DISCOVER
    d = perfdhcp(a.seconds)
    for t in threads:
        t.join()
    d["fetches_s"] = loads[0]["rate"] if loads else 0
    d["git_errors"] = loads[0].get("errors", 0) if loads else 1
    d["why"] = (loads[0].get("why", "") or json.dumps(loads[0])[:300]) if loads else "no git_load result"
    d["clones"] = sum(clones)
    return d


try:
    veth_pair(SRV, CLI, IF_S, IF_C, "10.98.0.1/16", "10.98.0.2/16")

    rows = {}
    # One process: DHCP and git in one `fleetconf serve`.
    one = site(f"{tmp}/one", True, True)
    os.makedirs(f"{tmp}/one", exist_ok=True)
    json.dump(one, open(f"{tmp}/one/site.json", "w"))
    tip = make_repo(f"{tmp}/one")
    p, port = start("one process", one)
    rows["one process (DHCP + git)"] = measure("one", port, tip)
    stop(p)
    # Two processes: the same services apart.
    dh, gi = site(f"{tmp}/two-dhcp", True, False), site(f"{tmp}/two-git", False, True)
    os.makedirs(f"{tmp}/two-git", exist_ok=True)
    json.dump(gi, open(f"{tmp}/two-git/site.json", "w"))
    tip2 = make_repo(f"{tmp}/two-git")
    p1, _ = start("dhcp process", dh, "--no-git")
    p2, port = start("git process", gi, "--no-dhcp")
    rows["two processes (DHCP | git)"] = measure("two", port, tip2)
    stop(p1)
    stop(p2)

    print(f"\nDHCP under git load{' (smoke)' if a.smoke else ''}: perfdhcp DISCOVER at {a.rate}/s for {a.seconds:g} s across a veth pair; "
          f"git: {a.clients} git_load clients (depth-1 fetches) + 2 loops of shallow clones of a {a.commits}-commit history, loopback")
    print(f"{'set-up':30} {'sent':>7} {'drops %':>8} {'avg ms':>8} {'max ms':>8} {'fetches/s':>10} {'clones':>7} {'perfdhcp CPU':>13}")
    for name, r in rows.items():
        print(f"{name:30} {r['sent']:7.0f} {r['drops']:8.2f} {r['avg_ms']:8.3f} {r['max_ms']:8.3f} {r['fetches_s']:10.1f} {r['clones']:7d} "
              f"{100 * r['gen_cpu']:12.0f}%")
    one_r, two_r = rows["one process (DHCP + git)"], rows["two processes (DHCP | git)"]
    ratio = lambda x, y: f"{x / y:.2f}x" if y and y == y and x == x else "n/a"
    print(f"one process / two processes: avg delay {ratio(one_r['avg_ms'], two_r['avg_ms'])}, max delay "
          f"{ratio(one_r['max_ms'], two_r['max_ms'])}, drops {one_r['drops']:.2f}% vs {two_r['drops']:.2f}%")
    print("(perfdhcp CPU: the generator's share of a core; at this fixed rate it is far from its limit, so the delays are the servers')")
    bad = [n for n, r in rows.items() if not r["sent"] or r["sent"] != r["sent"] or r["git_errors"]]
    if bad:
        print("FAIL: no DHCP measured, or git fetches failed, in: " + ", ".join(bad), [r.get("why") for r in rows.values()])
        sys.exit(1)
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
    delete_namespaces(SRV, CLI)
    shutil.rmtree(tmp, ignore_errors=True)
