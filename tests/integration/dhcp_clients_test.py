#!/usr/bin/env python3
"""fleetconf's DHCP server against real clients, across veth pairs between network namespaces that this
test creates and always deletes: udhcpc and dhclient (lease, options, renew, release, reservations,
INIT-REBOOT after a restart), perfdhcp, and a kill -9 durability storm. Nothing touches a host interface.

usage: dhcp_clients_test.py FLEETCONF_BINARY
"""
import argparse, json, os, re, signal, socket, struct, subprocess, sys, tempfile, time

from nstest import Harness, require_root_and_netns, udhcpc_script, wait_udhcpc_bound, wait_for

_ap = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n\n")[0])
_ap.add_argument("fleetconf", help="the fleetconf binary to test")
FC = os.path.abspath(_ap.parse_args().fleetconf)
require_root_and_netns()
for tool in ("busybox", "dhclient", "perfdhcp"):
    if subprocess.run(["which", tool], capture_output=True).returncode != 0:
        print(f"FAIL: {tool} is not installed (./dev deps installs it)"); sys.exit(1)

P = f"fdt{os.getpid() % 100000}"
SRV, C1, C2 = f"{P}s", f"{P}a", f"{P}b"
BR = f"{P}br"
tmp = tempfile.mkdtemp(prefix="fleetconf-dhcp-")
server = None
H = Harness(P)
sh, ns, check, failures = H.sh, H.ns, H.check, H.failures


def mac_of(name):
    return json.loads(sh(FC, "site", "show", "--json", f"{tmp}/site.json").stdout)


def setup():
    H.add_namespaces(SRV, C1, C2)
    sh("ip", "-n", SRV, "link", "add", BR, "type", "bridge")
    for i, c in enumerate((C1, C2)):
        sh("ip", "link", "add", f"{P}p{i}", "netns", SRV, "type", "veth", "peer", "name", "eth0", "netns", c)
        sh("ip", "-n", SRV, "link", "set", f"{P}p{i}", "master", BR, "up")
        sh("ip", "-n", c, "link", "set", "lo", "up")
        sh("ip", "-n", c, "link", "set", "eth0", "address", f"02:00:00:00:00:0{i + 1}", "up")
    sh("ip", "-n", SRV, "addr", "add", "10.88.0.1/24", "dev", BR)
    for l in ("lo", BR):
        sh("ip", "-n", SRV, "link", "set", l, "up")


def teardown():
    if server and server.poll() is None:
        server.kill()
    H.teardown()


SITE = {
    "networks": [{
        "name": BR, "subnet": "10.88.0.0/24", "gateway": "10.88.0.1", "dns": ["10.88.0.1"], "domain": "t.example",
        "pools": ["10.88.0.100-10.88.0.239"], "lease_time": 120,
        "options": {"syslog": "10.88.0.2", "monitoring": "10.88.0.3:8094", "ntp": ["10.88.0.4"],
                    "custom": [{"code": 230, "type": "string", "value": "private"}],
                    "vivso": [{"code": 1, "type": "string", "value": "acme"}]}}],
    "unikernels": [
        {"name": "bymac", "network": BR, "mac": "02:00:00:00:00:02", "address": "10.88.0.20"},
        {"name": "web", "network": BR, "address": "10.88.0.21", "config_uri": "git://10.88.0.1/web.git"}],
    "services": {"data_dir": f"{tmp}/data", "dhcp": {"control_http": "127.0.0.1:8004", "control_key_file": f"{tmp}/control.key"}}}
CONTROL_PASSWORD = "correct-horse-battery-staple-42"


def start_server(*extra):
    global server
    log = open(f"{tmp}/server.log", "a")
    mark = os.path.getsize(f"{tmp}/server.log")  # only what this server writes counts
    server = subprocess.Popen(["ip", "netns", "exec", SRV, FC, "dhcp", "serve", f"{tmp}/site.json", *extra], stderr=log)
    for _ in range(50):
        if b"listening on" in open(f"{tmp}/server.log", "rb").read()[mark:]:
            return
        time.sleep(0.1)
    raise RuntimeError("server did not start: " + open(f"{tmp}/server.log").read())


def stop_server(sig=signal.SIGTERM):
    server.send_signal(sig)
    return server.wait(timeout=10)



