#!/usr/bin/env python3
"""Soak: `fleetconf serve` (DHCP, git host, block editor) under concurrent load for a bounded time
(FLEETCONF_SOAK_SECONDS, default 20), across a veth pair between two namespaces this test creates and
always deletes. Load: a scripted DHCP relay cycling DORA for 200 clients; git clones (read-only
unikernel) and pushes (read-write unikernel) over HTTP; route changes through the block editor's control
protocol. Afterwards: every acknowledged lease is in the journal with its address, every acknowledged push
is in the repository, every acknowledged route change is on the device, no file descriptor is left open,
and serve stops cleanly (built with the sanitizers, as `./dev test` also runs it, a leak found by
LeakSanitizer at exit makes that exit status non-zero).

usage: soak_test.py FLEETCONF_BINARY
"""
import argparse, json, os, signal, subprocess, sys, tempfile, threading, time

from nstest import Harness, require_root_and_netns, wait_for

_ap = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n\n")[0])
_ap.add_argument("fleetconf", help="the fleetconf binary to test")
FC = os.path.abspath(_ap.parse_args().fleetconf)
HERE = os.path.dirname(os.path.abspath(__file__))
SECONDS = float(os.environ.get("FLEETCONF_SOAK_SECONDS", "20"))
require_root_and_netns()

P = f"fsk{os.getpid() % 100000}"
HOST, FLEET = f"{P}h", f"{P}f"
IF = f"{P}v"
tmp = tempfile.mkdtemp(prefix="fleetconf-soak-")
DATA = f"{tmp}/data"
ENV = dict(os.environ, HOME=tmp, GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", GIT_AUTHOR_NAME="Soak",
           GIT_AUTHOR_EMAIL="soak@fleet.test", GIT_COMMITTER_NAME="Soak", GIT_COMMITTER_EMAIL="soak@fleet.test")
