#!/usr/bin/env python3
"""A reload is a transaction with a verdict (issue 23): `fleetconf serve` in a network namespace this
test creates (and always deletes), two veth pairs to two client namespaces, udhcpc as the unikernel.

- A network added on reload gets its socket: a client on the new segment is answered, and `fleetconf
  reload` prints the verdict "applied" (exit 0).
- An interface typo is refused as a whole (exit 1, the interface named): DHCP keeps answering on the
  running networks, /health turns "degraded" and says why, /metrics shows the refused reload and that the
  file on disk differs from what runs, config-get returns what runs, config-reload answers result 1.
- Keys that need a restart (a git listener's port, block.listen, control_http) are refused, each named.
- A new unikernel's block device is created and served on reload; a removed one is no longer served.
- An invalid file on disk: `fleetconf reload` refuses to send (exit 2); SIGHUP records a refused verdict.

usage: reload_test.py FLEETCONF_BINARY
"""
import argparse, json, os, signal, subprocess, tempfile

from nstest import Harness, require_root_and_netns, udhcpc_record, udhcpc_script, wait_for

_ap = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n\n")[0])
_ap.add_argument("fleetconf", help="the fleetconf binary to test")
FC = os.path.abspath(_ap.parse_args().fleetconf)
require_root_and_netns()

P = f"frl{os.getpid() % 100000}"
SRV, C1, C2 = f"{P}s", f"{P}a", f"{P}b"
IF1, IF2 = f"{P}v1", f"{P}v2"
tmp = tempfile.mkdtemp(prefix="fleetconf-reload-")
H = Harness(P)
sh, ns, check, procs = H.sh, H.ns, H.check, H.procs
SITE = f"{tmp}/site.json"
SOCK = f"{tmp}/data/dhcp/control.sock"


def setup():
    H.add_namespaces(SRV, C1, C2)
    H.veth(SRV, IF1, C1, "eth0")
    H.veth(SRV, IF2, C2, "eth0")
    sh("ip", "-n", SRV, "addr", "add", "10.78.1.1/24", "dev", IF1)
    sh("ip", "-n", SRV, "addr", "add", "10.78.2.1/24", "dev", IF2)
    for n, i in ((SRV, IF1), (SRV, IF2), (C1, "eth0"), (C2, "eth0")):
        sh("ip", "-n", n, "link", "set", i, "up")
        sh("ip", "-n", n, "link", "set", "lo", "up")


def network(ifname, third):
    return {"name": ifname, "subnet": f"10.78.{third}.0/24", "gateway": f"10.78.{third}.1",
            "pools": [f"10.78.{third}.100-10.78.{third}.150"], "lease_time": 120}


def base():
    return {
        "networks": [network(IF1, 1)],
        "unikernels": [{"name": "proxy", "network": IF1, "address": "10.78.1.10", "dhcp": False, "block": {}}],
        "services": {"data_dir": f"{tmp}/data", "status": "127.0.0.1:9467", "git": {"http": "127.0.0.1:8080"},
                     "block": {"listen": "127.0.0.1:7300"}}}


def write(site):
    json.dump(site, open(SITE, "w"), indent=1)


def udhcpc(client):
    udhcpc_script(tmp)
    ns(client, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "3", "-T", "1", "-s", f"{tmp}/u.sh", check=False, timeout=30)
    return udhcpc_record(tmp).get("ip")


def reload():
    return ns(SRV, FC, "reload", SITE, check=False)


def http(path):
    r = ns(SRV, "python3", "-c", "import sys, urllib.request, urllib.error\n"
           "try:\n r = urllib.request.urlopen('http://127.0.0.1:9467' + sys.argv[1], timeout=5); print(r.status); print(r.read().decode())\n"
           "except urllib.error.HTTPError as e:\n print(e.code); print(e.read().decode())", path, check=False)
    code, _, body = r.stdout.partition("\n")
    return int(code or 0), body


def ctl_args(command, args):
    r = ns(SRV, FC, "dhcp", "ctl", command, "--socket", SOCK, "--args", json.dumps(args), check=False)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {"stdout": r.stdout, "stderr": r.stderr}


