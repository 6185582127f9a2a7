#!/usr/bin/env python3
"""The operator console (docs/console.md) of `fleetconf serve`, across a veth pair between two network
namespaces that this test creates and always deletes: udhcpc plays the unikernels, the stock git client
fetches and pushes, the proxy's block device is served by the same process.

--api      every endpoint without a browser: views, the lease search, SSE, the actions and their audit,
           errors and limits, then a console off loopback (HTTPS, password file, login limiter).
--browser  the page in Debian's chromium (headless) through chromium-driver and Selenium: the fleet table
           against `fleetconf site show` and `dhcp leases`, a new lease without a reload, a route added on the
           page in `fleetconf block list`, a hostile host name shown as text, the login off loopback and a
           CSRF-less post refused. Screenshots of every view go to SHOTS (the build folder).

The test process enters the server's namespace (setns), so its HTTP client and the browser reach the
console on that namespace's 127.0.0.1 or veth address; nothing leaves the namespaces.

usage: console_test.py FLEETCONF_BINARY (--api | --browser) [--shots DIR]
"""
import argparse, ctypes, http.client, json, os, re, signal, socket, ssl, subprocess, sys, tempfile, time

from nstest import Harness, require_root_and_netns, udhcpc_script, wait_udhcpc_bound, wait_for

_ap = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n\n")[0])
_ap.add_argument("fleetconf", help="the fleetconf binary to test")
_mode = _ap.add_mutually_exclusive_group(required=True)
_mode.add_argument("--api", action="store_true", help="the JSON API, without a browser")
_mode.add_argument("--browser", action="store_true", help="the page, in headless chromium")
_ap.add_argument("--shots", default=None, help="where the browser test saves its screenshots")
ARGS = _ap.parse_args()
FC = os.path.abspath(ARGS.fleetconf)
require_root_and_netns()
if ARGS.browser:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        if os.environ.get("CI"):
            print("FAIL: python3-selenium is missing (./dev deps installs it)")
            sys.exit(1)
        print("SKIP: python3-selenium is missing (runs in CI; ./dev deps installs it)")
        sys.exit(77)

P = f"fct{os.getpid() % 100000}"
SRV, C1 = f"{P}s", f"{P}c"
IF = f"{P}v"
tmp = tempfile.mkdtemp(prefix="fleetconf-console-")
H = Harness(P)
sh, ns, check, procs = H.sh, H.ns, H.check, H.procs
HOSTILE = "<img src=x onerror=window.__pwned=1>"
PASSWORD = "correct horse battery"


def setup():
    H.add_namespaces(SRV, C1)
    H.veth(SRV, IF, C1, "eth0")
    sh("ip", "-n", SRV, "addr", "add", "10.79.0.1/24", "dev", IF)
    for n, i in ((SRV, IF), (C1, "eth0")):
        sh("ip", "-n", n, "link", "set", i, "up")
        sh("ip", "-n", n, "link", "set", "lo", "up")
    # From here on this process (and the browser it starts) lives in the server's namespace.
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{SRV}", os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "setns")
    os.close(fd)


def site(console):
    return {
        "networks": [{"name": IF, "subnet": "10.79.0.0/24", "gateway": "10.79.0.1", "domain": "t.example",
                      "pools": ["10.79.0.100-10.79.0.119"], "lease_time": 300}],
        "unikernels": [
            {"name": "proxy", "network": IF, "address": "10.79.0.10", "dhcp": False, "block": {}},
            {"name": "web", "network": IF, "mac": "02:00:00:00:00:01", "public_hosts": ["www.example.org"], "backend_port": 8080,
             "git": {"access": "read-write"}},
            {"name": "api", "network": IF, "mac": "02:00:00:00:00:02", "git": {}},
            {"name": "cal", "network": IF, "git": {}}],  # MAC derived as Albatross does
        "services": {"data_dir": f"{tmp}/data", "status": "off", "dhcp": {"routes": {"target": "proxy"}},
                     "git": {"http": "127.0.0.1:0"}, "block": {"listen": "127.0.0.1:0"}, "console": console}}


def log():
    return open(f"{tmp}/serve.log").read()


def start(console):
    json.dump(site(console), open(f"{tmp}/site.json", "w"))
    out = open(f"{tmp}/serve.log", "a")
    mark = len(log()) if os.path.exists(f"{tmp}/serve.log") else 0
    p = subprocess.Popen([FC, "serve", f"{tmp}/site.json"], stdout=out, stderr=subprocess.STDOUT)
    procs.append(p)
    ok, _ = wait_for(lambda: "service(s) running" in log()[mark:] or p.poll() is not None, lambda x: x, 20)
    text = log()[mark:]
    ports = dict(re.findall(r"\b(console|HTTP|control socket) listening on [0-9.]+:(\d+)", text))
    if not ok or p.poll() is not None or "console" not in ports:
        raise RuntimeError("serve did not start: " + text[-1500:])
    return p, {k: int(v) for k, v in ports.items()}


