#!/usr/bin/env python3
"""gitconf fetch benchmark: a booting fleet (50 concurrent clients repeating a depth-1 fetch of the
tip of a configuration repository of about 200 files and 100 commits) against fleetconf and, in the
same run, the reference servers on the same repository: `git daemon` (git://) and `git http-backend`
behind busybox httpd's CGI (smart HTTP). Requests are replayed by bench/gitconf/git_load, so the git
client's own work does not hide the servers'. Everything listens on 127.0.0.1.

usage: bench_gitconf.py FLEETCONF GIT_LOAD [--seconds 5] [--clients 50] [--smoke]
"""
import argparse, json, os, shutil, signal, socket, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("fleetconf")
ap.add_argument("git_load")
ap.add_argument("--seconds", type=float, default=5)
ap.add_argument("--clients", type=int, default=50)
ap.add_argument("--smoke", action="store_true", help="a short run that checks the harness (CI), no thresholds")
a = ap.parse_args()
if a.smoke:
    a.seconds, a.clients = 0.5, 4
FC, LOAD = os.path.abspath(a.fleetconf), os.path.abspath(a.git_load)
for tool in ("git", "busybox"):
    if not shutil.which(tool):
        print(f"FAIL: {tool} is not installed (./dev deps installs it)")
        sys.exit(1)
tmp = tempfile.mkdtemp(prefix="fleetconf-gitbench-")
ENV = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="b@b",
           HOME=tmp, GIT_CONFIG_NOSYSTEM="1")
procs = []


def sh(*args, cwd=None, env=None):
    return subprocess.run(list(args), cwd=cwd, env=env or ENV, check=True, capture_output=True).stdout


def listening_ports(proc, n, timeout=15):
    """The TCP ports `proc` listens on, once it listens on `n` of them. Every server here is started on port 0
    (the kernel picks a free port; nothing is guessed, tests/README.md) and its ports are read from ss."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
        ports = sorted({int(l.split()[3].rsplit(":", 1)[1]) for l in out.splitlines() if f"pid={proc.pid}," in l})
        if len(ports) >= n:
            return ports
        time.sleep(0.1)
    raise RuntimeError(f"{proc.args[0]} does not listen on {n} port(s)")


def speaks_http(port):
    """True when the server on `port` answers an HTTP request with an HTTP status line."""
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        try:
            return s.recv(5) == b"HTTP/"
        except OSError:
            return False


def git_and_http_ports(proc):
    """fleetconf's git:// and HTTP listener ports (both asked for as port 0)."""
    a, b = listening_ports(proc, 2)
    return (b, a) if speaks_http(a) else (a, b)


def wait_port(p):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", p), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{p}")


