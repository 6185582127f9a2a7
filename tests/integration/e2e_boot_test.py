#!/usr/bin/env python3
"""End to end: one site, `fleetconf serve` running DHCP, the git host and the block-config editor in a
"unikernel host" namespace; a "fleet" namespace (joined by a veth pair; both created here and always
deleted) where a client boots the way a unikernel would:

  udhcpc gets its reserved address and the site options (syslog 7, NTP 42, monitoring 125, the
  configuration URI 224); the proxy's routes gain its public host name the moment the lease is
  acknowledged; the stock git client clones the URI it was given, with its credential; an operator pushes
  over SSH, the hook receiver in the fleet namespace is notified, and the client's next fetch sees the
  commit; an admin changes a proxy route with `fleetconf block` and the new generation is on the device;
  one status endpoint answers /health and /metrics for all of it; `fleetconf bootargs` is checked for
  each unikernel and mode.

usage: e2e_boot_test.py FLEETCONF_BINARY
"""
import argparse, json, os, signal, subprocess, sys, tempfile, time

from nstest import Harness, require_root_and_netns, udhcpc_record, udhcpc_script, wait_for

_ap = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n\n")[0])
_ap.add_argument("fleetconf", help="the fleetconf binary to test")
FC = os.path.abspath(_ap.parse_args().fleetconf)
require_root_and_netns()

P = f"fe2e{os.getpid() % 100000}"
HOST, FLEET = f"{P}h", f"{P}f"
IF = f"{P}v"
tmp = tempfile.mkdtemp(prefix="fleetconf-e2e-")
DATA = f"{tmp}/data"
GIT_ENV = dict(os.environ, HOME=tmp, GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0",
               GIT_AUTHOR_NAME="Operator", GIT_AUTHOR_EMAIL="op@fleet.test", GIT_COMMITTER_NAME="Operator",
               GIT_COMMITTER_EMAIL="op@fleet.test")
H = Harness(P, GIT_ENV)
sh, ns, check, procs = H.sh, H.ns, H.check, H.procs


def setup():
    H.add_namespaces(HOST, FLEET)
    H.veth(HOST, IF, FLEET, "eth0")
    sh("ip", "-n", HOST, "addr", "add", "10.66.0.1/24", "dev", IF)
    sh("ip", "-n", FLEET, "link", "set", "eth0", "address", "02:00:00:00:00:01")
    for n, i in ((HOST, IF), (FLEET, "eth0")):
        sh("ip", "-n", n, "link", "set", i, "up")
        sh("ip", "-n", n, "link", "set", "lo", "up")


HOOK_RECEIVER = r"""
import http.server, sys
log = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        open(log, "a").write(self.path + "\n")
        body = b"pulled, no changes"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer((sys.argv[1], 8089), H).serve_forever()
"""