def stop(p):
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=20)


class Client:
    """One HTTP client of the console, with its session cookie (a browser's jar, reduced to one cookie)."""

    def __init__(self, host, port, tls=False):
        self.host, self.port, self.tls, self.cookie, self.csrf = host, port, tls, None, None

    def request(self, method, path, body=None, headers=None, raw=None):
        ctx = ssl._create_unverified_context() if self.tls else None
        c = (http.client.HTTPSConnection(self.host, self.port, context=ctx, timeout=20) if self.tls
             else http.client.HTTPConnection(self.host, self.port, timeout=20))
        h = {"Host": f"{self.host}:{self.port}"}
        if self.cookie:
            h["Cookie"] = f"fleetconf_console={self.cookie}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        text = r.read().decode("utf-8", "replace")
        c.close()
        m = re.search(r"fleetconf_console=([^;]*)", r.getheader("Set-Cookie") or "")
        if m:
            self.cookie = m.group(1) or None
        try:
            j = json.loads(text)
        except ValueError:
            j = None
        return r.status, j, r

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def session(self):
        st, j, _ = self.get("/api/v1/session")
        self.csrf = j and j.get("csrf")
        return st, j

    def act(self, name, args, csrf=True, confirm=True):
        body = dict(args, **({"confirm": True} if confirm else {}))
        return self.request("POST", f"/api/v1/actions/{name}", body=body, headers={"X-CSRF-Token": self.csrf} if csrf and self.csrf else {})


def block_routes(ports):
    r = sh(FC, "block", "list", "--json", "--connect", f"127.0.0.1:{ports['control socket']}", "--key-file", f"{tmp}/data/block/keys",
           check=False)
    if r.returncode != 0:
        return {"error": r.stderr.strip()}
    return {x["host"]: f'{x["address"]}:{x["port"]}' for x in json.loads(r.stdout)["routes"]}