def udhcpc(client, *extra):
    udhcpc_script(tmp)
    r = ns(client, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "4", "-T", "1", "-s", f"{tmp}/u.sh", *extra,
           check=False, timeout=30)
    try:
        env = dict(l.split("=", 1) for l in open(f"{tmp}/udhcpc.bound").read().split("\n") if "=" in l)
    except FileNotFoundError:
        env = {}
    return r, env


def dhclient(client, *args, conf=""):
    open(f"{tmp}/dh.conf", "w").write(conf)
    return ns(client, "dhclient", "-1", "-v", "-sf", "/bin/true", "-lf", f"{tmp}/dh.leases", "-pf", f"{tmp}/dh.pid",
              "-cf", f"{tmp}/dh.conf", *args, "eth0", check=False, timeout=60)


def leases():
    return json.loads(sh(FC, "dhcp", "leases", "--json", f"{tmp}/site.json").stdout)


def storm(n_clients, kill_after):
    """A scripted relay in C1 (like perfdhcp: giaddr = its own address, replies to port 67) runs full
    DORA exchanges; the server is killed with SIGKILL after `kill_after` seconds. Returns {mac: address}
    for every ACK received."""
    sh("ip", "-n", C1, "addr", "add", "10.88.0.250/24", "dev", "eth0", check=False)
    p = subprocess.Popen(["ip", "netns", "exec", C1, "python3", os.path.join(os.path.dirname(os.path.abspath(__file__)), "dhcp_relay.py"),
                          "10.88.0.250", "10.88.0.1", str(n_clients), str(kill_after + 2)], stdout=subprocess.PIPE, text=True)
    time.sleep(kill_after)
    server.kill()
    server.wait()
    out, _ = p.communicate(timeout=30)
    sh("ip", "-n", C1, "addr", "del", "10.88.0.250/24", "dev", "eth0", check=False)
    return json.loads(out)