try:
    setup()
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "operator", "-f", f"{tmp}/operator")
    site = {
        "site": "fleet.test",
        "networks": [{"name": IF, "subnet": "10.66.0.0/24", "gateway": "10.66.0.1", "dns": ["10.66.0.1"], "domain": "fleet.test",
                      "pools": ["10.66.0.100-10.66.0.150"], "lease_time": 600,
                      "options": {"syslog": "10.66.0.1", "monitoring": "10.66.0.1:8094", "ntp": ["10.66.0.1"],
                                  "always_send": ["syslog", "monitoring", "ntp"]}}],
        "unikernels": [
            {"name": "proxy", "network": IF, "address": "10.66.0.10", "dhcp": False, "block": {}},
            {"name": "web", "network": IF, "mac": "02:00:00:00:00:01", "address": "10.66.0.20",
             "git": {"access": "read-only", "hook_url": "http://10.66.0.20:8089/hook"},
             "config_uri": "http://10.66.0.1:8080/web.git", "public_hosts": ["www.fleet.test"]},
            {"name": "calendar", "network": IF, "git": {"access": "read-write"}},
            {"name": "resolver", "network": IF, "mac": "00:80:41:00:00:53", "address": "10.66.0.53", "dhcp": False}],
        "services": {"data_dir": DATA,
                     "status": "127.0.0.1:9470", "dhcp": {"routes": {"target": "proxy"}},
                     "git": {"http": "10.66.0.1:8080", "ssh": "127.0.0.1:2222", "public_host": "10.66.0.1",
                             "operators": [{"name": "operator", "key": open(f"{tmp}/operator.pub").read().strip(), "access": "read-write"}]},
                     "block": {"listen": "127.0.0.1:7398"}}}
    json.dump(site, open(f"{tmp}/site.json", "w"))
    log = open(f"{tmp}/serve.log", "w")
    serve = subprocess.Popen(["ip", "netns", "exec", HOST, FC, "serve", f"{tmp}/site.json"], stdout=log, stderr=subprocess.STDOUT)
    procs.append(serve)
    ok, _ = wait_for(lambda: open(f"{tmp}/serve.log").read(), lambda t: "service(s) running" in t or serve.poll() is not None)
    check("fleetconf serve starts DHCP, git and block on one site file", ok and serve.poll() is None, open(f"{tmp}/serve.log").read()[-800:])

    # ---- boot: DHCP ----
    udhcpc_script(tmp)
    ns(FLEET, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "4", "-T", "1", "-s", f"{tmp}/u.sh",
       "-O", "7", "-O", "42", "-O", "125", "-O", "224", check=False, timeout=30)
    env = udhcpc_record(tmp)
    check("the unikernel gets its reserved address", env.get("ip") == "10.66.0.20", env)
    check("and the site options: syslog (7), NTP (42), monitoring (125, enterprise 49836)",
          env.get("opt7") == "0a420001" and env.get("ntpsrv") == "10.66.0.1" and
          env.get("opt125", "") == "0000c2ac10000e" + b"10.66.0.1:8094".hex(), env)
    uri = bytes.fromhex(env.get("opt224", "")).decode(errors="replace")
    check("and its configuration URI (option 224)", uri == "http://10.66.0.1:8080/web.git", uri)

    # ---- the proxy's routes follow the lease ----
    def routes():
        r = ns(HOST, FC, "block", "list", "--json", "--connect", "127.0.0.1:7398", "--key-file", f"{DATA}/block/keys", check=False)
        return {x["host"]: f'{x["address"]}:{x["port"]}' for x in json.loads(r.stdout)["routes"]} if r.returncode == 0 else {}
    ok, got = wait_for(routes, lambda r: r.get("www.fleet.test") == "10.66.0.20:80")
    check("the proxy routes www.fleet.test to the leased address once the lease is acknowledged", ok, got)

    # ---- configuration over git ----
    token = sh(FC, "git", "token", "web", "--site", f"{tmp}/site.json").stdout.strip()
    cred_uri = uri.replace("http://", f"http://web:{token}@")
    r = ns(FLEET, "git", "clone", "-q", "--depth", "1", cred_uri, f"{tmp}/web", check=False)
    check("the stock git client clones the URI it was given, with its credential", r.returncode == 0, r.stderr)
    bad = ns(FLEET, "git", "clone", "-q", uri.replace("http://", "http://web:wrong@"), f"{tmp}/bad", check=False)
    check("a wrong credential is refused", bad.returncode != 0, bad.stderr)
    hook = subprocess.Popen(["ip", "netns", "exec", FLEET, "python3", "-c", HOOK_RECEIVER, "10.66.0.20", f"{tmp}/hook.log"])
    procs.append(hook)
    # Until the hook receiver accepts connections (not a fixed time).
    wait_for(lambda: ns(FLEET, "python3", "-c", "import socket; socket.create_connection(('10.66.0.20', 8089), 1).close()",
                        check=False).returncode, lambda rc: rc == 0, seconds=10)
    ssh_cmd = (f"ssh -i {tmp}/operator -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile={tmp}/known_hosts "
               f"-o StrictHostKeyChecking=accept-new -p 2222")
    op_env = dict(GIT_ENV, GIT_SSH_COMMAND=ssh_cmd)
    r = ns(HOST, "git", "clone", "-q", "ssh://git@127.0.0.1:2222/web.git", f"{tmp}/op", env=op_env, check=False)
    check("the operator clones over SSH with an operator key", r.returncode == 0, r.stderr)
    open(f"{tmp}/op/config.json", "w").write('{"greeting": "hello fleet"}\n')
    sh("git", "-C", f"{tmp}/op", "add", "config.json")
    sh("git", "-C", f"{tmp}/op", "commit", "-q", "-m", "greet the fleet")
    new = sh("git", "-C", f"{tmp}/op", "rev-parse", "HEAD").stdout.strip()
    r = ns(HOST, "git", "-C", f"{tmp}/op", "push", "-q", "origin", "HEAD", env=op_env, check=False)
    check("the operator pushes a change", r.returncode == 0, r.stderr)
    ok, got = wait_for(lambda: open(f"{tmp}/hook.log").read() if os.path.exists(f"{tmp}/hook.log") else "", lambda t: "/hook" in t)
    check("the hook receiver in the fleet namespace is notified", ok, got)
    r = ns(FLEET, "git", "-C", f"{tmp}/web", "fetch", "-q", "--depth", "1", "origin", check=False)
    head = sh("git", "-C", f"{tmp}/web", "rev-parse", "FETCH_HEAD", check=False).stdout.strip()
    check("the client's next fetch sees the new commit", r.returncode == 0 and head == new, (r.stderr, head, new))

    # ---- an admin edits the proxy's routes ----
    def status():
        r = ns(HOST, FC, "block", "status", "--json", "--connect", "127.0.0.1:7398", "--key-file", f"{DATA}/block/keys", check=False)
        return json.loads(r.stdout) if r.returncode == 0 else {}
    before = status().get("generation", 0)
    r = ns(HOST, FC, "block", "upsert", "api.fleet.test", "10.66.0.30", "8443", "--connect", "127.0.0.1:7398",
           "--key-file", f"{DATA}/block/keys", check=False)
    after = status().get("generation", 0)
    check("an admin's `fleetconf block upsert` makes a new generation", r.returncode == 0 and after == before + 1, (r.stderr, before, after))

    # ---- one status endpoint for the three services (and the lease-driven routes) ----
    def get(path):
        r = ns(HOST, "python3", "-c", "import sys, urllib.request as u, urllib.error as e\n"
               "try: r = u.urlopen('http://127.0.0.1:9470' + sys.argv[1]); print(r.status); print(r.read().decode())\n"
               "except e.HTTPError as x: print(x.code); print(x.read().decode())", path, check=False)
        code, _, body = r.stdout.partition("\n")
        return int(code or 0), body
    code, body = get("/health")
    health = json.loads(body) if code else {}
    check("GET /health: 200, every service healthy", code == 200 and health.get("status") == "ok" and
          sorted(health.get("services", {})) == ["block", "config", "dhcp", "git", "routes"] and
          all(v["ok"] for v in health["services"].values()), body[:600])
    code, body = get("/metrics")
    samples = dict(l.rsplit(" ", 1) for l in body.splitlines() if l and not l.startswith("#"))
    check("GET /metrics: the metrics of DHCP, git, block, routes and the process", code == 200 and
          float(samples.get('fleetconf_dhcp_messages_total{type="ack",direction="sent"}', 0)) >= 1 and
          float(samples.get('fleetconf_git_fetches_total{transport="http"}', 0)) >= 1 and all(
          x in body for x in ("fleetconf_git_fetches_total",
                              'fleetconf_block_generation{device="proxy"}', 'fleetconf_routes_changes_total{result="applied"}',
                              'fleetconf_up{service="git"} 1', "process_open_fds")), body[:400])
    code, _ = get("/other")
    check("other paths: 404", code == 404)

    # ---- bootargs for each unikernel ----
    boot = {n: sh(FC, "bootargs", n, "--site", f"{tmp}/site.json", "--json").stdout for n in ("web", "calendar", "resolver", "proxy")}
    args = {n: json.loads(v)["unikernel"] for n, v in boot.items()}
    check("bootargs web: the git remote with its credential placeholder, no static address",
          any(a.startswith("--remote=http://web:TOKEN@10.66.0.1:8080/web.git") for a in args["web"]) and
          not any(a.startswith("--ipv4") for a in args["web"]), args["web"])
    check("bootargs calendar: its own repository", any(a.startswith("--remote=http://calendar:TOKEN@") for a in args["calendar"]), args["calendar"])
    check("bootargs resolver (no DHCP): --ipv4 and --ipv4-gateway", "--ipv4=10.66.0.53/24" in args["resolver"] and
          "--ipv4-gateway=10.66.0.1" in args["resolver"], args["resolver"])
    modes = {n: json.loads(v)["modes"] for n, v in boot.items()}
    check("bootargs web, mode dhcp-config (reads option 224): only its credential", modes["web"].get("dhcp-config") == ["--git-token=TOKEN"],
          modes["web"])
    check("bootargs calendar, mode dhcp-config: the derived URI comes from DHCP, the token stays on the command line",
          modes["calendar"].get("dhcp-config") == ["--git-token=TOKEN"], modes["calendar"])
    check("bootargs resolver and proxy (no DHCP): static mode only", list(modes["resolver"]) == ["static"] and
          list(modes["proxy"]) == ["static"], (modes["resolver"], modes["proxy"]))
    check("bootargs proxy (no DHCP, no git): static address, no remote", "--ipv4=10.66.0.10/24" in args["proxy"] and
          not any(a.startswith("--remote") for a in args["proxy"]), args["proxy"])

    serve.send_signal(signal.SIGTERM)
    check("serve stops cleanly", serve.wait(timeout=20) == 0)
    r = sh(FC, "block", "dump", "--json", f"{DATA}/block/proxy.img", check=False)
    dumped = {x["host"]: f'{x["address"]}:{x["port"]}' for x in json.loads(r.stdout)["routes"]} if r.returncode == 0 else r.stderr
    check("on the device, offline: the lease's route and the admin's route",
          dumped == {"www.fleet.test": "10.66.0.20:80", "api.fleet.test": "10.66.0.30:8443"}, dumped)
finally:
    H.teardown()
H.finish(tmp)