try:
    # ---- the fixture: ~200 files, 100 commits -----------------------------------------------------
    work = f"{tmp}/work"
    sh("git", "init", "-q", "-b", "main", work)
    n_commits = 20 if a.smoke else 100
    for c in range(n_commits):
        if c == 0:
            for f in range(200):
                os.makedirs(f"{work}/conf/d{f % 10}", exist_ok=True)
                open(f"{work}/conf/d{f % 10}/f{f}.json", "w").write(json.dumps({"file": f, "rev": 0, "data": ["x" * 40] * (f % 30 + 5)}, indent=1))
        else:
            for k in range(5):
                f = (c * 7 + k * 13) % 200
                open(f"{work}/conf/d{f % 10}/f{f}.json", "w").write(json.dumps({"file": f, "rev": c, "data": ["y" * 40] * (f % 30 + 5)}, indent=1))
        e = dict(ENV, GIT_AUTHOR_DATE=f"{1700000000 + c * 60} +0000", GIT_COMMITTER_DATE=f"{1700000000 + c * 60} +0000")
        sh("git", "add", "-A", cwd=work, env=e)
        sh("git", "commit", "-q", "-m", f"change {c}", cwd=work, env=e)
    tip = sh("git", "rev-parse", "HEAD", cwd=work).decode().strip()
    repos = f"{tmp}/data/git/repos"
    os.makedirs(repos)
    sh("git", "clone", "-q", "--bare", work, f"{repos}/fleet.git")

    # ---- fleetconf ------------------------------------------------------------------------------
    site = {"networks": [{"name": "br0", "subnet": "10.6.0.0/24"}],
            "unikernels": [{"name": "fleet", "network": "br0", "git": {"git_protocol": True}}],
            "services": {"data_dir": f"{tmp}/data", "status": "off", "dhcp": {"enabled": False}, "block": {"enabled": False},
                         "git": {"git": "127.0.0.1:0", "http": "127.0.0.1:0"}}}
    json.dump(site, open(f"{tmp}/site.json", "w"))
    token = sh(FC, "git", "token", "fleet", "--site", f"{tmp}/site.json").decode().strip()
    # The second server (below) gets a copy of the data directory: one server per data directory.
    shutil.copytree(f"{tmp}/data", f"{tmp}/data0")
    fc = subprocess.Popen([FC, "--log-level", "warn", "serve", f"{tmp}/site.json"], stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/fc.log", "w"))
    procs.append(fc)
    pg, ph = git_and_http_ports(fc)
    # the same server with the pack cache off: every fetch builds its pack, as git daemon does
    site0 = json.loads(json.dumps(site))
    site0["services"]["data_dir"] = f"{tmp}/data0"
    site0["services"]["git"].update({"pack_cache_mb": 0})
    json.dump(site0, open(f"{tmp}/site0.json", "w"))
    fc0 = subprocess.Popen([FC, "--log-level", "warn", "serve", f"{tmp}/site0.json"], stdout=subprocess.DEVNULL,
                           stderr=open(f"{tmp}/fc0.log", "w"))
    procs.append(fc0)
    pg0, ph0 = git_and_http_ports(fc0)

    # ---- git daemon (forks one upload-pack per connection) ------------------------------------------
    # git daemon takes --port=0 for its default 9418, so its port is held for it instead: a socket bound (with
    # SO_REUSEADDR, never listening) to a port the kernel chose stays open for the whole run, and git daemon
    # (--reuseaddr) binds the same port and listens on it; nothing else can take it in between.
    hold = socket.socket()
    hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hold.bind(("127.0.0.1", 0))
    pd = hold.getsockname()[1]
    gd = subprocess.Popen(["git", "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={pd}", f"--base-path={repos}", "--export-all",
                           "--max-connections=0", repos], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    procs.append(gd)

    # ---- git http-backend as a CGI of busybox httpd ---------------------------------------------------
    os.makedirs(f"{tmp}/www/cgi-bin")
    cgi = f"{tmp}/www/cgi-bin/git"
    open(cgi, "w").write(f"#!/bin/sh\nexport GIT_PROJECT_ROOT={repos} GIT_HTTP_EXPORT_ALL=1 HOME={tmp}\nexec git http-backend\n")
    os.chmod(cgi, 0o755)
    hb = subprocess.Popen(["busybox", "httpd", "-f", "-p", "127.0.0.1:0", "-h", f"{tmp}/www"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    procs.append(hb)
    pw = listening_ports(hb, 1)[0]
    for p in (pg, ph, pg0, ph0, pd, pw):
        wait_port(p)

    def load(mode, port, extra):
        out = subprocess.run([LOAD, "--mode", mode, "--port", str(port), "--repo", "fleet", "--want", tip, "--clients", str(a.clients),
                              "--seconds", str(a.seconds), *extra], capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    rows = [
        ("fleetconf", "git://", load("git", pg, [])),
        ("fleetconf, pack cache off", "git://", load("git", pg0, [])),
        ("git daemon 2.39", "git://", load("git", pd, [])),
        ("fleetconf", "HTTP", load("http", ph, ["--auth", f"fleet:{token}"])),
        ("fleetconf, pack cache off", "HTTP", load("http", ph0, ["--auth", f"fleet:{token}"])),
        ("git http-backend (busybox httpd CGI)", "HTTP", load("http", pw, ["--prefix", "/cgi-bin/git"])),
    ]
    print(f"\ngitconf fetch benchmark: {a.clients} clients, depth-1 fetch of the tip, {n_commits} commits x 200 files, "
          f"{a.seconds:g} s per server, loopback{' (smoke)' if a.smoke else ''}")
    print(f"{'server':40} {'transport':9} {'fetches/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs reference':>13}")
    ref = {"git://": rows[2][2]["rate"], "HTTP": rows[5][2]["rate"]}
    bad = []
    for name, transport, r in rows:
        ratio = "" if not name.startswith("fleetconf") else (f"{r['rate'] / ref[transport]:.2f}x" if ref[transport] else "n/a")
        print(f"{name:40} {transport:9} {r['rate']:10.1f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['errors']:7d} {ratio:>13}")
        # A rate counts only when every fetch succeeded: a failed fetch is cheap and would flatter the figure.
        if r["fetches"] == 0 or r["errors"] > 0:
            bad.append(f"{name} over {transport}: {r['fetches']} fetches, {r['errors']} errors")
    if bad:
        print("FAIL: every fetch must succeed; " + "; ".join(bad))
        sys.exit(1)
    print(f"{len(rows)} passed: every server completed its fetches without an error")
finally:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
    shutil.rmtree(tmp, ignore_errors=True)