try:
    setup()
    fd = os.open(f"{tmp}/control.key", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, (CONTROL_PASSWORD + "\n").encode())
    os.close(fd)
    json.dump(SITE, open(f"{tmp}/site.json", "w"))
    start_server()

    # udhcpc: lease with every site option it asks for (7, 42, 125, 230 requested by number).
    r, env = udhcpc(C1, "-O", "7", "-O", "42", "-O", "125", "-O", "230")
    in_pool = lambda ip: ip.startswith("10.88.0.") and ip.count(".") == 3 and ip.split(".")[3].isdigit() and 100 <= int(ip.split(".")[3]) <= 239
    check("udhcpc gets a lease from the pool (10.88.0.100-10.88.0.239)", in_pool(env.get("ip", "")) and env.get("serverid") == "10.88.0.1", env)
    check("routers, DNS, domain, mask", env.get("router") == "10.88.0.1" and env.get("dns") == "10.88.0.1" and
          env.get("domain") == "t.example" and env.get("mask") == "24", env)
    check("option 7 (syslog sink)", env.get("opt7") == "0a580002", env.get("opt7"))
    check("option 42 (NTP)", env.get("ntpsrv") == "10.88.0.4", env.get("ntpsrv"))
    check("option 125: enterprise 49836, sub-option 0 the monitoring sink, sub-option 1 from the site (DNSvizor's form)",
          env.get("opt125") == "0000c2ac16000e" + b"10.88.0.3:8094".hex() + "0104" + b"acme".hex(), env.get("opt125"))
    check("private option 230", env.get("opt230") == b"private".hex(), env.get("opt230"))
    first = env.get("ip")

    # udhcpc sending option 81 (-F: flags S, ASCII name) and option 125 of its own, asking for 81 and 125 back.
    r, env = udhcpc(C1, "-F", "laptop", "-x", "0x7d:0000c2ac0401026869", "-O", "81", "-O", "125", "-r", first)
    fq = env.get("opt81") or env.get("fqdn", "")
    check("option 81 from udhcpc -F: answered N|O (no DNS update done), RCODEs 255, the name completed with the domain",
          env.get("ip") == first and fq.lower() == "0affff" + b"laptop.t.example.".hex(), (env.get("ip"), fq, r.stderr[-300:]))
    check("a client's own option 125 does not disturb the reply", env.get("opt125", "").startswith("0000c2ac16"), env.get("opt125"))
    log = open(f"{tmp}/server.log").read()
    check("the server log names the FQDN and that no DNS update was done", 'FQDN "laptop", asks the server to update DNS: not done' in log,
          log[-500:])

    # Renew: udhcpc asking again for its address (-r) keeps it; dhclient renews below.
    r, env = udhcpc(C1, "-r", first)
    check("udhcpc gets the same address again", env.get("ip") == first, env.get("ip"))

    # RENEWING and RELEASE from a running udhcpc: SIGUSR1 renews (unicast REQUEST from ciaddr), SIGUSR2
    # releases. (busybox sends a RELEASE only from the BOUND state, so `-q -R` would not.)
    udhcpc_script(tmp)
    d = subprocess.Popen(["ip", "netns", "exec", C1, "busybox", "udhcpc", "-i", "eth0", "-f", "-t", "4", "-T", "1",
                          "-s", f"{tmp}/u.sh"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def wait_log(text, after):
        for _ in range(50):
            if text in open(f"{tmp}/server.log").read()[after:]:
                return True
            time.sleep(0.1)
        return False
    mark = len(open(f"{tmp}/server.log").read())
    bound = wait_log(f"ACK {first}", mark)
    # SIGUSR1 renews only from BOUND (else udhcpc starts over with a DISCOVER): wait until it is there.
    wait_udhcpc_bound(d.pid, tmp)
    mark = len(open(f"{tmp}/server.log").read())
    sh("ip", "netns", "pids", C1)  # (namespace still there)
    subprocess.run(["pkill", "-USR1", "-f", f"udhcpc -i eth0 -f -t 4 -T 1 -s {tmp}/u.sh"])
    check("udhcpc RENEWING (SIGUSR1) is ACKed", bound and wait_log(f"ACK {first}", mark) and "(renew)" in open(f"{tmp}/server.log").read()[mark:])
    mark = len(open(f"{tmp}/server.log").read())
    subprocess.run(["pkill", "-USR2", "-f", f"udhcpc -i eth0 -f -t 4 -T 1 -s {tmp}/u.sh"])
    wait_log("RELEASE", mark)
    d.terminate()
    d.wait()
    state = {l["address"]: l["state"] for l in leases()}
    check("RELEASE recorded", state.get(first) == "released", state)
    r, env = udhcpc(C1)
    check("after RELEASE the client gets its address back", env.get("ip") == first, env.get("ip"))

    # Reservation by MAC (C2 has 02:00:00:00:00:02).
    r, env = udhcpc(C2)
    check("reservation by MAC gives the fixed address", env.get("ip") == "10.88.0.20", env.get("ip"))

    # Reservation by host name: C1 takes the Albatross-derived MAC of "web" and names itself.
    web_mac = next(u["mac"] for u in mac_of("web")["unikernels"] if u["name"] == "web")
    sh("ip", "-n", C1, "link", "set", "eth0", "address", web_mac)
    r, env = udhcpc(C1, "-x", "hostname:web", "-O", "224")
    check("unikernel by name (derived MAC) gets its fixed address", env.get("ip") == "10.88.0.21", env.get("ip"))
    check("and its configuration URI (option 224)", env.get("opt224") == b"git://10.88.0.1/web.git".hex(), env.get("opt224"))
    sh("ip", "-n", C1, "link", "set", "eth0", "address", "02:00:00:00:00:01")

    # dhclient: lease, a private option by name, then renewal (a second dhclient run uses its lease file).
    conf = 'option fc-private code 230 = text;\nrequest subnet-mask, routers, domain-name-servers, log-servers, ntp-servers, fc-private;\n'
    dhclient(C2, conf=conf)
    lf = open(f"{tmp}/dh.leases").read()
    check("dhclient gets the MAC reservation", "fixed-address 10.88.0.20;" in lf, lf[-300:])
    check("dhclient receives options 7, 42 and the private one", "option log-servers 10.88.0.2;" in lf and
          "option ntp-servers 10.88.0.4;" in lf and 'option fc-private "private";' in lf, lf[-400:])

    # Two clients, distinct addresses (C1 on the pool, C2 reserved).
    r, env1 = udhcpc(C1)
    check("two clients get distinct addresses", env1.get("ip") not in (None, "10.88.0.20"), env1.get("ip"))

    # SIGHUP: a unikernel added to the site file gets its reservation; leases are kept; a broken site
    # file is refused and the running configuration stays.
    before = {l["address"] for l in leases()}
    SITE["unikernels"].append({"name": "late", "network": BR, "mac": "02:00:00:00:00:01", "address": "10.88.0.30"})
    json.dump(SITE, open(f"{tmp}/site.json", "w"))
    def log_count(text):
        return open(f"{tmp}/server.log").read().count(text)
    reloads = log_count("configuration reloaded")
    server.send_signal(signal.SIGHUP)
    applied, _ = wait_for(lambda: log_count("configuration reloaded"), lambda n: n > reloads)  # the event, not a sleep
    check("SIGHUP: the reload is applied (logged)", applied)
    r, env = udhcpc(C1)
    check("after SIGHUP a new reservation is served", env.get("ip") == "10.88.0.30", env.get("ip"))
    after = {l["address"] for l in leases()}
    # C1 itself moved to its new reservation (its old pool address is released by that); all others stay.
    check("after SIGHUP the other clients' leases are still there", before - {first} <= after, sorted(before - after))
    open(f"{tmp}/site.json", "w").write('{"networks": [')
    refusals = log_count("(SIGHUP) refused")
    server.send_signal(signal.SIGHUP)
    wait_for(lambda: log_count("(SIGHUP) refused"), lambda n: n > refusals)
    r, env = udhcpc(C1)
    check("a broken site file on SIGHUP is refused, the running configuration stays",
          env.get("ip") == "10.88.0.30" and "(SIGHUP) refused" in open(f"{tmp}/server.log").read(), env.get("ip"))
    json.dump(SITE, open(f"{tmp}/site.json", "w"))
    ns(C1, "ip", "addr", "flush", "dev", "eth0", check=False)

    # Control channel (Kea-compatible commands) and the metrics endpoint, against the running server.
    sock = f"{tmp}/data/dhcp/control.sock"
    def ctl(cmd, args=None):
        a = ["--args", json.dumps(args)] if args is not None else []
        r = sh(FC, "dhcp", "ctl", cmd, "--socket", sock, *a, check=False)
        return r.returncode, (json.loads(r.stdout) if r.stdout.strip().startswith("{") else {"stderr": r.stderr})
    def raw(data):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.connect(sock); c.sendall(data); c.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            b = c.recv(65536)
            if not b: break
            out += b
        return json.loads(out)
    check("control socket is owner-only (0600)", oct(os.stat(sock).st_mode & 0o777) == "0o600", oct(os.stat(sock).st_mode))
    rc, r = ctl("list-commands")
    check("list-commands", rc == 0 and r["result"] == 0 and "lease4-get" in r["arguments"], r)
    rc, r = ctl("status-get")
    check("status-get", r.get("result") == 0 and r["arguments"]["pid"] > 0, r)
    rc, r = ctl("lease4-get-all")
    check("lease4-get-all", r.get("result") == 0 and len(r["arguments"]["leases"]) >= 2, r.get("text"))
    rc, r = ctl("lease4-get", {"ip-address": "10.88.0.20"})
    check("lease4-get by address", r.get("result") == 0 and r["arguments"]["hw-address"] == "02:00:00:00:00:02", r)
    rc, r = ctl("lease4-get", {"identifier-type": "hw-address", "identifier": "02:00:00:00:00:02"})
    check("lease4-get by hw-address", r.get("result") == 0 and r["arguments"]["ip-address"] == "10.88.0.20", r)
    rc, r = ctl("lease4-get", {"ip-address": "10.88.0.222"})
    check("lease4-get of an unknown address: result 3", r.get("result") == 3 and rc == 0, r)
    rc, r = ctl("lease4-add", {"ip-address": "10.88.0.222", "hw-address": "02:00:00:00:00:99", "hostname": "manual"})
    check("lease4-add", r.get("result") == 0, r)
    rc, r = ctl("lease4-add", {"ip-address": "10.88.0.222", "hw-address": "02:00:00:00:00:98"})
    check("lease4-add over another client's lease is refused", r.get("result") == 1 and r["text"] == "10.88.0.222 is leased to 02:00:00:00:00:99", r)
    rc, r = ctl("lease4-del", {"ip-address": "10.88.0.222"})
    check("lease4-del", r.get("result") == 0 and ctl("lease4-get", {"ip-address": "10.88.0.222"})[1]["result"] == 3, r)
    rc, r = ctl("lease4-del", {})
    check("missing argument: clear error", r.get("result") == 1 and r["text"] == "missing parameter 'ip-address'" and rc == 1, r)
    rc, r = ctl("lease4-frobnicate")
    check("unknown command: result 2", r.get("result") == 2 and r["text"] == "'lease4-frobnicate' command not supported.", r)
    r = raw(b'{"command": "status-get", ')
    check("bad JSON: clear error", r.get("result") == 1 and r["text"] == "invalid JSON: the command is not a complete JSON document", r)
    rc, r = ctl("statistic-get-all")
    st = r.get("arguments", {})
    check("statistic-get-all counts packets and pool size", st.get("pkt4-received", [[0]])[0][0] > 0 and
          st.get("pkt4-ack-sent", [[0]])[0][0] > 0 and st.get("subnet[1].total-addresses", [[0]])[0][0] == 140, r.get("text"))
    rc, r = ctl("config-get")
    check("config-get returns the site", r.get("result") == 0 and r["arguments"]["site"]["networks"][0]["name"] == BR, r.get("text"))
    rc, r = ctl("config-reload")
    check("config-reload", r.get("result") == 0, r)
    m = ns(SRV, "python3", "-c", "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9467/metrics').read().decode())",
           check=False)
    check("Prometheus metrics on loopback", "fleetconf_dhcp_packets_received_total" in m.stdout and
          'fleetconf_dhcp_messages_total{type="ack",direction="sent"}' in m.stdout, m.stdout[:300] + m.stderr[-300:])
    m = ns(SRV, "python3", "-c", "import json, urllib.request as u; print(json.load(u.urlopen('http://127.0.0.1:9467/health'))['services']['dhcp'])",
           check=False)
    check("GET /health: the DHCP service is healthy", "'ok': True" in m.stdout, m.stdout + m.stderr[-300:])
    m = ns(SRV, "python3", "-c", "import urllib.request as u\ntry: u.urlopen('http://127.0.0.1:9467/other')\nexcept Exception as e: print(e)",
           check=False)
    check("other paths: 404", m.stdout.strip() == "HTTP Error 404: Not Found", m.stdout + m.stderr)
    # The same commands over HTTP (kea-ctrl-agent's shape), on the server namespace's loopback.
    def ctl_http(cmd, password, args=None):
        a = ["--args", json.dumps(args)] if args is not None else []
        r = ns(SRV, "env", f"FLEETCONF_DHCP_PASSWORD={password}", FC, "dhcp", "ctl", cmd, "--connect", "127.0.0.1:8004", *a, check=False)
        return r.returncode, (json.loads(r.stdout) if r.stdout.strip().startswith("{") else {"stderr": r.stderr})
    rc, r = ctl_http("lease4-get", CONTROL_PASSWORD, {"ip-address": "10.88.0.20"})
    check("HTTP control: lease4-get with the password", rc == 0 and r.get("result") == 0 and r["arguments"]["hw-address"] == "02:00:00:00:00:02", r)
    rc, r = ctl_http("status-get", "wrong-password-wrong-password")
    check("HTTP control: a wrong password is refused with a clear error", rc == 1 and
          r.get("stderr", "").strip() == "fleetconf: 127.0.0.1:8004: password refused (the contents of services.dhcp.control_key_file)", r)
    http = r"""
import base64, json, socket, sys, urllib.request as u
def post(body, auth=True, method="POST", path="/"):
    h = {"Content-Type": "application/json"}
    if auth: h["Authorization"] = "Basic " + base64.b64encode(b"admin:" + sys.argv[1].encode()).decode()
    try:
        r = u.urlopen(u.Request("http://127.0.0.1:8004" + path, data=body, headers=h, method=method), timeout=5)
        return [r.status, json.loads(r.read())]
    except u.HTTPError as e:
        return [e.code, json.loads(e.read() or b"null"), e.headers.get("WWW-Authenticate")]
def exact_mib():  # a command of exactly 1 MiB (the padding member is ignored)
    head, tail = b'{"command": "list-commands", "service": ["dhcp4"], "pad": "', b'"}'
    return head + b"x" * ((1 << 20) - len(head) - len(tail)) + tail
def malformed():
    c = socket.create_connection(("127.0.0.1", 8004), timeout=5)
    c.sendall(b"POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
    data = c.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    return [int(head.split()[1]), json.loads(body)]
def announce_big():  # only the head: the server must answer 413 before any body arrives
    c = socket.create_connection(("127.0.0.1", 8004), timeout=5)
    c.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\n\r\n")
    return [int(c.recv(4096).split()[1])]
print(json.dumps({
  "noauth": post(b'{"command": "list-commands"}', auth=False),
  "get": post(None, method="GET"),
  "badjson": post(b'{"command": '),
  "service": post(b'{"command": "list-commands", "service": ["dhcp6"]}'),
  "unknown": post(b'{"command": "frobnicate", "service": ["dhcp4"]}'),
  "missing": post(b'{"command": "lease4-del", "arguments": {}}'),
  "ok": post(b'{"command": "list-commands", "service": ["dhcp4"]}'),
  "path": post(b'{"command": "list-commands"}', path="/other"),
  "exact": post(exact_mib()),
  "malformed": malformed(),
  "big": announce_big()}))
"""
    m = ns(SRV, "python3", "-c", http, CONTROL_PASSWORD, check=False)
    h = json.loads(m.stdout) if m.stdout.strip() else {}
    check("HTTP control: no credentials -> 401 with a Basic challenge",
          h.get("noauth", [0])[0] == 401 and h["noauth"][2] == 'Basic realm="fleetconf dhcp"', h.get("noauth") or m.stderr[-400:])
    check("HTTP control: GET -> 405", h.get("get", [0])[0] == 405, h.get("get"))
    check("HTTP control: bad JSON -> a clear error in Kea's array form",
          h.get("badjson", [0, [{}]])[1][0] == {"result": 1, "text": "invalid JSON: the body is not a JSON document"}, h.get("badjson"))
    check("HTTP control: another service -> error", h.get("service", [0, [{}]])[1][0] ==
          {"result": 1, "text": 'this control channel serves ["dhcp4"] only'}, h.get("service"))
    check("HTTP control: unknown command -> result 2", h.get("unknown", [0, [{}]])[1][0] ==
          {"result": 2, "text": "'frobnicate' command not supported."}, h.get("unknown"))
    check("HTTP control: missing argument -> result 1, named", h.get("missing", [0, [{}]])[1][0] ==
          {"result": 1, "text": "missing parameter 'ip-address'"}, h.get("missing"))
    check("HTTP control: list-commands", h.get("ok", [0])[0] == 200 and "lease4-get" in h["ok"][1][0]["arguments"], h.get("ok"))
    check("HTTP control: a body of 1 MiB + 1 announced -> 413 before the body", h.get("big", [0])[0] == 413, (h.get("big") or [0])[0])
    check("HTTP control: a body of exactly 1 MiB is answered", h.get("exact", [0])[0] == 200 and h["exact"][1][0]["result"] == 0,
          (h.get("exact") or [0])[0])
    check("HTTP control: a path other than / -> 404 with result 1", h.get("path", [0, {}])[0] == 404 and h["path"][1].get("result") == 1,
          h.get("path"))
    check("HTTP control: malformed HTTP -> 400, documented body", h.get("malformed") == [400, {"result": 1, "text": "malformed HTTP request"}],
          h.get("malformed"))
    # Hostile host names (issue 16.1, 16.2): one byte 0xff, and a newline that would forge a log line. Every
    # output must survive them: the control channel over the socket and HTTP, `dhcp leases` (text and JSON),
    # /metrics, /health and the text log.
    sh("ip", "-n", C1, "addr", "add", "10.88.0.242/24", "dev", "eth0")
    forged = "2026-11-30T00:00:00.000 info  [dhcp] ACK 10.88.0.99 to forged"
    hostile = {"02:00:00:00:77:01": b"\xff", "02:00:00:00:77:02": b"evil\n" + forged.encode()}
    dora = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dhcp_dora.py")
    got = {}
    for mac, name in hostile.items():
        out = ns(C1, "python3", dora, "10.88.0.242", "10.88.0.1", mac, (bytes([12, len(name)]) + name).hex(), timeout=30).stdout
        got[mac] = json.loads(out)["ack"]
    sh("ip", "-n", C1, "addr", "del", "10.88.0.242/24", "dev", "eth0")
    check("hostile host names: both clients get a lease", all(got.values()), got)
    # Host names are kept to 63 bytes, then escaped (docs/text-escaping.md).
    want = {"02:00:00:00:77:01": "\\xff", "02:00:00:00:77:02": "evil\\x0a" + forged[:63 - 5]}
    rc, r = ctl("lease4-get-all")
    hosts = {l["hw-address"]: l["hostname"] for l in r.get("arguments", {}).get("leases", [])}
    check("hostile host names: lease4-get-all answers, the names escaped",
          rc == 0 and r.get("result") == 0 and all(hosts.get(m) == h for m, h in want.items()), r)
    rc, r = ctl("lease4-get", {"ip-address": got["02:00:00:00:77:01"] or "0.0.0.0"})
    check("hostile host names: lease4-get answers", rc == 0 and r.get("arguments", {}).get("hostname") == "\\xff", r)
    rc, r = ctl_http("lease4-get-all", CONTROL_PASSWORD)
    check("hostile host names: lease4-get-all over HTTP answers", rc == 0 and r.get("result") == 0 and
          any(l["hostname"] == "\\xff" for l in r["arguments"]["leases"]), r)
    js = {l["mac"]: l["hostname"] for l in leases()}
    check("hostile host names: dhcp leases --json", all(js.get(m) == h for m, h in want.items()), js)
    text = sh(FC, "dhcp", "leases", f"{tmp}/site.json").stdout
    check("hostile host names: dhcp leases (text) has one line per lease, names escaped",
          "\\xff" in text and forged not in text and all(len(l.split()) >= 4 for l in text.splitlines()), text)
    m = ns(SRV, "python3", "-c", "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9467/metrics').read().decode('utf-8'))",
           check=False)
    check("hostile host names: /metrics still answers in UTF-8", m.returncode == 0 and "fleetconf_dhcp_packets_received_total" in m.stdout,
          m.stderr[-300:])
    logtext = open(f"{tmp}/server.log", "rb").read()
    check("hostile host names: no forged log line, the newline escaped",
          not any(l.startswith(forged.encode()) for l in logtext.split(b"\n")) and b"evil\\x0a2026-11-30" in logtext and
          b"\xff" not in logtext, logtext[-600:])

    r, env = udhcpc(C1)
    check("the server still serves after the control tests", env.get("ip") == "10.88.0.30", env.get("ip"))
    ns(C1, "ip", "addr", "flush", "dev", "eth0", check=False)

    # Restart the server: dhclient's INIT-REBOOT (REQUEST for its recorded address) keeps it.
    check("server stops cleanly on SIGTERM", stop_server() == 0)
    start_server()
    r = dhclient(C2, conf=conf)
    log = open(f"{tmp}/server.log").read().split("SIGTERM")[-1]
    check("INIT-REBOOT after a restart keeps the address", "ACK 10.88.0.20" in log and "init-reboot" in log, log[-600:])
    mark = len(open(f"{tmp}/server.log").read())
    dhclient(C2, "-r", conf=conf)  # dhclient's RELEASE
    # A RELEASE of a reserved address ends the lease (issue 16.6); the reservation stays.
    _, released = wait_for(lambda: next((l["state"] for l in leases() if l["address"] == "10.88.0.20"), None),
                           lambda v: v == "released")
    check("dhclient RELEASE of a reserved address ends its lease", released == "released" and
          "RELEASE 10.88.0.20 by 02:00:00:00:00:02" in open(f"{tmp}/server.log").read()[mark:], released)
    r = dhclient(C2, conf=conf)
    check("after its RELEASE the reserved client gets the same address again",
          next((l["state"] for l in leases() if l["address"] == "10.88.0.20"), None) == "bound", r.stdout[-300:] + r.stderr[-300:])
    dhclient(C2, "-r", conf=conf)
    ns(C2, "ip", "addr", "flush", "dev", "eth0", check=False)

    # perfdhcp completes a run against the server (it acts as a relay from C1).
    sh("ip", "-n", C1, "addr", "add", "10.88.0.240/24", "dev", "eth0")
    # -W: keep listening 1 s after the last packet (without it the last answers count as drops).
    r = ns(C1, "perfdhcp", "-4", "-r", "50", "-n", "100", "-R", "50", "-W", "1000000", "-l", "10.88.0.240", "10.88.0.1",
           check=False, timeout=60)
    out = r.stdout + r.stderr
    print(f"     perfdhcp exit code {r.returncode}; " + " | ".join(l.strip() for l in out.split("\n") if "drops" in l or "sent packets" in l or "received packets" in l or "rejected" in l or "non unique" in l))
    stats = {k: [int(x) for x in re.findall(rf"{k}: (\d+)", out)] for k in ("sent packets", "received packets", "rejected leases", "non unique addresses")}
    check("perfdhcp: both exchanges (DISCOVER-OFFER, REQUEST-ACK) 100 sent, 100 answered, none rejected, no address twice",
          r.returncode == 0 and stats["sent packets"] == [100, 100] and stats["received packets"] == [100, 100] and
          stats["rejected leases"] == [0, 0] and stats["non unique addresses"] == [0, 0], (stats, out[-800:]))
    sh("ip", "-n", C1, "addr", "del", "10.88.0.240/24", "dev", "eth0")

    # Group commit: ACKs that arrive within --commit-interval of the last sync share the next one, and
    # OFFERs (which promise nothing) do not wait for it. The interval is long here (0.5 s) so that what
    # the probe checks does not depend on how fast this machine is.
    stop_server()
    start_server("--commit-interval", "500000")
    def syncs():
        m = ns(SRV, "python3", "-c", "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9467/metrics').read().decode())",
               check=False).stdout
        return int(next((l.split()[-1] for l in m.splitlines() if l.startswith("fleetconf_dhcp_journal_syncs_total")), "-1"))
    sh("ip", "-n", C1, "addr", "add", "10.88.0.241/24", "dev", "eth0")
    before = syncs()
    probe = json.loads(ns(C1, "python3", os.path.join(os.path.dirname(os.path.abspath(__file__)), "dhcp_commit_probe.py"),
                          "10.88.0.241", "10.88.0.1", "12", timeout=30).stdout)
    used = syncs() - before
    sh("ip", "-n", C1, "addr", "del", "10.88.0.241/24", "dev", "eth0")
    order = probe["order"]
    check("group commit: every REQUEST of the burst is ACKed", len(probe["acked"]) == 12 and order.count("ack") == 12, probe)
    check("group commit: the lone first REQUEST is synced at once, the OFFER to the later DISCOVER does not wait "
          "for the ACKs queued behind the next sync", order[0] == "ack" and order[1] == "offer", order)
    # Commits start at least 0.5 s apart: in `seconds` there is room for at most seconds/0.5 + 1 of them.
    check(f"group commit: {used} syncs for 12 ACKs in {probe['seconds']:.2f} s (at most one per interval)",
          0 < used <= int(probe["seconds"] / 0.5) + 1 and used < 12, (used, probe["seconds"]))
    stop_server()
    start_server()

    # Durability: kill -9 during a storm of DORA exchanges; after a restart every ACKed lease is there.
    acked = storm(60, 1.5)
    start_server()
    stop_server()
    have = {l["mac"]: l["address"] for l in leases() if l["state"] == "bound"}
    missing = [m for m, a in acked.items() if have.get(m) != a]
    check(f"kill -9 mid-storm: all {len(acked)} ACKed leases survived", len(acked) > 0 and not missing, missing[:5])

    # A zeroed 512-byte sector in the middle of the journal (issue 16.3): the server keeps every intact
    # record after it, copies the damaged file aside, logs the region at error level and says "degraded".
    jf = f"{tmp}/data/dhcp/leases.journal"
    data = bytearray(open(jf, "rb").read())
    end = data.index(b"\0" * 64)  # the records end where the preallocated zeros begin
    at = (end // 2) // 512 * 512
    data[at:at + 512] = b"\0" * 512
    open(jf, "wb").write(bytes(data))
    survivors = {r.split(b'"m":"')[1][:17].decode() for r in bytes(data[at + 512:end]).split(b"\n")[1:] if b'"m":"' in r}
    mark = len(open(f"{tmp}/server.log").read())
    start_server()
    log = open(f"{tmp}/server.log").read()[mark:]
    have = {l["mac"] for l in leases()}
    check(f"zeroed sector: all {len(survivors)} records after it kept", len(survivors) > 5 and survivors <= have,
          sorted(survivors - have)[:5])
    region = re.search(r" error \[dhcp\] leases: \S+: damaged region at offset (\d+), (\d+) bytes", log)
    check("zeroed sector: the region is logged at error level with its offset and length",
          region is not None and int(region[1]) <= at and int(region[1]) + int(region[2]) >= at + 512, log[-800:])
    copies = [f for f in os.listdir(f"{tmp}/data/dhcp") if f.startswith("leases.journal.damaged-")]
    check("zeroed sector: the damaged file copied aside, byte for byte",
          len(copies) == 1 and open(f"{tmp}/data/dhcp/{copies[0]}", "rb").read() == bytes(data), copies)
    m = ns(SRV, "python3", "-c", "import urllib.request as u; r = u.urlopen('http://127.0.0.1:9467/health'); print(r.status, r.read().decode())",
           check=False).stdout
    check("zeroed sector: /health says degraded (200) and names the copy", m.startswith("200") and '"degraded"' in m and
          copies and copies[0] in m, m)
    stop_server()
finally:
    teardown()
H.finish(tmp)
