#!/usr/bin/env python3
"""Connection budgets and phase deadlines of every TCP listener of `fleetconf serve` (issue 17,
docs/limits.md), from outside, on loopback only (127.0.0.1 as the flooding address, 127.0.0.2 and
127.0.0.3 as the others; all in 127.0.0.0/8):

  - a flood of idle connections from one address gets that address's share and no more: the next one from
    it is refused in the protocol's words (HTTP 503 with Retry-After, a git ERR line, blockcfg BUSY), and a
    client from another address is served at once (HTTP, git://, the blockcfg control socket, the status
    endpoint, SSH with the stock OpenSSH client);
  - connections that never log in hold at most the login budget (SSH, blockcfg), and are closed when the
    login grace is over, even when they keep sending bytes;
  - a client trickling one byte at a time is cut when its phase's deadline passes (HTTP request headers,
    git:// request line, blockcfg frame), not kept open by each byte;
  - a client that asks for a pack and does not read it is cut;
  - every refusal is counted in /metrics by listener and reason.

Counts and times are small and bounded (at most a few dozen sockets, each wait at most a few seconds).

usage: limits_test.py FLEETCONF
"""
import argparse, json, os, re, shutil, socket, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from openssh_key import write_key

ap = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n\n")[0])
ap.add_argument("fleetconf")
FC = os.path.abspath(ap.parse_args().fleetconf)
tmp = tempfile.mkdtemp(prefix="fleetconf-limits-")
failures, passed = [], []
T0 = time.monotonic()
server = None
ENV = dict(os.environ, HOME=tmp, GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0")


def check(desc, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + desc + ("" if ok else f"  [{str(detail)[:400]}]"), f"{time.monotonic() - T0:.1f}" if os.environ.get("LIMITS_TIMING") else "")
    (passed if ok else failures).append(desc)


def connect(port, source="127.0.0.1"):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def read_until_closed(s, limit=1 << 20, seconds=5.0):
    """Everything the server sends until it closes (or `seconds` pass: then None follows the data)."""
    s.settimeout(seconds)
    data = b""
    try:
        while len(data) < limit:
            chunk = s.recv(65536)
            if not chunk:
                return data, True
            data += chunk
    except socket.timeout:
        return data, False
    except ConnectionResetError:
        return data, True
    return data, False


def closed_within(s, seconds):
    """True when the server closes `s` within `seconds` (whatever it sent before)."""
    return read_until_closed(s, seconds=seconds)[1]


def trickle_cut(s, first, seconds):
    """Sends `first`, then one byte every 0.25 s; True when the server closes the connection before
    `seconds` have passed (a per-read timeout would keep it open for as long as the bytes come)."""
    s.sendall(first)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            s.sendall(b"a")
        except OSError:
            return True
        s.settimeout(0.25)
        try:
            if s.recv(65536) == b"":
                return True
        except socket.timeout:
            pass
        except OSError:
            return True
    return False


try:
    # ---- a site with every listener on port 0 and small budgets ------------------------------------
    limits = {name: {"max_connections": 12, "max_per_address": 3, "max_unauthenticated": 0}
              for name in ("git", "http", "https", "status")}
    limits["ssh"] = {"max_connections": 12, "max_per_address": 3, "max_unauthenticated": 4, "login_grace": 2}
    limits["block"] = {"max_connections": 12, "max_per_address": 3, "max_unauthenticated": 4, "login_grace": 2}
    limits["git"]["min_rate"] = 4 << 20
    site = {
        "networks": [{"name": "br0", "subnet": "10.77.0.0/24"}],
        "unikernels": [{"name": "web", "network": "br0", "git": {"git_protocol": True}, "block": {"size": 262144}}],
        "services": {"data_dir": f"{tmp}/data", "status": "127.0.0.1:0", "dhcp": {"enabled": False},
                     "block": {"listen": "127.0.0.1:0"}, "limits": limits,
                     "git": {"http": "127.0.0.1:0", "https": "127.0.0.1:0", "git": "127.0.0.1:0", "ssh": "127.0.0.1:0",
                             "read_timeout": 2, "max_object_mb": 16}},
    }
    site_file = f"{tmp}/site.json"
    json.dump(site, open(site_file, "w"))
    subprocess.run([FC, "git", "create", "--site", site_file], check=True, capture_output=True)
    # A pack larger than the socket buffers can hold (incompressible), for the client that does not read.
    open(f"{tmp}/big.bin", "wb").write(os.urandom(12 << 20))
    subprocess.run([FC, "git", "put", "web", "big.bin", "--file", f"{tmp}/big.bin", "--site", site_file], check=True, capture_output=True)
    token = subprocess.run([FC, "git", "token", "web", "--site", site_file], check=True, capture_output=True).stdout.decode().strip()
    seed = subprocess.run([FC, "git", "keygen", "web", "--site", site_file], check=True, capture_output=True).stdout.decode().strip()
    key = f"{tmp}/web.key"
    write_key(seed.split(":", 1)[1], f"{tmp}/data/git/ssh/web.pub", key)
    os.chmod(key, 0o600)

    log = open(f"{tmp}/serve.log", "w")
    server = subprocess.Popen([FC, "serve", site_file, "--no-dhcp"], stdout=log, stderr=subprocess.STDOUT)
    ports = {}
    for _ in range(200):
        text = open(f"{tmp}/serve.log").read()
        ports = dict(re.findall(r"\b(git://|SSH|HTTP|HTTPS|control socket) listening on 127\.0\.0\.1:(\d+)", text))
        m = re.search(r"status on http://127\.0\.0\.1:(\d+)", text)
        if m:
            ports["status"] = m.group(1)
        if len(ports) == 6:
            break
        time.sleep(0.1)
    check("serve runs every listener", len(ports) == 6, ports)
    GITP, SSHP, HTTP, HTTPS, BLOCK, STATUS = (int(ports.get(k, 0)) for k in ("git://", "SSH", "HTTP", "HTTPS", "control socket", "status"))

    def git_request(s, line):
        payload = line.encode()
        s.sendall(b"%04x" % (len(payload) + 4) + payload)

    def git_served(s):
        git_request(s, "git-upload-pack /web.git\0host=127.0.0.1\0")
        data, _ = read_until_closed(s, seconds=1)
        return b"refs/heads/main" in data

    def http_get(s, path="/web.git/info/refs?service=git-upload-pack"):
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return read_until_closed(s, seconds=5)[0]

    # ---- one address floods, another is served at once -------------------------------------------
    for name, port in (("HTTP", HTTP), ("git://", GITP), ("status", STATUS)):
        flood = [connect(port) for _ in range(3)]
        time.sleep(0.2)
        extra = connect(port)
        if name == "git://":
            data, closed = read_until_closed(extra, seconds=3)
            check("git://: the 4th silent connection from one address gets a git ERR line",
                  closed and b"ERR busy: too many connections from this address" in data, data)
        elif name == "HTTP":
            data, closed = read_until_closed(extra, seconds=3)
            check("HTTP: the 4th silent connection from one address gets 503 with Retry-After",
                  data.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 5" in data, data)
        else:
            check("status: the 4th silent connection from one address is closed at once", closed_within(extra, 3))
        other = connect(port, "127.0.0.2")
        if name == "git://":
            ok = git_served(other)
        elif name == "HTTP":
            ok = http_get(other).startswith(b"HTTP/1.1 401 ")  # served: asks for the credential
        else:
            ok = http_get(other, "/health").startswith(b"HTTP/1.1 200 ")
        check(f"{name}: a client from 127.0.0.2 is served at once while 127.0.0.1 floods", ok)
        for s in flood + [extra, other]:
            s.close()

    # blockcfg: BUSY for the flooding address, HELLO for another.
    def block_first_frame(s):
        data, _ = b"", None
        s.settimeout(3)
        while len(data) < 8:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data

    flood = [connect(BLOCK) for _ in range(3)]
    extra = connect(BLOCK)
    frame = block_first_frame(extra)
    check("block: the 4th connection from one address gets BUSY (too many from this address)",
          frame[4:8] == b"FCBB" and b"too many connections from this address" in frame + extra.recv(4096), frame)
    other = connect(BLOCK, "127.0.0.2")
    check("block: 127.0.0.2 gets HELLO at once", block_first_frame(other)[4:8] == b"FCBH")
    for s in flood + [extra, other]:
        s.close()

    def wait_idle(listener):
        """Until the server has seen the test's earlier connections close (its gauge is back at 0)."""
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{STATUS}/metrics", timeout=10) as r:
                    if f'fleetconf_listener_connections{{listener="{listener}"}} 0\n' in r.read().decode():
                        return
            except OSError:
                pass  # the status listener's own share may still be held by a flood that is closing
            time.sleep(0.05)

    # ---- the login budget and grace (blockcfg, SSH) ------------------------------------------------
    wait_idle("block")
    silent = [connect(BLOCK, f"127.0.0.{i}") for i in (10, 11, 12, 13)]
    check("block: four connections from four addresses, not logged in, are greeted",
          all(block_first_frame(s)[4:8] == b"FCBH" for s in silent))  # all four counted before the fifth arrives
    refused = connect(BLOCK, "127.0.0.14")
    frame = block_first_frame(refused)
    check("block: connections that never log in hold at most the login budget (4): the 5th gets BUSY",
          frame[4:8] == b"FCBB", frame)
    check("block: a silent connection is closed when the login grace (2 s) is over", closed_within(silent[0], 6))
    for s in silent + [refused]:
        s.close()
    s = connect(BLOCK, "127.0.0.15")
    block_first_frame(s)
    check("block: a connection trickling a frame is cut at the login grace, not kept by each byte",
          trickle_cut(s, b"\x00\x00\x01\x00", 8))
    s.close()

    ssh_env = dict(ENV, GIT_SSH_COMMAND=f"ssh -F /dev/null -b 127.0.0.2 -i {key} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no "
                                        f"-o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR")
    wait_idle("ssh")
    silent = [connect(SSHP, f"127.0.0.{i}") for i in (20, 21, 22, 23)]
    time.sleep(0.3)
    extra = connect(SSHP, "127.0.0.24")
    check("ssh: a 5th connection that has not logged in is refused while 4 wait (the login budget)", closed_within(extra, 3))
    # The stock client from another address logs in once the silent ones are cut by the grace.
    check("ssh: silent connections are closed when the login grace (2 s) is over", closed_within(silent[0], 6))
    r = subprocess.run(["git", "ls-remote", f"ssh://git@127.0.0.1:{SSHP}/web.git"], env=ssh_env, capture_output=True, timeout=60)
    check("ssh: the stock client (from 127.0.0.2) is served after the pre-auth flood", r.returncode == 0 and b"refs/heads/main" in r.stdout,
          r.stderr)
    for s in silent + [extra]:
        s.close()
    flood = [connect(SSHP) for _ in range(3)]
    time.sleep(0.3)
    r = subprocess.run(["git", "ls-remote", f"ssh://git@127.0.0.1:{SSHP}/web.git"], env=ssh_env, capture_output=True, timeout=60)
    check("ssh: three silent connections from 127.0.0.1 do not keep the stock client from 127.0.0.2 out",
          r.returncode == 0 and b"refs/heads/main" in r.stdout, r.stderr)
    s = connect(SSHP, "127.0.0.25")
    check("ssh: a client trickling its banner is cut at the login grace", trickle_cut(s, b"SSH-2.0-", 8))
    for x in flood + [s]:
        x.close()

    # ---- trickling clients, per listener (read_timeout 2 s) ----------------------------------------
    s = connect(HTTP, "127.0.0.30")
    check("HTTP: a request trickled one byte at a time is cut when read_timeout (2 s) is over", trickle_cut(s, b"GET /", 8))
    s.close()
    s = connect(GITP, "127.0.0.31")
    check("git://: a request line trickled one byte at a time is cut when read_timeout is over", trickle_cut(s, b"0100", 8))
    s.close()
    s = connect(STATUS, "127.0.0.32")
    check("status: a trickled request is cut", trickle_cut(s, b"GET /", 14))
    s.close()
    s = connect(GITP, "127.0.0.33")
    git_request(s, "git-upload-pack /web.git\0host=127.0.0.1\0")
    read_until_closed(s, seconds=0.5)
    check("git://: a negotiation trickled one byte at a time is cut when read_timeout is over", trickle_cut(s, b"0032want ", 8))
    s.close()

    # ---- a client that asks for a pack and does not read it ----------------------------------------
    head = subprocess.run(["git", "--git-dir", f"{tmp}/data/git/repos/web.git", "rev-parse", "main"], capture_output=True,
                          env=ENV).stdout.decode().strip()
    s = connect(GITP, "127.0.0.34")
    git_request(s, "git-upload-pack /web.git\0host=127.0.0.1\0")
    adv, _ = b"", None
    s.settimeout(5)
    while not adv.endswith(b"0000"):
        adv += s.recv(65536)
    s.sendall(f"0032want {head}\n".encode() + b"00000009done\n")
    time.sleep(10)  # read nothing: the pack must go at 4 MiB/s (min_rate), so 2 s + 3 s for 12 MiB
    got, closed = read_until_closed(s, limit=64 << 20, seconds=20)
    check("git://: a client that does not read its pack is cut (it never gets the whole pack)", closed and len(got) < (12 << 20), len(got))
    s.close()

    # ---- /metrics counts the refusals by listener and reason ---------------------------------------
    with urllib.request.urlopen(f"http://127.0.0.1:{STATUS}/metrics", timeout=10) as r:
        metrics = r.read().decode()
    for listener, reason in (("http", "address_full"), ("git", "address_full"), ("block", "address_full"), ("block", "unauthenticated_full"),
                             ("ssh", "unauthenticated_full"), ("status", "address_full")):
        m = re.search(rf'^fleetconf_listener_refused_total{{listener="{listener}",reason="{reason}"}} (\d+)$', metrics, re.M)
        check(f"/metrics: refusals of {listener} counted as {reason}", m is not None and int(m.group(1)) >= 1, m and m.group(0))
    text = open(f"{tmp}/serve.log").read()
    check("a refusal is logged once per address per interval, not once per connection",
          len(re.findall(r"HTTP 127\.0\.0\.1:\d+: refused|http 127\.0\.0\.1:\d+: refused", text)) <= 1, text[-2000:])
finally:
    if server:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    if failures:
        print(open(f"{tmp}/serve.log").read()[-6000:] if os.path.exists(f"{tmp}/serve.log") else "")
    shutil.rmtree(tmp, ignore_errors=True)

print(f"{len(passed)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