def ctl(command):
    return ctl_args(command, {})


def block_get(device):
    return ns(SRV, FC, "block", "list", "--json", "--connect", "127.0.0.1:7300", "--key-file", f"{tmp}/data/block/keys",
              "--device", device, check=False)


try:
    setup()
    s = base()
    write(s)
    log = open(f"{tmp}/serve.log", "a")
    p = subprocess.Popen(["ip", "netns", "exec", SRV, FC, "serve", SITE], stdout=log, stderr=subprocess.STDOUT)
    procs.append(p)
    ok, _ = wait_for(lambda: "service(s) running" in open(f"{tmp}/serve.log").read() or p.poll() is not None, lambda v: v, 20)
    check("serve starts on one network", ok and p.poll() is None, open(f"{tmp}/serve.log").read()[-800:])
    check("a client on that network gets a lease", (udhcpc(C1) or "").startswith("10.78.1."))
    check("the second segment gets nothing yet", udhcpc(C2) is None)

    # 1. A network added on reload is served at once.
    s["networks"].append(network(IF2, 2))
    write(s)
    r = reload()
    check("reload with a new network: exit 0, verdict applied", r.returncode == 0 and "reloaded" in r.stdout and "2 networks" in r.stdout,
          (r.returncode, r.stdout, r.stderr))
    check("the new network's client gets a lease", (udhcpc(C2) or "").startswith("10.78.2."))
    code, body = http("/health")
    check("/health ok after an applied reload", code == 200 and '"status": "ok"' in body, body)

    # 2. An interface typo refuses the whole reload; both networks keep working.
    bad = json.loads(json.dumps(s))
    bad["networks"][1]["interface"] = f"{P}typo"
    bad["networks"].append(network(f"{P}v3", 3))  # would be applied too, were the reload not refused
    write(bad)
    r = reload()
    check("interface typo: exit 1, the interface named", r.returncode == 1 and f"{P}typo" in r.stderr, (r.returncode, r.stdout, r.stderr))
    check("DHCP still answers on the first network", (udhcpc(C1) or "").startswith("10.78.1."))
    check("and on the second", (udhcpc(C2) or "").startswith("10.78.2."))
    code, body = http("/health")
    check("/health degraded: the last reload was refused and the file differs", code == 200 and '"degraded"' in body and
          "refused" in body and "differs" in body, body)
    code, metrics = http("/metrics")
    check("/metrics: fleetconf_reload_last_success 0, fleetconf_config_file_differs 1",
          "fleetconf_reload_last_success 0" in metrics and "fleetconf_config_file_differs 1" in metrics and
          'fleetconf_reload_total{result="refused"} 1' in metrics, metrics[-600:])
    got = ctl("config-get")
    check("config-get returns what runs (two networks), not the refused file",
          got.get("result") == 0 and len(got["arguments"]["site"]["networks"]) == 2 and
          got["arguments"]["site"]["networks"][1]["name"] == IF2 and "interface" not in got["arguments"]["site"]["networks"][1], got)
    got = ctl("config-reload")
    check("config-reload answers result 1 with the reason", got.get("result") == 1 and f"{P}typo" in got.get("text", ""), got)

    # 3. Keys that need a restart are refused, each named.
    need = json.loads(json.dumps(s))
    need["services"]["git"]["http"] = "127.0.0.1:8081"
    need["services"]["block"]["listen"] = "127.0.0.1:7301"
    need["services"]["dhcp"] = {"control_http": "127.0.0.1:8000", "control_key_file": f"{tmp}/ctl.key"}
    open(f"{tmp}/ctl.key", "w").write("a control password of 24 chars\n")
    os.chmod(f"{tmp}/ctl.key", 0o600)
    write(need)
    r = reload()
    check("restart keys: exit 1 naming /services/git/http, /services/block/listen, /services/dhcp/control_http",
          r.returncode == 1 and all(k in r.stderr for k in ("/services/git/http", "/services/block/listen", "/services/dhcp/control_http")),
          (r.returncode, r.stderr))
    verdict = json.load(open(f"{tmp}/data/reload.json"))
    check("reload.json records the refusal and its keys", verdict["applied"] is False and "/services/git/http" in verdict["restart_keys"], verdict)
    code, body = http("/health")
    check("/health still names the running git port (8080), not the refused one", code == 200 and "http 127.0.0.1:8080" in body and
          "8081" not in body, body)

    # 4. A new unikernel's block device is created and served; a removed one is no longer served.
    s["unikernels"].append({"name": "proxy2", "network": IF1, "address": "10.78.1.11", "dhcp": False, "block": {}})
    write(s)
    r = reload()
    check("a unikernel with a new block device: applied", r.returncode == 0, (r.stdout, r.stderr))
    check("its image was created", os.path.exists(f"{tmp}/data/block/proxy2.img"))
    r2 = block_get("proxy2")
    check("and the control socket serves it", r2.returncode == 0 and '"routes"' in r2.stdout, (r2.stdout, r2.stderr))
    r2 = ns(SRV, FC, "block", "list", "--device", "proxy2", "--site", SITE, check=False)
    check("block --site: the editor's address and key file come from the site file", r2.returncode == 0, (r2.stdout, r2.stderr))
    s["unikernels"] = [u for u in s["unikernels"] if u["name"] != "proxy2"]
    write(s)
    r = reload()
    r2 = block_get("proxy2")
    check("removed again: applied, and the device is no longer served", r.returncode == 0 and r2.returncode != 0 and "proxy2" in r2.stderr,
          (r.stdout, r.stderr, r2.stdout, r2.stderr))

    # 5a. DHCP operators' tools: log levels at run time, per-packet debug lines, Kea's subnets filter,
    # known_only, and pool exhaustion (a warning, a counter, a /health detail).
    got = ctl_args("log-level-set", {"levels": "info,dhcp=debug"})
    check("log-level-set dhcp=debug at run time", got.get("result") == 0 and "dhcp=debug" in got["arguments"]["levels"], got)
    mark = len(open(f"{tmp}/serve.log").read())
    udhcpc(C1)
    tail = open(f"{tmp}/serve.log").read()[mark:]
    check("dhcp=debug: each packet in (type, chaddr, xid, requested options) and each reply (type, options) is logged",
          "received DISCOVER" in tail and "requested-options" in tail and "xid" in tail and "sending OFFER" in tail and "sending ACK" in tail,
          tail[-1500:])
    ctl_args("log-level-set", {"levels": "info"})
    s["services"]["log_level"] = "warn,dhcp=debug"
    write(s)
    r = reload()
    got = ctl("log-level-get")
    check("services.log_level applies on reload (SIGHUP)", r.returncode == 0 and got.get("arguments", {}).get("levels") == "warning,dhcp=debug",
          (r.stderr, got))
    del s["services"]["log_level"]
    write(s)
    reload()
    ctl_args("log-level-set", {"levels": "info"})
    got = ctl_args("lease4-get-all", {"subnets": [2]})
    check("lease4-get-all with Kea's subnets filter: only that network's leases",
          got.get("result") == 0 and got["arguments"]["leases"] and all(l["subnet-id"] == 2 for l in got["arguments"]["leases"]), got)
    s["networks"][1]["known_only"] = True
    write(s)
    r = reload()
    ns(C2, "ip", "link", "set", "eth0", "address", "02:00:00:00:02:99")
    check("known_only: an unknown client on that network gets no address", r.returncode == 0 and udhcpc(C2) is None, r.stderr)
    check("and the log says why", "serves known clients only" in open(f"{tmp}/serve.log").read())
    s["networks"][1]["known_only"] = False
    s["networks"][0]["pools"] = ["10.78.1.100-10.78.1.100"]
    write(s)
    r = reload()
    leased = {l["ip-address"] for l in ctl("lease4-get-all").get("arguments", {}).get("leases", [])}
    ns(C1, "ip", "link", "set", "eth0", "address", "02:00:00:00:01:99")
    check("pool of one address, already leased: a new client gets nothing", r.returncode == 0 and "10.78.1.100" in leased and udhcpc(C1) is None,
          (r.stderr, leased))
    log = open(f"{tmp}/serve.log").read()
    check("pool exhaustion is logged at warning, once for the client's retries", " warn" in "".join(
          l[23:30] for l in log.splitlines() if "pool exhausted" in l) and sum("pool exhausted" in l for l in log.splitlines()) <= 2,
          [l for l in log.splitlines() if "pool exhausted" in l])
    code, metrics = http("/metrics")
    check("fleetconf_dhcp_allocation_failures_total counts it", f'fleetconf_dhcp_allocation_failures_total{{network="{IF1}"}} ' in metrics and
          f'fleetconf_dhcp_allocation_failures_total{{network="{IF1}"}} 0' not in metrics, metrics[-800:])
    code, body = http("/health")
    check("/health is degraded and names the exhausted pool", '"degraded"' in body and "pool exhausted" in body, body)
    st = ctl("statistic-get-all")
    check("statistic-get-all has Kea's v4-allocation-fail", st.get("arguments", {}).get("v4-allocation-fail", [[0]])[0][0] >= 1, st)
    s["networks"][0]["pools"] = ["10.78.1.100-10.78.1.150"]
    write(s)
    reload()

    # 5b. Safe defaults: a gateway that is not this host, with no server_address, is applied with a warning
    # naming the key to set (clients would send their renewals to the router).
    foreign = json.loads(json.dumps(s))
    foreign["networks"][1]["gateway"] = "10.78.2.254"
    write(foreign)
    r = reload()
    check("a server identifier that is not an address of this host: warned, with the key to set", r.returncode == 0 and
          "10.78.2.254 (the gateway, as no server_address is set) is not an address of this host" in open(f"{tmp}/serve.log").read() and
          "/networks/1/server_address" in open(f"{tmp}/serve.log").read(), r.stderr)
    write(s)
    reload()

    # 5. An invalid file: `fleetconf reload` sends nothing (exit 2); a SIGHUP records the refusal.
    open(SITE, "w").write("{ \"networks\": [ }")
    r = reload()
    check("invalid file: fleetconf reload exits 2 without signalling", r.returncode == 2, (r.returncode, r.stderr))
    before = json.load(open(f"{tmp}/data/reload.json"))["seq"]
    p.send_signal(signal.SIGHUP)
    ok, v = wait_for(lambda: json.load(open(f"{tmp}/data/reload.json")), lambda v: v["seq"] > before, 10)
    check("SIGHUP with an invalid file: verdict refused, 'is invalid'", ok and not v["applied"] and "is invalid" in v["message"], v)
    # Inspection commands keep working from the configuration that runs while the file is invalid.
    # Broken JSON names no data directory: --data-dir says where. Valid JSON that is wrong still names its own.
    semantic = json.loads(json.dumps(s))
    semantic["networks"][0]["subnet"] = "10.78.1.0/33"
    for cmd in (["dhcp", "leases", "--site", SITE, "--data-dir", f"{tmp}/data"], ["dhcp", "ctl", "status-get", "--site", SITE],
                ["git", "list", "--site", SITE], ["bootargs", "proxy", "--site", SITE]):
        if "--data-dir" not in cmd:
            write(semantic)
        r = ns(SRV, FC, *cmd, check=False)
        check(f"invalid file on disk: `{' '.join(cmd[:2])}` works from the running configuration, with a warning",
              r.returncode == 0 and "using the configuration the server runs" in r.stderr, (r.returncode, r.stderr[-400:]))
    check("DHCP still answers after all of it", (udhcpc(C2) or "").startswith("10.78.2."))
    write(s)
    r = reload()
    code, body = http("/health")
    check("the file fixed: applied, /health ok again", r.returncode == 0 and code == 200 and '"status": "ok"' in body, (r.stderr, body))
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=20)
    check("serve stops cleanly", p.returncode == 0, p.returncode)
finally:
    H.teardown()
H.finish(tmp)