def udhcpc_bound(mac, *extra):
    """A udhcpc that stays bound (a unikernel that is up): returns (process, leased address)."""
    ns(C1, "ip", "addr", "flush", "dev", "eth0", check=False)
    ns(C1, "ip", "link", "set", "eth0", "address", mac)
    rec = f"{tmp}/u-{mac.replace(':', '')}"
    os.makedirs(rec, exist_ok=True)
    udhcpc_script(rec)
    d = subprocess.Popen(["ip", "netns", "exec", C1, "busybox", "udhcpc", "-i", "eth0", "-f", "-t", "4", "-T", "1", "-s", f"{rec}/u.sh",
                          *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(d)
    return d, wait_udhcpc_bound(d.pid, rec).get("ip")


def git(*args, cwd=None):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@x",
                                   GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@x", HOME=tmp))


def fetch_and_push(ports):
    """web: a clone (a fetch) and a push the site refuses (a symbolic link) then one it accepts."""
    token = sh(FC, "git", "token", "web", "--site", f"{tmp}/site.json").stdout.strip()
    url = f"http://web:{token}@127.0.0.1:{ports['HTTP']}/web.git"
    r = git("clone", "-q", url, f"{tmp}/web")
    check("git clone of web (a fetch over HTTP)", r.returncode == 0, r.stderr)
    os.symlink("/etc/passwd", f"{tmp}/web/link")
    git("add", "link", cwd=f"{tmp}/web")
    git("commit", "-qm", "a link", cwd=f"{tmp}/web")
    r = git("push", "-q", "origin", "HEAD", cwd=f"{tmp}/web")
    check("a push with a symbolic link is refused", r.returncode != 0, r.stderr)
    git("reset", "-q", "--hard", "HEAD~1", cwd=f"{tmp}/web")
    open(f"{tmp}/web/config.json", "w").write('{"x": 1}\n')
    git("add", "config.json", cwd=f"{tmp}/web")
    git("commit", "-qm", "config", cwd=f"{tmp}/web")
    r = git("push", "-q", "origin", "HEAD", cwd=f"{tmp}/web")
    check("a plain push is accepted", r.returncode == 0, r.stderr)
    return token


def tls_pair():
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
       "-subj", "/CN=10.79.0.1", "-addext", "subjectAltName=IP:10.79.0.1", "-keyout", f"{tmp}/console.key", "-out", f"{tmp}/console.crt")
    os.chmod(f"{tmp}/console.key", 0o600)
    r = subprocess.run([FC, "console", "passwd", "admin", f"{tmp}/passwords"], input=PASSWORD + "\n", capture_output=True, text=True)
    check("`fleetconf console passwd` writes a password file", r.returncode == 0 and os.stat(f"{tmp}/passwords").st_mode & 0o777 == 0o600,
          r.stderr)
    return {"listen": "10.79.0.1:0", "tls_cert": f"{tmp}/console.crt", "tls_key": f"{tmp}/console.key",
            "password_file": f"{tmp}/passwords"}


def sse(port, cookie, want, seconds=10):
    """Reads the event stream until an event named `want` arrives; returns (status, the events read)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=seconds)
    s.sendall(f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: fleetconf_console={cookie}\r\n\r\n".encode())
    buf, deadline = b"", time.time() + seconds
    while time.time() < deadline and f"event: {want}\n".encode() not in buf:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
    s.close()
    text = buf.decode("utf-8", "replace")
    status = int(text.split(" ", 2)[1]) if text.startswith("HTTP/1.1 ") else 0
    return status, re.findall(r"^event: (\w+)$", text, re.M)


# ---------------------------------------------------------------------------------------------------------
def api_test():
    p, ports = start({"listen": "127.0.0.1:0"})
    port = ports["console"]
    c = Client("127.0.0.1", port)
    st, s = c.session()
    check("GET /api/v1/session on loopback: no login, a session and its CSRF token", st == 200 and s["login_required"] is False
          and s["authenticated"] and len(s["csrf"] or "") >= 40 and c.cookie, s)
    d, ip = udhcpc_bound("02:00:00:00:00:01", "-x", "0x0c:" + HOSTILE.encode().hex())  # option 12, spaces and all
    check("udhcpc (web) is bound", bool(ip), ip)
    token = fetch_and_push(ports)

    def fleet_row(name):
        _, f, _ = c.get("/api/v1/fleet")
        return next((u for u in f["unikernels"] if u["name"] == name), None)

    ok, web = wait_for(lambda: fleet_row("web"), lambda u: u and u["push"] and u["push"]["result"] == "accepted" and u["fetch"], 15)
    check("fleet: web's address, bound lease, last fetch over http and last push", ok and web["address"] == ip
          and web["lease"]["state"] == "bound" and web["fetch"]["transport"] == "http" and web["push"]["credential"] == "web", web)
    ok, web = wait_for(lambda: fleet_row("web"), lambda u: u and u["routes_match"] and u["routes"] and u["routes"][0]["actual"], 15)
    check("fleet: web's route matches its lease", ok and web["routes"][0]["actual"] == f"{ip}:8080" and web["health"] == "ok", web)
    cal = fleet_row("cal")
    check("fleet: a derived MAC is marked, a unikernel without a lease is not healthy", cal["mac_derived"] and cal["health"] == "warn"
          and cal["lease"] is None, cal)
    # A route that does not match the lease: the unikernel is flagged.
    st, j, _ = c.act("route-add", {"device": "proxy", "host": "www.example.org", "address": "10.79.0.99", "port": 8080})
    check("route-add over the API changes the device", st == 200 and "generation" in j, j)
    ok, web = wait_for(lambda: fleet_row("web"), lambda u: u and not u["routes_match"], 5)
    check("fleet: a route that does not match the lease is flagged", ok and web["health"] == "bad", web)
    wait_for(lambda: block_routes(ports), lambda r: r.get("www.example.org") == f"{ip}:8080", 15)  # the lease router sets it back
    # Networks and the lease search.
    st, n, _ = c.get("/api/v1/networks")
    pool = n["networks"][0]["pools"][0]
    check("networks: pool utilisation", st == 200 and pool["size"] == 20 and pool["bound"] == 1 and pool["free"] == 19, pool)
    st, l, _ = c.get("/api/v1/leases?q=" + "%3Cimg")
    check("leases: search by host name; the hostile name is data", st == 200 and l["total"] == 1 and l["leases"][0]["hostname"] == HOSTILE
          and l["leases"][0]["mac"] == "02:00:00:00:00:01", l)
    st, l, _ = c.get("/api/v1/leases?q=nothing-like-this")
    check("leases: no match", st == 200 and l["total"] == 0 and l["leases"] == [], l)
    for bad in ("/api/v1/leases?limit=0", "/api/v1/leases?limit=5000", "/api/v1/leases?q=%G1", "/api/v1/leases?q=" + "a" * 300):
        st, j, _ = c.get(bad)
        check(f"leases: {bad[:40]} is refused (400)", st == 400 and "error" in j, (st, j))
    # Repositories and devices (rebuilt every 10 s, and at once after an action).
    st, r, _ = c.get("/api/v1/repositories")
    web_repo = next(x for x in r["repositories"] if x["name"] == "web")
    head = git("rev-parse", "HEAD", cwd=f"{tmp}/web").stdout.strip()
    check("repositories: head, size, fetches and the audit entries (the refused push's reason)", st == 200 and web_repo["head"] == head
          and web_repo["size_bytes"] > 0 and web_repo["fetches"] >= 1
          and any(a.get("result") == "rejected" for a in web_repo["audit"]), web_repo)
    st, dv, _ = c.get("/api/v1/devices")
    proxy = dv["devices"][0]
    check("devices: the proxy's generation, routes and history with who changed what", st == 200 and proxy["name"] == "proxy"
          and any(h["by"].startswith("console") for h in proxy["history"]) and proxy["routes"], proxy)
    st, h, _ = c.get("/api/v1/devices/proxy/history")
    check("devices/proxy/history", st == 200 and h["generation"] == proxy["generation"] or h["generation"] >= proxy["generation"], h)
    st, j, _ = c.get("/api/v1/devices/nothing/history")
    check("devices/NAME/history of an unknown device: 404", st == 404, j)
    # Activity: one sample a second.
    time.sleep(2.2)
    st, a, _ = c.get("/api/v1/activity")
    check("activity: per-second series of DHCP exchanges, fetches, pushes, route changes", st == 200 and
          {"dhcp_acks", "git_fetches", "git_pushes", "route_changes"} <= set(a["series"]) and a["interval_s"] == 1, a)
    # Live: a second unikernel's lease arrives on the event stream, without asking.
    status, events = sse(port, c.cookie, "fleet", 5)
    check("events: the stream starts with every view", status == 200 and {"fleet", "networks"} <= set(events), events)
    d2, ip2 = udhcpc_bound("02:00:00:00:00:02")
    ok, api_row = wait_for(lambda: fleet_row("api"), lambda u: u and u["lease"] and u["lease"]["state"] == "bound", 10)
    check("a new lease shows in the fleet view", ok and api_row["address"] == ip2, api_row)
    # The actions: each needs the CSRF token and a confirmation, each is audited.
    st, j, _ = c.act("route-add", {"device": "proxy", "host": "shop.example.org", "address": "10.79.0.50", "port": 443}, csrf=False)
    check("an action without the CSRF token: 403", st == 403, j)
    st, j, _ = c.act("route-add", {"device": "proxy", "host": "shop.example.org", "address": "10.79.0.50", "port": 443}, confirm=False)
    check("an action without \"confirm\": true: 400", st == 400, j)
    st, j, _ = c.request("POST", "/api/v1/actions/route-add", raw=b"device=proxy&host=x", headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": c.csrf})
    check("a form post: 415", st == 415, j)
    st, j, _ = c.request("POST", "/api/v1/actions/route-add", body={
        "confirm": True, "device": "proxy", "host": "shop.example.org", "address": "10.79.0.50", "port": 443},
        headers={"X-CSRF-Token": c.csrf, "Origin": "http://evil.example"})
    check("a cross-origin post: 403", st == 403, j)
    for args, want in ((({"device": "nothing", "host": "a.example", "address": "10.0.0.1", "port": 1}), 404),
                       (({"device": "proxy", "host": "bad host!", "address": "10.0.0.1", "port": 1}), 400),
                       (({"device": "proxy", "host": "a.example", "address": "10.0.0.300", "port": 1}), 400),
                       (({"device": "proxy", "host": "a.example", "address": "10.0.0.1", "port": 70000}), 400)):
        st, j, _ = c.act("route-add", args)
        check(f"route-add {args} refused with {want}", st == want and j.get("error"), (st, j))
    st, j, _ = c.act("route-add", {"device": "proxy", "host": "shop.example.org", "address": "10.79.0.50", "port": 443})
    check("route-add", st == 200, j)
    ok, got = wait_for(lambda: block_routes(ports), lambda r: r.get("shop.example.org") == "10.79.0.50:443", 5)
    check("the route is in `fleetconf block list`", ok, got)
    gen = j["generation"]
    st, j, _ = c.act("route-remove", {"device": "proxy", "host": "shop.example.org"})
    check("route-remove", st == 200 and "shop.example.org" not in block_routes(ports), j)
    st, j, _ = c.act("route-remove", {"device": "proxy", "host": "shop.example.org"})
    check("route-remove of a missing route: 404", st == 404, j)
    st, j, _ = c.act("rollback", {"device": "proxy", "generation": gen})
    check("rollback to the generation with the route", st == 200 and block_routes(ports).get("shop.example.org") == "10.79.0.50:443", j)
    st, j, _ = c.act("rollback", {"device": "proxy", "generation": 99999})
    check("rollback to a generation that is not kept: refused", st in (404, 409), j)
    st, j, _ = c.act("token-rotate", {"unikernel": "web"})
    check("token-rotate returns the new token once", st == 200 and len(j.get("token", "")) >= 32 and j["token"] != token, j)
    new = j["token"]
    r = git("ls-remote", f"http://web:{new}@127.0.0.1:{ports['HTTP']}/web.git")
    check("the new token works", r.returncode == 0, r.stderr)
    r = git("ls-remote", f"http://web:{token}@127.0.0.1:{ports['HTTP']}/web.git")
    check("the old one still works during the overlap", r.returncode == 0, r.stderr)
    st, j, _ = c.act("token-rotate", {"unikernel": "proxy"})
    check("token-rotate of a unikernel without git: 404", st == 404, j)
    st, j, _ = c.act("lease-release", {"address": ip2})
    check("lease-release", st == 200, j)
    st, l, _ = c.get(f"/api/v1/leases?q={ip2}")
    check("the released lease is gone", l["total"] == 0, l)
    st, j, _ = c.act("lease-release", {"address": "10.79.0.200"})
    check("lease-release of an address without a lease: 404", st == 404, j)
    st, audit, _ = c.get("/api/v1/audit")
    acts = [(a["action"], a["result"]) for a in audit]
    check("every action is in the audit (refused ones too)", ("route-add", "ok") in acts and ("route-add", "refused") in acts
          and ("token-rotate", "ok") in acts and ("lease-release", "ok") in acts, acts)
    lines = [json.loads(x) for x in open(f"{tmp}/data/console/audit.jsonl")]
    check("the audit file has every action, without the token", len(lines) == len(audit) and new not in open(f"{tmp}/data/console/audit.jsonl").read(),
          len(lines))
    git_audit = open(f"{tmp}/data/git/audit/web.jsonl").read()
    check("the rotation is in the repository's audit log too", "token rotated" in git_audit and "console" in git_audit, git_audit[-300:])
    # Errors and limits.
    for method, path, want in (("GET", "/nothing", 404), ("GET", "/api/v1/nothing", 404), ("DELETE", "/api/v1/fleet", 405),
                               ("GET", "/api/v1/login", 405), ("POST", "/api/v1/actions/nothing", 404)):
        st, j, _ = c.request(method, path, body={} if method == "POST" else None, headers={"X-CSRF-Token": c.csrf})
        check(f"{method} {path}: {want}", st == want, (st, j))
    st, j, _ = c.request("GET", "/api/v1/fleet", headers={"Host": "evil.example:80"})
    check("a foreign Host (DNS rebinding) without a login: 421", st == 421, j)
    st, j, _ = c.request("POST", "/api/v1/actions/route-add", raw=b"x" * 70000, headers={"Content-Type": "application/json",
                                                                                           "X-CSRF-Token": c.csrf})
    check("a body over 64 KiB: 413", st == 413, st)
    st, _, r = c.get("/")
    check("the page: HTML with a strict Content-Security-Policy", st == 200 and "default-src 'none'" in r.getheader("Content-Security-Policy"),
          r.getheaders())
    # A client that sends half a request is cut after the timeout; others are served meanwhile.
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"GET /api/v1/fleet HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    st, _, _ = c.get("/api/v1/session")
    check("served while a slow client holds a connection", st == 200, st)
    slow.settimeout(15)
    t0 = time.time()
    try:
        gone = slow.recv(100) == b""
    except (socket.timeout, ConnectionResetError):
        gone = False
    check("the slow client is cut within the 10 s deadline", gone and time.time() - t0 < 14, time.time() - t0)
    # At most 32 live streams.
    held = []
    for _ in range(32):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: fleetconf_console={c.cookie}\r\n\r\n".encode())
        s.recv(100)
        held.append(s)
    status, _ = sse(port, c.cookie, "fleet", 3)
    st, j, _ = c.get("/api/v1/fleet")
    check("a 33rd live stream is refused (503) while other requests are served", status == 503 and st == 200, (status, st))
    for s in held:
        s.close()
    # The server notices closed streams at its next write (once a second).
    ok, got = wait_for(lambda: c.request("POST", "/api/v1/logout", body={}, headers={"X-CSRF-Token": c.csrf})[0], lambda x: x == 200, 5)
    check("logout", ok, got)
    st, j, _ = c.act("route-add", {"device": "proxy", "host": "late.example.org", "address": "10.79.0.50", "port": 443})
    check("after logout the session's CSRF token no longer passes", st == 403, j)
    d.kill(); d2.kill()
    stop(p)

    # Off loopback: HTTPS and a login.
    p, ports = start(tls_pair())
    port = ports["console"]
    t = Client("10.79.0.1", port, tls=True)
    st, j, _ = t.get("/api/v1/fleet")
    check("off loopback: a view without a login is 401", st == 401, j)
    st, s = t.session()
    check("off loopback: the session says a login is required", st == 200 and s["login_required"] and not s["authenticated"], s)
    st, j, _ = t.request("POST", "/api/v1/login", body={"user": "admin", "password": PASSWORD}, headers={"Origin": "https://evil.example"})
    check("a cross-origin login: 403", st == 403, j)
    st, j, r = t.request("POST", "/api/v1/login", body={"user": "admin", "password": PASSWORD})
    cookie_header = r.getheader("Set-Cookie") or ""
    check("login: a HttpOnly, Secure, SameSite=Strict session cookie", st == 200 and "HttpOnly" in cookie_header and "Secure" in cookie_header
          and "SameSite=Strict" in cookie_header and r.getheader("Strict-Transport-Security"), (st, cookie_header))
    t.csrf = j["csrf"]
    st, f, _ = t.get("/api/v1/fleet")
    check("logged in: the fleet view", st == 200 and len(f["unikernels"]) == 4, st)
    st, j, _ = t.act("route-add", {"device": "proxy", "host": "tls.example.org", "address": "10.79.0.51", "port": 443}, csrf=False)
    check("logged in, without the CSRF token: 403", st == 403, j)
    st, j, _ = t.act("route-add", {"device": "proxy", "host": "tls.example.org", "address": "10.79.0.51", "port": 443})
    check("logged in, with it: done, audited under the user's name", st == 200 and json.loads(open(f"{tmp}/data/console/audit.jsonl")
          .read().strip().split("\n")[-1])["user"] == "admin", j)
    bad = Client("10.79.0.1", port, tls=True)
    codes = [bad.request("POST", "/api/v1/login", body={"user": "admin", "password": "wrong"})[0] for _ in range(6)]
    check("wrong passwords: 401, then 429 after 5 failures", codes == [401] * 5 + [429], codes)
    st, j, _ = bad.request("POST", "/api/v1/login", body={"user": "admin", "password": PASSWORD})
    check("even the right password waits out the limit", st == 429, j)
    plain = socket.create_connection(("10.79.0.1", port))
    plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    plain.settimeout(12)
    try:
        got = plain.recv(100)
    except (socket.timeout, ConnectionResetError):
        got = b""
    check("plain HTTP to the HTTPS console gets no page", b"<html" not in got, got[:60])
    metrics = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/"], capture_output=True).stdout
    check("nothing answers on loopback for this console", metrics == b"", metrics[:80])
    stop(p)
    s = site({"listen": "10.79.0.1:9468"})
    json.dump(s, open(f"{tmp}/bad.json", "w"))
    r = subprocess.run([FC, "site", "check", f"{tmp}/bad.json"], capture_output=True, text=True)
    check("a site with the console off loopback without HTTPS and a password file is refused", r.returncode == 2
          and "/services/console/listen" in r.stdout + r.stderr, r.stdout + r.stderr)


# ---------------------------------------------------------------------------------------------------------
def browser(shots):
    o = Options()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1500,1000",
              f"--user-data-dir={tmp}/chromium", "--ignore-certificate-errors"):
        o.add_argument(a)
    o.accept_insecure_certs = True
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver", log_path=f"{tmp}/chromedriver.log"), options=o)


def browser_test(shots):
    os.makedirs(shots, exist_ok=True)
    p, ports = start({"listen": "127.0.0.1:0"})
    port = ports["console"]
    d, ip = udhcpc_bound("02:00:00:00:00:01", "-x", "0x0c:" + HOSTILE.encode().hex())  # option 12, spaces and all
    check("udhcpc (web) is bound", bool(ip), ip)
    fetch_and_push(ports)
    drv = browser(shots)
    wait = WebDriverWait(drv, 15)

    # The page re-renders its tables (every second, and on each event): each read is one script, so that it
    # cannot see half of one rendering or an element replaced meanwhile.
    def texts(selector):
        return drv.execute_script("return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent)", selector)

    def cells(name):
        return drv.execute_script("""
            const row = document.querySelector('#fleet-table tr[data-name="' + arguments[0] + '"]');
            if (!row) return null;
            const out = {};
            for (const c of ['mac', 'address', 'fetch', 'push', 'routes']) out[c] = row.querySelector('.' + c).textContent;
            return out;""", name)

    def shot(name):
        drv.save_screenshot(f"{shots}/console-{name}.png")

    def tab(view):
        drv.find_element(By.CSS_SELECTOR, f'#tabs button[data-view="{view}"]').click()

    def confirm():
        WebDriverWait(drv, 5).until(EC.alert_is_present())
        drv.switch_to.alert.accept()

    try:
        drv.get(f"http://127.0.0.1:{port}/")
        ok, got = wait_for(lambda: cells("web"), lambda c: c and c["address"] == ip and "http" in c["fetch"] and "accepted" in c["push"], 20)
        check("the fleet table shows web's address, fetch and accepted push", ok, got)
        ok, got = wait_for(lambda: cells("web"), lambda c: c and f"{ip}:8080" in c["routes"], 20)
        check("and its route on the proxy", ok, got)
        shown = json.loads(sh(FC, "site", "show", "--json", f"{tmp}/site.json").stdout)
        rows = drv.execute_script("""return Object.fromEntries([...document.querySelectorAll('#fleet-table tbody tr')]
            .map((r) => [r.dataset.name, r.querySelector('.mac').firstChild.textContent]))""")
        same = all(rows.get(u["name"]) == u["mac"] for u in shown["unikernels"])
        check("the fleet table matches `fleetconf site show` (names, MACs)", same and len(rows) == len(shown["unikernels"]),
              (sorted(rows), shown))
        leases = json.loads(sh(FC, "dhcp", "leases", "--json", f"{tmp}/site.json").stdout)
        lease_addrs = {l.get("ip-address", l.get("address")) for l in (leases if isinstance(leases, list) else leases.get("leases", []))}
        check("and `fleetconf dhcp leases` (the leased address)", ip in lease_addrs and cells("web")["address"] == ip, (lease_addrs, ip))
        shot("fleet")
        # A new lease appears without a reload.
        d2, ip2 = udhcpc_bound("02:00:00:00:00:02")
        ok, got = wait_for(lambda: cells("api"), lambda c: c and c["address"] == ip2, 10)
        check("a new lease appears on the page without a reload", ok, (got, ip2))
        # Networks: pools and the lease table with the hostile host name as text.
        tab("networks")
        ok, names = wait_for(lambda: texts("#lease-table td.hostname"), lambda x: len(x) >= 2, 10)
        check("the hostile host name renders as text", HOSTILE in names, names)
        check("and runs nothing: no <img> on the page, nothing set", drv.execute_script("return document.querySelectorAll('img').length") == 0
              and drv.execute_script("return window.__pwned === undefined"), names)
        shot("networks")
        drv.find_element(By.ID, "lease-search").send_keys("02:00:00:00:00:02")
        ok, got = wait_for(lambda: texts("#lease-table tbody tr td:first-child"), lambda x: x == [ip2], 10)
        check("the lease search filters the table", ok, got)
        bars = texts("#pools .pool .bar .bound")
        check("a utilisation bar per pool", len(bars) == 1, len(bars))
        tab("repositories")
        ok, got = wait_for(lambda: texts('#repo-table tr[data-name="web"] td.head'), lambda x: x and x[0] != "—", 10)
        check("repositories: web's head", ok and git("rev-parse", "HEAD", cwd=f"{tmp}/web").stdout.startswith(got[0]), got)
        shot("repositories")
        # Add a route on the page: it shows in `fleetconf block list`.
        tab("devices")
        form = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '.device[data-device="proxy"] form.route-add')))
        # What the operator is typing survives a change to the device made elsewhere (the view is redrawn).
        form.find_element(By.CSS_SELECTOR, ".route-host").send_keys("shop.exa")
        sh(FC, "block", "add", "--connect", f"127.0.0.1:{ports['control socket']}", "--key-file", f"{tmp}/data/block/keys",
           "elsewhere.example.org", "10.79.0.51", "443")
        ok, _ = wait_for(lambda: texts('.device[data-device="proxy"] tr[data-host="elsewhere.example.org"]'), lambda x: bool(x), 10)
        typed = form.find_element(By.CSS_SELECTOR, ".route-host")
        check("a route added elsewhere is redrawn without wiping the half-typed form (and its focus)",
              ok and typed.get_attribute("value") == "shop.exa" and drv.switch_to.active_element == typed, typed.get_attribute("value"))
        form.find_element(By.CSS_SELECTOR, ".route-host").send_keys("mple.org")
        form.find_element(By.CSS_SELECTOR, ".route-address").send_keys("10.79.0.50")
        form.find_element(By.CSS_SELECTOR, ".route-port").send_keys("443")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        confirm()
        ok, got = wait_for(lambda: block_routes(ports), lambda r: r.get("shop.example.org") == "10.79.0.50:443", 10)
        check("a route added on the page is in `fleetconf block list`", ok, got)
        ok, _ = wait_for(lambda: texts('.device[data-device="proxy"] tr[data-host="shop.example.org"]'), lambda x: bool(x), 10)
        check("and on the page", ok)
        shot("devices")
        tab("activity")
        ok, _ = wait_for(lambda: texts("#charts .chart svg polyline"), lambda x: len(x) == 4, 10)
        check("activity: four charts", ok)
        shot("activity")
        tab("audit")
        ok, got = wait_for(lambda: texts("#audit-table tbody tr"), lambda x: any("route-add" in t for t in x), 10)
        check("the audit view lists the action", ok, got)
        shot("audit")
        # Rotate web's token from the fleet view: shown once in a dialog.
        tab("fleet")
        drv.execute_script("""document.querySelector('#fleet-table tr[data-name="web"] button[data-action="token-rotate"]').click()""")
        confirm()
        ok, got = wait_for(lambda: drv.find_element(By.ID, "secret-value").text, lambda t: len(t) >= 32, 10)
        r = git("ls-remote", f"http://web:{got}@127.0.0.1:{ports['HTTP']}/web.git")
        check("token rotation on the page shows a token that works", ok and r.returncode == 0, (got, r.stderr))
        drv.find_element(By.ID, "secret-close").click()
        # A post without the CSRF token, from the page itself: refused.
        status = drv.execute_async_script("""
            const done = arguments[arguments.length - 1];
            fetch('/api/v1/actions/route-remove', {method: 'POST', headers: {'Content-Type': 'application/json'},
                  body: JSON.stringify({confirm: true, device: 'proxy', host: 'shop.example.org'})}).then(r => done(r.status));""")
        check("a post without the CSRF token is refused (403), the route stays", status == 403
              and block_routes(ports).get("shop.example.org") == "10.79.0.50:443", status)
    finally:
        drv.quit()
    d.kill(); d2.kill()
    stop(p)

    # Off loopback: the page asks for a login (HTTPS, password file).
    p, ports = start(tls_pair())
    port = ports["console"]
    drv = browser(shots)
    try:
        drv.get(f"https://10.79.0.1:{port}/")
        WebDriverWait(drv, 15).until(EC.visibility_of_element_located((By.ID, "login-form")))
        check("off loopback the page asks for a login", not drv.find_element(By.ID, "view-fleet").is_displayed())
        status = drv.execute_async_script("const done = arguments[arguments.length - 1]; fetch('/api/v1/fleet').then(r => done(r.status));")
        check("and the API answers 401 before it", status == 401, status)
        drv.find_element(By.ID, "login-user").send_keys("admin")
        drv.find_element(By.ID, "login-password").send_keys("wrong password")
        shot("login")
        drv.find_element(By.ID, "login-submit").click()
        ok, got = wait_for(lambda: drv.find_element(By.ID, "login-error").text, lambda t: bool(t), 10)
        check("a wrong password is refused on the page", ok and "wrong" in got, got)
        drv.find_element(By.ID, "login-password").clear()
        drv.find_element(By.ID, "login-password").send_keys(PASSWORD)
        drv.find_element(By.ID, "login-submit").click()
        ok, _ = wait_for(lambda: texts('#fleet-table tr[data-name="web"]'), lambda x: bool(x), 15)
        check("the right one opens the console", ok and drv.find_element(By.ID, "user").text == "admin")
        cookies = drv.get_cookies()
        c = next((x for x in cookies if x["name"] == "fleetconf_console"), {})
        check("the session cookie is HttpOnly, Secure, SameSite=Strict", c.get("httpOnly") and c.get("secure") and c.get("sameSite") == "Strict", c)
        check("and not readable by the page's scripts", "fleetconf_console" not in drv.execute_script("return document.cookie"))
        status = drv.execute_async_script("""
            const done = arguments[arguments.length - 1];
            fetch('/api/v1/actions/route-add', {method: 'POST', headers: {'Content-Type': 'application/json'},
                  body: JSON.stringify({confirm: true, device: 'proxy', host: 'x.example.org', address: '10.79.0.9', port: 1})}).then(r => done(r.status));""")
        check("logged in, a post without the CSRF token is still refused (403)", status == 403, status)
    finally:
        drv.quit()
    stop(p)


try:
    setup()
    if ARGS.api:
        api_test()
    else:
        browser_test(ARGS.shots or f"{tmp}/shots")
except Exception as e:  # a failure to set up is a failure, reported with the rest
    import traceback
    traceback.print_exc()
    check("the test ran to its end", False, repr(e))
finally:
    H.teardown()
H.finish(tmp)