H = Harness(P, ENV)
sh, ns, check, procs = H.sh, H.ns, H.check, H.procs


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kb(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"):
            return int(l.split()[1])
    return 0


try:
    H.add_namespaces(HOST, FLEET)
    H.veth(HOST, IF, FLEET, "eth0")
    sh("ip", "-n", HOST, "addr", "add", "10.66.0.1/23", "dev", IF)
    sh("ip", "-n", FLEET, "addr", "add", "10.66.0.250/23", "dev", "eth0")
    for n, i in ((HOST, IF), (FLEET, "eth0")):
        sh("ip", "-n", n, "link", "set", i, "up")
        sh("ip", "-n", n, "link", "set", "lo", "up")
    site = {
        "networks": [{"name": IF, "subnet": "10.66.0.0/23", "gateway": "10.66.0.1", "pools": ["10.66.1.0-10.66.1.254"], "lease_time": 600}],
        "unikernels": [
            {"name": "proxy", "network": IF, "address": "10.66.0.10", "dhcp": False, "block": {}},
            {"name": "web", "network": IF, "git": {"access": "read-only"}},
            {"name": "cal", "network": IF, "git": {"access": "read-write"}}],
        "services": {"data_dir": DATA, "status": "off", "git": {"http": "10.66.0.1:8080"},
                     "block": {"listen": "127.0.0.1:7397"}}}
    json.dump(site, open(f"{tmp}/site.json", "w"))
    serve = subprocess.Popen(["ip", "netns", "exec", HOST, FC, "serve", f"{tmp}/site.json"], stdout=open(f"{tmp}/serve.log", "w"),
                             stderr=subprocess.STDOUT)
    procs.append(serve)
    for _ in range(100):
        if "service(s) running" in open(f"{tmp}/serve.log").read() or serve.poll() is not None:
            break
        time.sleep(0.1)
    check("serve runs", serve.poll() is None, open(f"{tmp}/serve.log").read()[-600:])
    tokens = {n: sh(FC, "git", "token", n, "--site", f"{tmp}/site.json").stdout.strip() for n in ("web", "cal")}
    url = {n: f"http://{n}:{tokens[n]}@10.66.0.1:8080/{n}.git" for n in ("web", "cal")}
    keys = ["--connect", "127.0.0.1:7397", "--key-file", f"{DATA}/block/keys"]

    # Warm-up (one of each), then the descriptor and memory baseline.
    ns(FLEET, "git", "clone", "-q", "--depth", "1", url["web"], f"{tmp}/warm")
    ns(FLEET, "git", "clone", "-q", url["cal"], f"{tmp}/cal")
    ns(HOST, FC, "block", "upsert", "warm.example", "10.66.0.99", "443", *keys)
    time.sleep(0.5)
    base_fds, base_rss = fds(serve.pid), rss_kb(serve.pid)

    stop_at = time.time() + SECONDS
    result = {"clones": 0, "clone_fail": 0, "pushed": [], "push_fail": 0, "routes": {}, "route_fail": 0, "errors": []}
    lock = threading.Lock()

    def worker(f):
        """Runs f; an exception is recorded (and fails the test) instead of ending only its thread."""
        def run():
            try:
                f()
            except Exception as e:  # noqa: BLE001 - any failure of a worker is a test failure
                with lock:
                    result["errors"].append(f"{f.__name__}: {type(e).__name__}: {e}")
        return run

    def cloner():
        k = 0
        while time.time() < stop_at:
            d = f"{tmp}/c{k}"
            r = ns(FLEET, "git", "clone", "-q", "--depth", "1", url["web"], d, check=False)
            with lock:
                result["clones" if r.returncode == 0 else "clone_fail"] += 1
            sh("rm", "-rf", d)
            k += 1

    def pusher():
        k = 0
        while time.time() < stop_at:
            open(f"{tmp}/cal/n.json", "w").write(json.dumps({"n": k}) + "\n")
            sh("git", "-C", f"{tmp}/cal", "add", "n.json")
            sh("git", "-C", f"{tmp}/cal", "commit", "-q", "-m", f"change {k}")
            r = ns(FLEET, "git", "-C", f"{tmp}/cal", "push", "-q", "origin", "HEAD", check=False)
            with lock:
                if r.returncode == 0:
                    result["pushed"].append(sh("git", "-C", f"{tmp}/cal", "rev-parse", "HEAD").stdout.strip())
                else:
                    result["push_fail"] += 1
            k += 1

    def router():
        k = 0
        while time.time() < stop_at:
            host, port = f"h{k % 50}.example", 1000 + k
            r = ns(HOST, FC, "block", "upsert", host, f"10.66.0.{k % 200 + 20}", str(port), *keys, check=False)
            with lock:
                if r.returncode == 0:
                    result["routes"][host] = f"10.66.0.{k % 200 + 20}:{port}"
                else:
                    result["route_fail"] += 1
            k += 1

    relay = subprocess.Popen(["ip", "netns", "exec", FLEET, "python3", os.path.join(HERE, "dhcp_relay.py"), "10.66.0.250", "10.66.0.1",
                              "200", str(SECONDS)], stdout=subprocess.PIPE, text=True)
    procs.append(relay)
    threads = [threading.Thread(target=worker(f)) for f in (cloner, pusher, router)]
    for t in threads:
        t.start()
    peak_fds = base_fds
    while any(t.is_alive() for t in threads):
        if serve.poll() is None:
            peak_fds = max(peak_fds, fds(serve.pid))
        time.sleep(0.2)
    acked = json.loads(relay.communicate(timeout=60)[0] or "{}")
    # Sessions close after their clients have gone: wait (bounded) for the descriptor count to come back down.
    settled, end_fds = wait_for(lambda: fds(serve.pid), lambda n: n <= base_fds, seconds=20)
    end_rss = rss_kb(serve.pid)
    print(f"     {SECONDS:.0f} s: {len(acked)} clients ACKed, {result['clones']} clones ({result['clone_fail']} failed), "
          f"{len(result['pushed'])} pushes ({result['push_fail']} refused), {len(result['routes'])} hosts routed "
          f"({result['route_fail']} failed); descriptors {base_fds} -> peak {peak_fds} -> {end_fds}; RSS {base_rss} -> {end_rss} KiB")
    check("the load ran: leases, clones, pushes and route changes were all acknowledged",
          len(acked) > 0 and result["clones"] > 0 and result["pushed"] and result["routes"], result)
    check("no worker raised an exception", not result["errors"], result["errors"])
    check("no clone failed", result["clone_fail"] == 0, result["clone_fail"])
    check("no push failed (every push is a fast-forward of the last accepted one)", result["push_fail"] == 0, result["push_fail"])
    check("no route change failed", result["route_fail"] == 0, result["route_fail"])
    check("no file descriptor left open after the load (count back to its start within 20 s)", settled, (base_fds, end_fds))
    serve.send_signal(signal.SIGTERM)
    rc = serve.wait(timeout=30)
    log = open(f"{tmp}/serve.log").read()
    check("serve stops cleanly (exit 0: no sanitizer report at exit)", rc == 0 and "ERROR: LeakSanitizer" not in log and
          "ERROR: AddressSanitizer" not in log, (rc, log[-1500:]))

    leases = {l["mac"]: l for l in json.loads(sh(FC, "dhcp", "leases", "--json", f"{tmp}/site.json").stdout)}
    lost = [m for m, a in acked.items() if leases.get(m, {}).get("address") != a or leases[m]["state"] != "bound"]
    check(f"no lost lease: all {len(acked)} acknowledged leases are in the journal, bound, same address", not lost, lost[:5])
    log_ids = set(sh("git", "--git-dir", f"{DATA}/git/repos/cal.git", "log", "--format=%H", "main").stdout.split())
    missing = [c for c in result["pushed"] if c not in log_ids]
    check(f"no lost push: all {len(result['pushed'])} acknowledged pushes are in the repository", not missing, missing[:3])
    r = sh(FC, "block", "dump", "--json", f"{DATA}/block/proxy.img", check=False)
    on_disk = {x["host"]: f'{x["address"]}:{x["port"]}' for x in json.loads(r.stdout)["routes"]} if r.returncode == 0 else {}
    wrong = {h: (v, on_disk.get(h)) for h, v in result["routes"].items() if on_disk.get(h) != v}
    check(f"no lost route change: the last acknowledged value of all {len(result['routes'])} hosts is on the device", not wrong,
          list(wrong.items())[:3])
finally:
    H.teardown()
H.finish(tmp)
