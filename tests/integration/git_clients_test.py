#!/usr/bin/env python3
"""gitconf against real git clients on loopback (127.0.0.1 only): the stock git client over git://,
HTTP and HTTPS with protocol v0 and v2 (clone, --depth 1, --shallow-since, fetch after new commits and
after a history rewrite, ls-remote, an empty repository, annotated tags, a file over 1 MiB, hundreds of
haves in a gzip body, git fsck on every result), a libgit2 client, the git-kv request fixtures replayed
byte for byte, and the access rules and limits.

usage: git_clients_test.py FLEETCONF LIBGIT2_CLONE FIXTURE_DIR
"""
import argparse, base64, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from openssh_key import write_key
from nstest import wait_for

_ap = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n\n")[0])
_ap.add_argument("fleetconf", help="the fleetconf binary to test")
_ap.add_argument("libgit2_clone", help="the libgit2 clone helper (tests/gitconf)")
_ap.add_argument("fixtures", help="tests/gitconf/fixtures")
_args = _ap.parse_args()
FC, LG2, FIX = (os.path.abspath(a) for a in (_args.fleetconf, _args.libgit2_clone, _args.fixtures))
tmp = tempfile.mkdtemp(prefix="fleetconf-git-")
# Validators run as "nobody" when fleetconf runs as root: the script lives where that user can reach it.
VALIDATOR_DIR = tempfile.mkdtemp(prefix="fleetconf-validator-")
os.chmod(VALIDATOR_DIR, 0o755)
failures, passed = [], []
server = None
SRC_ENV = dict(os.environ, GIT_AUTHOR_NAME="fleetconf test", GIT_AUTHOR_EMAIL="test@fleetconf",
               GIT_COMMITTER_NAME="fleetconf test", GIT_COMMITTER_EMAIL="test@fleetconf",
               GIT_CONFIG_NOSYSTEM="1", HOME=tmp, GIT_TERMINAL_PROMPT="0")
SECOND = "1c62a270edc858f843bda98bf9c5d59ef8cfe6b8"  # pinned by the fixtures in tests/gitconf/fixtures
THIRD = "248ea12b6c2d78c4d1725f887f1c3fc2860699f0"


def check(desc, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + desc + ("" if ok else f"  [{str(detail)[:600]}]"))
    if ok:
        passed.append(desc)
    else:
        failures.append(desc)


def run(*args, env=None, cwd=None, check_rc=True, input=None):
    r = subprocess.run(list(args), capture_output=True, env=env or SRC_ENV, cwd=cwd, input=input)
    if check_rc and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: {r.stderr.decode(errors='replace').strip()}")
    return r


def git(*args, cwd=None, check_rc=True, env=None):
    return run("git", *args, cwd=cwd, check_rc=check_rc, env=env)


def reserved_port(listen=False):
    """A socket on a port the kernel chose (port 0), kept open for the whole test so the port stays ours."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    if listen:
        s.listen(64)
    return s


# No port is guessed (tests/README.md): the hook receiver listens on a socket bound to port 0; the dead
# webhook's port is bound and never listens (connections are refused); the server's listeners are
# configured with port 0 and the ports they got are read from its log, then written into the site file.
HOOK_SOCK, DEAD_SOCK = reserved_port(listen=True), reserved_port()
HOOKP, DEADP = HOOK_SOCK.getsockname()[1], DEAD_SOCK.getsockname()[1]
HTTP = HTTPS = GITP = SSHP = 0
DATA = f"{tmp}/data"
SITE = {
    "site": "git.test",
    "networks": [{"name": "br0", "subnet": "10.77.0.0/24", "gateway": "10.77.0.1", "pools": ["10.77.0.100-10.77.0.199"]}],
    "unikernels": [
        {"name": "web", "network": "br0", "git": {"access": "read-only", "git_protocol": True}},
        {"name": "cal", "network": "br0", "git": {"access": "read-write", "hook_url": f"http://127.0.0.1:{HOOKP}/hook",
                                                  "webhook_url": f"http://127.0.0.1:{HOOKP}/events",
                                                  "validator": [f"{VALIDATOR_DIR}/validator.sh", "--strict"]}},
        {"name": "kv", "network": "br0", "git": {"git_protocol": True}},
        {"name": "big", "network": "br0", "git": {}},
        {"name": "empty", "network": "br0", "git": {"git_protocol": True}},
        {"name": "drop", "network": "br0", "git": {"access": "read-write", "webhook_url": f"http://127.0.0.1:{DEADP}/never"}},
    ],
    "services": {"data_dir": DATA, "status": "off", "dhcp": {"enabled": False}, "block": {"enabled": False},
                 "git": {"http": f"127.0.0.1:{HTTP}", "https": f"127.0.0.1:{HTTPS}", "git": f"127.0.0.1:{GITP}",
                         "ssh": f"127.0.0.1:{SSHP}", "public_host": "127.0.0.1", "read_timeout": 2, "max_object_mb": 1}},
}
SITE_FILE = f"{tmp}/site.json"
with open(f"{VALIDATOR_DIR}/validator.sh", "w") as f:
    f.write('#!/bin/sh\n[ "$1" = --strict ] || exit 9\nif grep -rqs FORBIDDEN .; then echo "FORBIDDEN found in $FLEETCONF_REPOSITORY"; exit 1; fi\n')
os.chmod(f"{VALIDATOR_DIR}/validator.sh", 0o755)
json.dump(SITE, open(SITE_FILE, "w"))


def repo(name):
    return f"{DATA}/git/repos/{name}.git"


def commit_in(src, when, files, msg):
    env = dict(SRC_ENV, GIT_AUTHOR_DATE=f"{when} +0000", GIT_COMMITTER_DATE=f"{when} +0000")
    for path, content in files.items():
        os.makedirs(os.path.dirname(f"{src}/{path}") or src, exist_ok=True)
        open(f"{src}/{path}", "w").write(content)
    run("git", "add", "-A", cwd=src, env=env)
    run("git", "commit", "-q", "-m", msg, cwd=src, env=env)
    return git("rev-parse", "HEAD", cwd=src).stdout.decode().strip()


def push_local(src, name, ref="main", force=True):
    """Setup only: writes into the served bare repository through the file system, not the server."""
    git("push", "-q", *(["--force"] if force else []), repo(name), f"HEAD:refs/heads/{ref}", cwd=src)


def wait_port(port):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def fsck(d):
    r = git("fsck", "--no-dangling", cwd=d, check_rc=False)
    return r.returncode == 0, r.stderr.decode(errors="replace")


def count_commits(d, rev="HEAD"):
    return int(git("rev-list", "--count", rev, cwd=d).stdout)


def http_request(method, path, headers=None, body=None, port=None):
    port = port or HTTP
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def basic(user, token):
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


def pkt(line):
    """One pkt-line (text)."""
    return f"{len(line) + 4:04x}{line}"


def parse_pkts(data):
    """(lines before the pack, pack bytes, progress text) from an upload-pack response."""
    lines, pack, progress, i, in_pack = [], b"", b"", 0, False
    while i + 4 <= len(data):
        n = int(data[i:i + 4], 16)
        if n == 0:
            i += 4
            if in_pack:
                break
            continue
        payload = data[i + 4:i + n]
        i += n
        if payload[:1] in (b"\x01", b"\x02", b"\x03") and (in_pack or payload[:1] == b"\x01" or payload[:1] == b"\x02"):
            in_pack = True
            if payload[:1] == b"\x01":
                pack += payload[1:]
            elif payload[:1] == b"\x02":
                progress += payload[1:]
            else:
                lines.append("ERR-BAND " + payload[1:].decode(errors="replace"))
        else:
            lines.append(payload.decode(errors="replace").rstrip("\n"))
    return lines, pack, progress


def pack_objects(pack):
    d = tempfile.mkdtemp(dir=tmp)
    git("init", "-q", d)
    open(f"{d}/x.pack", "wb").write(pack)
    r = git("index-pack", "-o", f"{d}/x.idx", f"{d}/x.pack", cwd=d, check_rc=False)
    if r.returncode != 0:
        return None, r.stderr.decode()
    out = git("verify-pack", "-v", f"{d}/x.idx", cwd=d).stdout.decode()
    return {l.split()[0] for l in out.splitlines() if re.match(r"^[0-9a-f]{40} ", l)}, ""


def tree_objects(src, commit):
    objs = {commit, git("rev-parse", f"{commit}^{{tree}}", cwd=src).stdout.decode().strip()}
    for l in git("ls-tree", "-r", "-t", commit, cwd=src).stdout.decode().splitlines():
        objs.add(l.split()[2])
    return objs


def git_daemon_exchange(name, body, read_advert=True):
    s = socket.create_connection(("127.0.0.1", GITP), 5)
    s.settimeout(10)
    line = f"git-upload-pack /{name}.git\0host=127.0.0.1\0".encode()
    s.sendall(b"%04x" % (len(line) + 4) + line)
    data = b""
    if read_advert:
        while not data.endswith(b"0000"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    s.sendall(body)
    resp = b""
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        resp += chunk
    s.close()
    return data, resp


try:
    # ---- repositories and credentials --------------------------------------------------------
    run(FC, "git", "create", "--site", SITE_FILE)
    check("git create made every repository", all(os.path.isdir(repo(n)) for n in ("web", "cal", "kv", "big", "empty")))
    src = f"{tmp}/src"
    git("init", "-q", "-b", "main", src)
    first = commit_in(src, 1700000000, {"config.json": '{"hostname":"web"}\n', "htdocs/index.html": "<h1>v1</h1>\n"}, "first")
    git("tag", "-a", "v1", "-m", "release 1", cwd=src, env=dict(SRC_ENV, GIT_COMMITTER_DATE="1700000000 +0000"))
    second = commit_in(src, 1700000100, {"htdocs/index.html": "<h1>v2</h1>\n"}, "second")
    check("fixture history is deterministic (ids pinned by the git-kv fixtures)", second == SECOND, second)
    git("tag", "light", cwd=src)
    push_local(src, "web")
    push_local(src, "kv")
    git("push", "-q", repo("web"), "refs/tags/v1", "refs/tags/light", cwd=src)
    # "empty": a repository without any commit (HEAD -> refs/heads/main, unborn)
    for name in ("empty", "drop"):
        shutil.rmtree(repo(name))
        git("init", "-q", "--bare", "-b", "main", repo(name))
    big_content = os.urandom(1536 * 1024)
    open(f"{tmp}/big.bin", "wb").write(big_content)
    # Over services.git.max_object_mb: `git put` refuses it as a push would (issue 23); planted directly.
    r = run(FC, "git", "put", "big", "blob.bin", "--file", f"{tmp}/big.bin", "--site", SITE_FILE, check_rc=False)
    check("git put of a file over max_object_mb is refused as a push would be", r.returncode == 1 and "over the limit" in r.stderr.decode(),
          r.stderr.decode())
    bsrc = tempfile.mkdtemp(dir=tmp)
    git("init", "-q", "-b", "main", bsrc)
    shutil.copy(f"{tmp}/big.bin", f"{bsrc}/blob.bin")
    git("add", "-A", cwd=bsrc)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "big", cwd=bsrc)
    push_local(bsrc, "big")

    tokens = {n: run(FC, "git", "token", n, "--site", SITE_FILE).stdout.decode().strip() for n in ("web", "cal", "kv", "big", "empty", "drop")}
    check("tokens are 48 hex digits and only their hashes are stored",
          all(re.fullmatch(r"[0-9a-f]{48}", t) for t in tokens.values()) and
          all(t not in open(f"{DATA}/git/tokens.json").read() for t in tokens.values()))
    check("token file is mode 0600", (os.stat(f"{DATA}/git/tokens.json").st_mode & 0o777) == 0o600)

    ssh_keys = {}
    for n in ("cal", "web"):
        seed = run(FC, "git", "keygen", n, "--site", SITE_FILE).stdout.decode().strip()
        check(f"git keygen {n} prints --ssh-key=ed25519:<seed>", re.fullmatch(r"--ssh-key=ed25519:[A-Za-z0-9+/]{43}=", seed) is not None, seed)
        ssh_keys[n] = f"{tmp}/{n}.key"
        write_key(seed.split(":", 1)[1], f"{DATA}/git/ssh/{n}.pub", ssh_keys[n])
        os.chmod(ssh_keys[n], 0o600)
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{tmp}/stranger.key")
    ssh_keys["stranger"] = f"{tmp}/stranger.key"

    # A hook receiver on loopback: GET /hook answers as unipi does; POST /events records the webhook.
    import http.server, threading, hashlib, hmac
    received = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            received.append(("GET", self.path, dict(self.headers), b""))
            body = f"pulled {len(received)}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(("POST", self.path, dict(self.headers), data))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    hook_server = http.server.ThreadingHTTPServer(("127.0.0.1", HOOKP), Hook, bind_and_activate=False)
    hook_server.socket = HOOK_SOCK
    threading.Thread(target=hook_server.serve_forever, daemon=True).start()

    log = open(f"{tmp}/serve.log", "w")
    server = subprocess.Popen([FC, "--log-level", "info,git=debug", "serve", SITE_FILE], stdout=log, stderr=subprocess.STDOUT)
    bound = {}
    for _ in range(150):
        bound = dict(re.findall(r"\b(git://|SSH|HTTP|HTTPS) listening on 127\.0\.0\.1:(\d+)", open(f"{tmp}/serve.log").read()))
        if len(bound) == 4:
            break
        time.sleep(0.1)
    GITP, SSHP, HTTP, HTTPS = (int(bound.get(k, 0)) for k in ("git://", "SSH", "HTTP", "HTTPS"))
    check("server listens on git://, HTTP, HTTPS and SSH (ports 0 in the site file; the bound ports in its log)",
          all((GITP, SSHP, HTTP, HTTPS)) and wait_port(GITP) and wait_port(HTTP) and wait_port(HTTPS) and wait_port(SSHP), bound)
    # The commands run later (bootargs, token) read the site file: give it the ports the server holds.
    SITE["services"]["git"].update({"http": f"127.0.0.1:{HTTP}", "https": f"127.0.0.1:{HTTPS}", "git": f"127.0.0.1:{GITP}",
                                    "ssh": f"127.0.0.1:{SSHP}"})
    json.dump(SITE, open(SITE_FILE, "w"))
    fds_start = len(os.listdir(f"/proc/{server.pid}/fd"))
    cert = f"{DATA}/git/tls/cert.pem"
    check("self-signed certificate generated", os.path.exists(cert) and (os.stat(f"{DATA}/git/tls/key.pem").st_mode & 0o777) == 0o600)
    # (Debian's git uses libcurl-gnutls, which takes the CA file from the environment, not from -c.)
    SRC_ENV["GIT_SSL_CAINFO"] = cert
    TLS = []

    def url(transport, name, token=None):
        tok = tokens[name] if token is None else token
        if transport == "git":
            return f"git://127.0.0.1:{GITP}/{name}.git"
        port = HTTP if transport == "http" else HTTPS
        return f"{transport}://{name}:{tok}@127.0.0.1:{port}/{name}.git"

    # ---- the stock git client: every transport, v0 and v2 --------------------------------------
    clones = {}
    for transport in ("git", "http", "https"):
        for v in (0, 2):
            tag = f"{transport} v{v}"
            cfg = ["-c", f"protocol.version={v}"] + (TLS if transport == "https" else [])
            ls = git(*cfg, "ls-remote", url(transport, "web"), check_rc=False)
            out = ls.stdout.decode()
            check(f"{tag}: ls-remote lists HEAD, main, tags and the peeled tag",
                  ls.returncode == 0 and f"{SECOND}\tHEAD" in out and f"{SECOND}\trefs/heads/main" in out and
                  "refs/tags/v1^{}" in out and f"{first}\trefs/tags/v1^{{}}" in out and "refs/tags/light" in out, out + ls.stderr.decode())
            d = f"{tmp}/clone-{transport}-{v}"
            r = git(*cfg, "clone", "-q", url(transport, "web"), d, check_rc=False)
            ok = r.returncode == 0
            check(f"{tag}: clone", ok, r.stderr.decode())
            if ok:
                clones[(transport, v)] = d
                f_ok, f_err = fsck(d)
                check(f"{tag}: clone has the full history and passes git fsck",
                      f_ok and git("rev-parse", "HEAD", cwd=d).stdout.decode().strip() == SECOND and count_commits(d) == 2, f_err)
                check(f"{tag}: annotated tag arrives as a tag object",
                      git("cat-file", "-t", "v1", cwd=d, check_rc=False).stdout.decode().strip() == "tag")
            d1 = f"{tmp}/depth-{transport}-{v}"
            r = git(*cfg, "clone", "-q", "--depth", "1", url(transport, "web"), d1, check_rc=False)
            f_ok, f_err = fsck(d1) if r.returncode == 0 else (False, r.stderr.decode())
            check(f"{tag}: clone --depth 1 has one commit, marked shallow, fsck passes",
                  r.returncode == 0 and count_commits(d1) == 1 and open(f"{d1}/.git/shallow").read().strip() == SECOND and f_ok, f_err)
            if r.returncode == 0:
                clones[(transport, v, "shallow")] = d1
            d2 = f"{tmp}/since-{transport}-{v}"
            r = git(*cfg, "clone", "-q", "--shallow-since=1700000050", url(transport, "web"), d2, check_rc=False)
            f_ok, f_err = fsck(d2) if r.returncode == 0 else (False, r.stderr.decode())
            check(f"{tag}: clone --shallow-since keeps only newer commits, fsck passes",
                  r.returncode == 0 and count_commits(d2) == 1 and f_ok, f_err)
            de = f"{tmp}/empty-{transport}-{v}"
            r = git(*cfg, "clone", url(transport, "empty"), de, check_rc=False)
            check(f"{tag}: clone of an empty repository succeeds and says so",
                  r.returncode == 0 and "empty repository" in r.stderr.decode(), r.stderr.decode())

    # ---- new commits, then a history rewrite ----------------------------------------------------
    third = commit_in(src, 1700000200, {"htdocs/index.html": "<h1>v3</h1>\n", "htdocs/new.txt": "extra\n"}, "third")
    check("third commit id pinned", third == THIRD, third)
    push_local(src, "web")
    for key, d in list(clones.items()):
        transport, v = key[0], key[1]
        cfg = ["-c", f"protocol.version={v}"] + (TLS if transport == "https" else [])
        r = git(*cfg, "fetch", "-q", "origin", cwd=d, check_rc=False)
        f_ok, f_err = fsck(d) if r.returncode == 0 else (False, r.stderr.decode())
        got = git("rev-parse", "origin/main", cwd=d, check_rc=False).stdout.decode().strip()
        check(f"{transport} v{v}{' shallow' if len(key) == 3 else ''}: fetch after a new commit, fsck passes",
              r.returncode == 0 and got == THIRD and f_ok, f_err or got)
    # rewrite: a commit on top of `first` replaces main
    git("checkout", "-q", "-b", "rewrite", first, cwd=src)
    rewritten = commit_in(src, 1700000300, {"config.json": '{"hostname":"web","rewritten":true}\n'}, "rewritten")
    push_local(src, "web")
    for key, d in list(clones.items()):
        if len(key) == 3:
            continue
        transport, v = key
        cfg = ["-c", f"protocol.version={v}"] + (TLS if transport == "https" else [])
        r = git(*cfg, "fetch", "-q", "origin", cwd=d, check_rc=False)
        f_ok, f_err = fsck(d) if r.returncode == 0 else (False, r.stderr.decode())
        got = git("rev-parse", "origin/main", cwd=d, check_rc=False).stdout.decode().strip()
        check(f"{transport} v{v}: fetch after a history rewrite (forced update), fsck passes",
              r.returncode == 0 and got == rewritten and f_ok, f_err or got)

    # ---- hundreds of haves, sent gzip-compressed --------------------------------------------------
    d = clones[("http", 0)]
    for i in range(300):
        open(f"{d}/local.txt", "w").write(f"local {i}\n")
        git("add", "local.txt", cwd=d)
        git("commit", "-q", "-m", f"local {i}", cwd=d)
    newest = commit_in(src, 1700000400, {"config.json": '{"hostname":"web","v":4}\n'}, "fourth")
    push_local(src, "web")
    before = open(f"{tmp}/serve.log").read().count("(gzip)")
    r = git("-c", "protocol.version=0", "fetch", "-q", "origin", cwd=d, check_rc=False)
    f_ok, f_err = fsck(d) if r.returncode == 0 else (False, r.stderr.decode())
    _, after = wait_for(lambda: open(f"{tmp}/serve.log").read().count("(gzip)"), lambda n: n > before, seconds=5)
    check("fetch with 300+ haves (gzip request body) succeeds and fsck passes",
          r.returncode == 0 and after > before and git("rev-parse", "origin/main", cwd=d).stdout.decode().strip() == newest and f_ok,
          f"{f_err} gzip bodies {before}->{after}")

    # ---- a file over 1 MiB -----------------------------------------------------------------------
    db = f"{tmp}/big-clone"
    r = git("clone", "-q", url("http", "big"), db, check_rc=False)
    check("a file over 1 MiB arrives intact", r.returncode == 0 and open(f"{db}/blob.bin", "rb").read() == big_content and fsck(db)[0],
          r.stderr.decode())

    # ---- libgit2 as the client --------------------------------------------------------------------
    env = dict(os.environ, GIT_USER="web", GIT_TOKEN=tokens["web"])
    r = subprocess.run([LG2, f"http://127.0.0.1:{HTTP}/web.git", f"{tmp}/lg2"], capture_output=True, env=env)
    check("libgit2 clones over HTTP", r.returncode == 0 and r.stdout.decode().strip() == newest and fsck(f"{tmp}/lg2")[0],
          r.stderr.decode() + r.stdout.decode())

    # ---- SSH (OpenSSH client) ---------------------------------------------------------------------
    def ssh_env(key):
        return dict(SRC_ENV, GIT_SSH_COMMAND=f"ssh -i {ssh_keys[key]} -o IdentitiesOnly=yes -o BatchMode=yes "
                                            f"-o UserKnownHostsFile={tmp}/known_hosts -o StrictHostKeyChecking=accept-new -p {SSHP}")

    scan = subprocess.run(["ssh-keyscan", "-p", str(SSHP), "-t", "ed25519", "127.0.0.1"], capture_output=True, text=True).stdout
    open(f"{tmp}/scan", "w").write(scan)
    fp = subprocess.run(["ssh-keygen", "-l", "-f", f"{tmp}/scan"], capture_output=True, text=True).stdout.split()
    boot = run(FC, "bootargs", "cal", "--site", SITE_FILE).stdout.decode()
    check("bootargs prints the SSH form; --ssh-authenticator is the host key's SHA-256 as OpenSSH computes it",
          "--remote=git@127.0.0.1:cal.git" in boot and "--ssh-key=ed25519:SEED" in boot and len(fp) > 1 and
          f"--ssh-authenticator=ed25519:{fp[1].removeprefix('SHA256:')}" in boot, f"{boot} {fp}")
    for v in (0, 2):
        d = f"{tmp}/ssh-clone-{v}"
        r = git("-c", f"protocol.version={v}", "clone", "-q", f"ssh://git@127.0.0.1:{SSHP}/cal.git", d, env=ssh_env("cal"), check_rc=False)
        check(f"ssh v{v}: clone with the unikernel's key, fsck passes", r.returncode == 0 and fsck(d)[0], r.stderr.decode())
    # the scp-like form git-kv uses (git@host:NAME.git) sends git-upload-pack 'NAME.git'
    d = f"{tmp}/ssh-scp"
    r = git("clone", "-q", "--depth", "1", "git@127.0.0.1:cal.git", d, env=ssh_env("cal"), check_rc=False)
    check("ssh: git@host:NAME.git form, --depth 1", r.returncode == 0 and count_commits(d) == 1, r.stderr.decode())
    r = git("clone", "-q", f"ssh://git@127.0.0.1:{SSHP}/web.git", f"{tmp}/ssh-steal", env=ssh_env("cal"), check_rc=False)
    check("ssh: a unikernel key cannot reach another repository (not found)", r.returncode != 0 and "not found" in r.stderr.decode(),
          r.stderr.decode())
    r = git("clone", "-q", f"ssh://git@127.0.0.1:{SSHP}/cal.git", f"{tmp}/ssh-stranger", env=ssh_env("stranger"), check_rc=False)
    check("ssh: an unknown key is refused", r.returncode != 0 and "Permission denied" in r.stderr.decode(), r.stderr.decode())
    base_ssh = ["ssh", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={tmp}/known_hosts", "-p", str(SSHP)]
    # The refusals below are only meaningful with a key and a server that work: first the allowed command.
    r = subprocess.run(base_ssh + ["-i", ssh_keys["cal"], "git@127.0.0.1", "git-upload-pack 'cal.git'"], input=b"0000",
                       capture_output=True, timeout=20)
    check("ssh: the same key and server run git-upload-pack (refs advertised)", r.returncode == 0 and b"refs/heads/main" in r.stdout,
          (r.returncode, r.stderr[-300:]))

    def refused(args, log_line):
        """Runs ssh with the working key; returns (its result, whether the server logged this refusal once more)."""
        before = open(f"{tmp}/serve.log").read().count(log_line)
        res = subprocess.run(base_ssh + ["-i", ssh_keys["cal"], *args], capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
        ok, _ = wait_for(lambda: open(f"{tmp}/serve.log").read().count(log_line), lambda n: n > before, seconds=5)
        return res, ok

    r, logged = refused(["-T", "git@127.0.0.1"], "cal: refused a channel request (shell, pty, subsystem or similar)")
    check("ssh: no shell (refused by the server, as its log says)", r.returncode != 0 and logged, (r.returncode, r.stderr[-300:]))
    r, logged = refused(["git@127.0.0.1", "cat /etc/passwd"], 'cal: refused command "cat /etc/passwd"')
    check("ssh: no other command (refused by the server, as its log says)", r.returncode != 0 and b"root:" not in r.stdout and logged,
          (r.returncode, r.stderr[-300:]))
    r, logged = refused(["-W", f"127.0.0.1:{HTTP}", "git@127.0.0.1"], "refused a channel or forwarding request")
    check("ssh: no forwarding (refused by the server, as its log says)", r.returncode != 0 and logged and
          b"administratively prohibited" in r.stderr, (r.returncode, r.stderr[-300:]))
    # A refused large request (10,000 unknown wants) gets its ERR line every time (issue 16.9): the server
    # drains what the client still sends before it closes, so the connection is not reset under the line.
    wants = "".join(pkt(f"want {i:040x}\n") for i in range(1, 10001)) + "0000" + pkt("done\n")
    lost = []
    for attempt in range(12):
        r = subprocess.run(base_ssh + ["-i", ssh_keys["cal"], "git@127.0.0.1", "git-upload-pack 'cal.git'"], input=wants.encode(),
                           capture_output=True, timeout=60)
        if b"ERR upload-pack: not our ref " + f"{1:040x}".encode() not in r.stdout or r.returncode == 255:
            lost.append((attempt, r.returncode, r.stdout[-200:], r.stderr[-200:]))
    check("ssh: a refused request of 10,000 unknown wants gets its ERR line, 12 times out of 12", not lost, lost[:2])
    d = f"{tmp}/ssh-clone-0"
    c = commit_in(d, 1700000500, {"ssh.json": '{"via":"ssh"}'}, "via ssh") if os.path.isdir(d) else ""
    r = git("push", "-q", "origin", "main", cwd=d, env=ssh_env("cal"), check_rc=False)
    head = git("--git-dir", repo("cal"), "rev-parse", "main").stdout.decode().strip()
    check("ssh: push with a read-write key", r.returncode == 0 and head == c, r.stderr.decode())
    d = f"{tmp}/ssh-web"
    git("clone", "-q", f"ssh://git@127.0.0.1:{SSHP}/web.git", d, env=ssh_env("web"))
    commit_in(d, 1700000600, {"x.json": "{}"}, "x")
    r = git("push", "origin", "main", cwd=d, env=ssh_env("web"), check_rc=False)
    check("ssh: push with a read-only key refused", r.returncode != 0 and "read-only" in r.stderr.decode(), r.stderr.decode())

    # ---- git-kv request fixtures, byte for byte ---------------------------------------------------
    git("checkout", "-q", "main", cwd=src)
    git("reset", "-q", "--hard", SECOND, cwd=src)
    push_local(src, "kv")
    expected_clone = tree_objects(src, SECOND)
    auth = {"Authorization": basic("kv", tokens["kv"]), "Content-Type": "application/x-git-upload-pack-request",
            "git-protocol": "version=1"}
    for transport in ("http", "git"):
        body = open(f"{FIX}/gitkv_clone.{transport}.req", "rb").read()
        if transport == "http":
            st, hdrs, resp = http_request("POST", "/kv.git/git-upload-pack", auth, body)
        else:
            _, resp = git_daemon_exchange("kv", body)
            st = 200
        lines, pack, progress = parse_pkts(resp)
        objs, err = pack_objects(pack)
        check(f"git-kv first clone over {transport}: 'shallow {SECOND[:8]}', a pack of exactly the tip's objects",
              st == 200 and f"shallow {SECOND}" in lines and objs == expected_clone, f"{st} {lines} {err} {objs}")
    git("reset", "-q", "--hard", THIRD, cwd=src)
    push_local(src, "kv")
    expected_pull = tree_objects(src, THIRD) - tree_objects(src, SECOND)
    for transport in ("http", "git"):
        body = open(f"{FIX}/gitkv_pull.{transport}.req", "rb").read()
        if transport == "http":
            st, hdrs, resp = http_request("POST", "/kv.git/git-upload-pack", auth, body)
        else:
            _, resp = git_daemon_exchange("kv", body)
            st = 200
        lines, pack, progress = parse_pkts(resp)
        objs, err = pack_objects(pack)
        check(f"git-kv pull (shallow + deepen-since + have) over {transport}: ACK ready, only the new objects",
              st == 200 and any(l.startswith(f"ACK {SECOND}") for l in lines) and not any(l.startswith(("shallow", "unshallow")) for l in lines)
              and objs == expected_pull, f"{st} {lines} {err} {objs} vs {expected_pull}")

    # ---- access rules ----------------------------------------------------------------------------
    refs = "/web.git/info/refs?service=git-upload-pack"
    st, h, b = http_request("GET", refs)
    check("no credentials: 401 with the documented Basic challenge", st == 401 and
          h.get("WWW-Authenticate") == 'Basic realm="fleetconf git", charset="UTF-8"', (st, h.get("WWW-Authenticate")))
    st, _, _ = http_request("GET", refs, {"Authorization": basic("web", "0" * 48)})
    check("wrong token: 401", st == 401, st)
    st, _, _ = http_request("GET", "/nosuch.git/info/refs?service=git-upload-pack")
    check("unknown repository without credentials: 401 (nothing revealed)", st == 401, st)
    st_other, _, b_other = http_request("GET", "/cal.git/info/refs?service=git-upload-pack", {"Authorization": basic("web", tokens["web"])})
    st_none, _, b_none = http_request("GET", "/nosuch.git/info/refs?service=git-upload-pack", {"Authorization": basic("web", tokens["web"])})
    check("another unikernel's repository: 404, the same answer as a missing one", st_other == 404 and st_none == 404 and b_other == b_none,
          f"{st_other} {st_none}")
    r = git("clone", "-q", f"http://web:{tokens['web']}@127.0.0.1:{HTTP}/cal.git", f"{tmp}/stolen", check_rc=False)
    check("stock git with A's token on B's repository fails (not found)", r.returncode != 0 and "not found" in r.stderr.decode().lower(),
          r.stderr.decode())
    for bad in ("/../web.git/info/refs?service=git-upload-pack", "/web.git/../cal.git/info/refs?service=git-upload-pack",
                "/%2e%2e/web.git/info/refs?service=git-upload-pack", "/web/.git/info/refs?service=git-upload-pack",
                "//etc/passwd", "/web.git/objects/info/packs"):
        st, _, _ = http_request("GET", bad, {"Authorization": basic("web", tokens["web"])})
        check(f"traversal or non-smart path {bad!r} with a valid credential: 404", st == 404, st)
        # Credentials first, whatever the path names (issue 16.8): without them, 401 and the challenge.
        st, h, _ = http_request("GET", bad)
        check(f"traversal or non-smart path {bad!r} without credentials: 401", st == 401 and
              h.get("WWW-Authenticate") == 'Basic realm="fleetconf git", charset="UTF-8"', (st, h.get("WWW-Authenticate")))
    st, _, _ = http_request("GET", "/web.git/info/refs", {"Authorization": basic("web", tokens["web"])})
    check("dumb HTTP (no service parameter): 403 (docs/gitconf.md)", st == 403, st)

    # ---- credentials on a running server (issue 22.12): no restart, no signal ------------------------
    old_token = tokens["web"]
    st, _, _ = http_request("GET", refs, {"Authorization": basic("web", old_token)})
    check("rotation: the current token works before", st == 200, st)
    for rotation in range(3):  # back to back: several rotations within one timestamp tick are still seen
        new_token = run(FC, "git", "token", "web", "--overlap", "0", "--site", SITE_FILE).stdout.decode().strip()
        st_old, h_old, _ = http_request("GET", refs, {"Authorization": basic("web", old_token)})
        st_new, _, _ = http_request("GET", refs, {"Authorization": basic("web", new_token)})
        check(f"rotation {rotation + 1} (--overlap 0): the old token gets 401 at the next request, the new one 200",
              st_old == 401 and h_old.get("WWW-Authenticate") == 'Basic realm="fleetconf git", charset="UTF-8"' and st_new == 200,
              (st_old, st_new))
        old_token = new_token
    r = run(FC, "git", "token", "web", "--revoke", "--site", SITE_FILE)
    st, _, _ = http_request("GET", refs, {"Authorization": basic("web", old_token)})
    check("revocation: the revoked token gets 401 at once", r.returncode == 0 and st == 401, (r.returncode, st))
    r = git("ls-remote", f"http://web:{old_token}@127.0.0.1:{HTTP}/web.git", check_rc=False)
    check("revocation: stock git is refused with the server's 401", r.returncode != 0 and
          "authentication failed" in r.stderr.decode().lower(), r.stderr.decode()[-300:])
    st, _, _ = http_request("GET", "/cal.git/info/refs?service=git-upload-pack", {"Authorization": basic("cal", tokens["cal"])})
    check("revocation: another unikernel's token still works", st == 200, st)
    tokens["web"] = run(FC, "git", "token", "web", "--site", SITE_FILE).stdout.decode().strip()
    st, _, _ = http_request("GET", refs, {"Authorization": basic("web", tokens["web"])})
    check("a token issued after revocation works at once", st == 200, st)
    st, _, b = http_request("GET", "/web.git/info/refs?service=git-receive-pack", {"Authorization": basic("web", tokens["web"])})
    check("push advertisement with a read-only credential: 403", st == 403, st)
    st, h, b = http_request("GET", "/cal.git/info/refs?service=git-receive-pack", {"Authorization": basic("cal", tokens["cal"])})
    check("push advertisement with a read-write credential", st == 200 and b"report-status" in b and b"# service=git-receive-pack" in b, b[:200])

    # ---- pushes over HTTP(S) --------------------------------------------------------------------------
    def push_clone(name, transport="http", d=None):
        d = d or tempfile.mkdtemp(dir=tmp)
        git("clone", "-q", url(transport, name), d)
        return d

    def commit_file(d, path, content, msg):
        os.makedirs(os.path.dirname(f"{d}/{path}") or d, exist_ok=True)
        open(f"{d}/{path}", "w" if isinstance(content, str) else "wb").write(content)
        git("add", "-A", cwd=d)
        git("commit", "-q", "-m", msg, cwd=d)
        return git("rev-parse", "HEAD", cwd=d).stdout.decode().strip()

    def server_head(name, ref="refs/heads/main"):
        r = git("--git-dir", repo(name), "rev-parse", "--verify", "-q", ref, check_rc=False)
        return r.stdout.decode().strip()

    def audit(name):
        f = f"{DATA}/git/audit/{name}.jsonl"
        return [json.loads(l) for l in open(f)] if os.path.exists(f) else []

    for transport in ("http", "https"):
        d = push_clone("cal", transport)
        c = commit_file(d, "calendar/event.json", json.dumps({"transport": transport}), f"event over {transport}")
        r = git("push", "-q", "origin", "main", cwd=d, check_rc=False)
        check(f"push over {transport}: accepted and the branch moved", r.returncode == 0 and server_head("cal") == c, r.stderr.decode())
        last = audit("cal")[-1] if audit("cal") else {}
        check(f"push over {transport}: audited with credential, refs and paths", last.get("result") == "accepted" and
              last.get("credential") == "cal" and last.get("transport") == transport and "calendar/event.json" in last.get("paths", []), last)
    r = git("--git-dir", repo("cal"), "fsck", "--no-dangling", check_rc=False)
    check("server repository passes git fsck after pushes", r.returncode == 0, r.stderr.decode())
    for _ in range(50):
        if sum(1 for m in received if m[0] == "POST") >= 2 and sum(1 for m in received if m[0] == "GET") >= 2:
            break
        time.sleep(0.1)
    gets = [m for m in received if m[0] == "GET" and m[1] == "/hook"]
    posts = [m for m in received if m[0] == "POST" and m[1] == "/events"]
    check("each accepted push requests the unikernel's hook", len(gets) >= 2, received)
    key = open(f"{DATA}/git/webhook.key").read().strip().encode()
    good = posts and all(m[2].get("X-Fleetconf-Signature") == "sha256=" + hmac.new(key, m[3], hashlib.sha256).hexdigest() for m in posts)
    event = json.loads(posts[-1][3]) if posts else {}
    check("the webhook is signed with HMAC-SHA256 and names repository, ref, old and new ids", len(posts) >= 2 and good and
          event.get("repository") == "cal" and event.get("ref") == "refs/heads/main" and event.get("new") == server_head("cal"), posts[-1:])
    st = json.loads(run(FC, "git", "status", "cal", "--json", "--site", SITE_FILE).stdout)
    check("git status shows the hook's answer and the webhook's delivery", st["notifications"]["hook"]["state"] == "delivered" and
          st["notifications"]["hook"]["detail"].startswith("pulled") and st["notifications"]["webhook"]["state"] == "delivered" and
          st["last_push"]["result"] == "accepted", st)
    d = push_clone("cal")
    r = git("push", "-q", "origin", "main:refs/heads/feature", cwd=d, check_rc=False)
    check("push of a new branch", r.returncode == 0 and server_head("cal", "refs/heads/feature") == server_head("cal"), r.stderr.decode())
    r = git("push", "-q", "origin", ":refs/heads/feature", cwd=d, check_rc=False)
    check("delete of another branch", r.returncode == 0 and server_head("cal", "refs/heads/feature") == "", r.stderr.decode())
    r = git("push", "origin", ":main", cwd=d, check_rc=False)
    check("delete of the configuration branch refused, reason shown to the client",
          r.returncode != 0 and "deleting the configuration branch is not allowed" in r.stderr.decode() and server_head("cal") != "",
          r.stderr.decode())
    before = server_head("cal")
    git("reset", "-q", "--hard", "HEAD~1", cwd=d)
    commit_file(d, "rewrite.txt", "x\n", "rewrite")
    r = git("push", "--force", "origin", "main", cwd=d, check_rc=False)
    check("non-fast-forward push refused (even forced)", r.returncode != 0 and "non-fast-forward" in r.stderr.decode() and
          server_head("cal") == before, r.stderr.decode())
    d = push_clone("cal")
    commit_file(d, "broken.json", "{not json", "broken")
    r = git("push", "origin", "main", cwd=d, check_rc=False)
    check("push with a file that is not JSON refused, reason shown", r.returncode != 0 and "broken.json is not valid JSON" in r.stderr.decode()
          and server_head("cal") == before, r.stderr.decode())
    check("the refused push is audited with its reason", audit("cal")[-1]["result"] == "rejected" and
          "not valid JSON" in audit("cal")[-1]["refs"][0]["reason"], audit("cal")[-1])
    d = push_clone("cal")
    commit_file(d, "notes.txt", "FORBIDDEN\n", "forbidden")
    r = git("push", "origin", "main", cwd=d, check_rc=False)
    check("push refused by the repository's validator command, its message shown", r.returncode != 0 and
          "validator: FORBIDDEN found in cal" in r.stderr.decode() and server_head("cal") == before, r.stderr.decode())
    # Operator edits take the push path (issue 23): the validator, the audit log, the hook and the webhook.
    r = run(FC, "git", "put", "cal", "notes.txt", "--site", SITE_FILE, input=b"FORBIDDEN\n", check_rc=False)
    check("git put of what the validator refuses: exit 1, its message shown, nothing moved",
          r.returncode == 1 and "validator: FORBIDDEN found in cal" in r.stderr.decode() and server_head("cal") == before, r.stderr.decode())
    check("and audited as a refused operator edit", audit("cal")[-1]["transport"] == "cli" and audit("cal")[-1]["result"] == "rejected" and
          audit("cal")[-1]["credential"].startswith("operator "), audit("cal")[-1])
    hooks_before = sum(1 for m in received if m[0] == "GET")
    r = run(FC, "git", "put", "cal", "ok.txt", "--site", SITE_FILE, input=b"fine\n", check_rc=False)
    new = r.stdout.decode().strip()
    check("git put of an acceptable file: exit 0, prints the new head", r.returncode == 0 and new == server_head("cal") and new != before,
          (r.returncode, r.stdout, r.stderr))
    check("audited as an accepted operator edit", audit("cal")[-1]["result"] == "accepted" and audit("cal")[-1]["refs"][0]["new"] == new,
          audit("cal")[-1])
    ok, _ = wait_for(lambda: sum(1 for m in received if m[0] == "GET"), lambda n: n > hooks_before, seconds=10)
    check("and the unikernel's hook is requested", ok, received[-2:])
    r = run(FC, "git", "notify", "cal", "--site", SITE_FILE, check_rc=False)
    check("git notify redelivers hook and webhook (exit 0, both delivered)", r.returncode == 0 and "hook http://127.0.0.1:" in r.stdout.decode()
          and r.stdout.decode().count("delivered") == 2, (r.stdout, r.stderr))
    before = server_head("cal")
    if os.geteuid() == 0:
        other = tempfile.mkdtemp(dir=tmp)
        os.chown(other, 65534, 65534)
        r = run(FC, "git", "put", "cal", "x.txt", "--site", SITE_FILE, "--data-dir", other, input=b"x\n", check_rc=False)
        check("a data directory owned by another user: refused with the sudo -u line", r.returncode == 1 and "sudo -u nobody fleetconf git put" in
              r.stderr.decode() and os.listdir(other) == [], r.stderr.decode())
    # Links (issue 16.7): a symlink to /etc/passwd and a gitlink are refused, the reason shown, nothing moved.
    for transport in ("http", "ssh"):
        d = push_clone("cal") if transport == "http" else None
        if d is None:
            d = tempfile.mkdtemp(dir=tmp)
            git("clone", "-q", f"ssh://git@127.0.0.1:{SSHP}/cal.git", d, env=ssh_env("cal"))
        os.symlink("/etc/passwd", f"{d}/README")
        git("add", "-A", cwd=d)
        git("commit", "-q", "-m", "link", cwd=d)
        env = ssh_env("cal") if transport == "ssh" else None
        r = git("push", "origin", "main", cwd=d, env=env, check_rc=False)
        check(f"push of a symlink over {transport} refused, reason shown", r.returncode != 0 and
              "README is a symbolic link, which is not accepted (allow_symlinks is off)" in r.stderr.decode() and
              "root:" not in r.stderr.decode() and server_head("cal") == before, r.stderr.decode())
        git("reset", "-q", "--hard", "HEAD~1", cwd=d)
        git("update-index", "--add", "--cacheinfo", f"160000,{before},vendor", cwd=d)
        git("commit", "-q", "-m", "gitlink", cwd=d)
        r = git("push", "origin", "main", cwd=d, env=env, check_rc=False)
        check(f"push of a gitlink over {transport} refused, reason shown", r.returncode != 0 and
              "vendor is a gitlink (submodule), which is not accepted" in r.stderr.decode() and server_head("cal") == before,
              r.stderr.decode())
    d = push_clone("cal")
    commit_file(d, "huge.bin", os.urandom(1200 * 1024), "huge")
    r = git("push", "origin", "main", cwd=d, check_rc=False)
    check("push of a file over max_object_mb refused", r.returncode != 0 and "over the limit" in r.stderr.decode(), r.stderr.decode())
    d = f"{tmp}/drop-clone"
    git("init", "-q", "-b", "main", d)
    commit_file(d, "config.json", "{}", "first")
    git("remote", "add", "origin", url("http", "drop"), cwd=d)
    r = git("push", "-q", "origin", "main", cwd=d, check_rc=False)
    check("push into an empty repository", r.returncode == 0 and server_head("drop") == git("rev-parse", "HEAD", cwd=d).stdout.decode().strip(),
          r.stderr.decode())
    for _ in range(100):  # the dead webhook: attempts at 0 s and 1 s, then waiting 2 s
        st = json.loads(run(FC, "git", "status", "drop", "--json", "--site", SITE_FILE).stdout)
        wh = st.get("notifications", {}).get("webhook", {})
        if wh.get("attempts", 0) >= 2:
            break
        time.sleep(0.1)
    check("a webhook that cannot be delivered is retried with backoff and shown as retrying",
          wh.get("state") == "retrying" and wh.get("attempts", 0) >= 2 and "connect" in wh.get("detail", ""), st)
    r = git("clone", "-q", url("http", "drop"), f"{tmp}/drop-again", check_rc=False)
    check("the pushed repository clones", r.returncode == 0 and os.path.exists(f"{tmp}/drop-again/config.json"), r.stderr.decode())
    d = push_clone("web")
    commit_file(d, "x.json", "{}", "x")
    r = git("push", "origin", "main", cwd=d, check_rc=False)
    check("push with a read-only credential refused", r.returncode != 0 and "403" in r.stderr.decode(), r.stderr.decode())
    # two writers at once: one wins, the other is refused cleanly; nothing lost, nothing corrupt
    a_dir, b_dir = push_clone("cal"), push_clone("cal")
    ca = commit_file(a_dir, "a.json", '{"a":1}', "writer a")
    cb = commit_file(b_dir, "b.json", '{"b":1}', "writer b")
    pa = subprocess.Popen(["git", "push", "origin", "main"], cwd=a_dir, env=SRC_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pb = subprocess.Popen(["git", "push", "origin", "main"], cwd=b_dir, env=SRC_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ra, rb = pa.wait(30), pb.wait(30)
    head = server_head("cal")
    fsck_ok = git("--git-dir", repo("cal"), "fsck", "--no-dangling", check_rc=False).returncode == 0
    check("two concurrent pushes: exactly one wins, the branch holds its commit, fsck passes",
          sorted([ra, rb]) == [0, 1] and head == (ca if ra == 0 else cb) and fsck_ok, f"{ra} {rb} {head} {ca} {cb}")
    _, resp = git_daemon_exchange("cal", b"0000", read_advert=False)
    check("git:// to a repository without git_protocol: ERR 'not exported'", b"ERR access denied or repository not exported" in resp, resp[:100])
    s = socket.create_connection(("127.0.0.1", GITP), 5)
    line = b"git-receive-pack /web.git\0host=127.0.0.1\0"
    s.sendall(b"%04x" % (len(line) + 4) + line)
    resp = s.recv(4096)
    s.close()
    check("git:// push: refused with ERR", resp[4:7] == b"ERR", resp)
    advert, resp = git_daemon_exchange("web", b"ffff" + b"x" * 100)
    check("over-long pkt-line: ERR and the connection is closed", b"ERR" in resp and b"longer than 65520" in resp, resp[:120])
    # a client that stops mid-request (read_timeout is 2 s in this site)
    s = socket.create_connection(("127.0.0.1", GITP), 5)
    line = b"git-upload-pack /web.git\0host=127.0.0.1\0"
    s.sendall(b"%04x" % (len(line) + 4) + line + b"0032want ")
    # (functional, not a timing assertion: the server must close the connection itself; our own
    # 30 s socket timeout only guards against a hang)
    s.settimeout(30)
    closed_by_server = False
    try:
        while s.recv(65536):
            pass
        closed_by_server = True
    except ConnectionResetError:
        closed_by_server = True
    except socket.timeout:
        pass
    check("git:// client that stalls mid-request is disconnected by the server", closed_by_server)
    s.close()
    s = socket.create_connection(("127.0.0.1", HTTP), 5)
    s.sendall(b"POST /web.git/git-upload-pack HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0032")
    s.settimeout(30)
    closed_by_server = False
    try:
        while s.recv(65536):
            pass
        closed_by_server = True
    except ConnectionResetError:
        closed_by_server = True
    except socket.timeout:
        pass
    check("HTTP client that stalls mid-body is disconnected by the server", closed_by_server)
    s.close()
    s = socket.create_connection(("127.0.0.1", HTTP), 5)
    s.sendall(f"POST /web.git/git-upload-pack HTTP/1.1\r\nHost: x\r\nAuthorization: {basic('web', tokens['web'])}\r\n"
              f"Content-Length: {9 << 20}\r\n\r\n".encode())
    s.settimeout(5)
    resp = s.recv(4096)
    s.close()
    check("request body over the limit: 413 before the body is read", resp.startswith(b"HTTP/1.1 413"), resp[:40])
    st, _, b = http_request("POST", "/web.git/git-upload-pack", dict(auth, Authorization=basic("web", tokens["web"]), **{"Content-Encoding": "gzip"}), b"not gzip")
    check("bad gzip body: 400", st == 400, st)
    # chunked request body and two requests on one keep-alive connection
    body = open(f"{FIX}/gitkv_clone.http.req", "rb").read()
    chunked = b"".join(b"%x\r\n" % len(body[i:i + 40]) + body[i:i + 40] + b"\r\n" for i in range(0, len(body), 40)) + b"0\r\n\r\n"
    s = socket.create_connection(("127.0.0.1", HTTP), 5)
    head = f"POST /kv.git/git-upload-pack HTTP/1.1\r\nHost: x\r\nAuthorization: {basic('kv', tokens['kv'])}\r\n"
    s.sendall((head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunked)
    s.sendall((head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    s.settimeout(5)
    data = b""
    try:
        while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b"0000"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    s.close()
    check("chunked request body, then a second request on the same keep-alive connection", data.count(b"HTTP/1.1 200 OK") == 2 and
          data.count(b"PACK") == 2, data[:200])
    # ---- every documented HTTP limit (docs/gitconf.md "Limits"), exactly at it and one past it ---------
    def raw_exchange(data, read_until_close=False, timeout=10):
        c = socket.create_connection(("127.0.0.1", HTTP), 5)
        c.sendall(data)
        c.settimeout(timeout)
        out = b""
        try:
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                out += chunk
                if not read_until_close and b"\r\n\r\n" in out:
                    head, _, rest = out.partition(b"\r\n\r\n")
                    m = re.search(rb"(?i)content-length: (\d+)", head)
                    if m and len(rest) >= int(m.group(1)):
                        break
        except socket.timeout:
            pass
        c.close()
        return out

    def status_and_body(resp):
        head, _, body = resp.partition(b"\r\n\r\n")
        return (int(head.split()[1]) if head.startswith(b"HTTP/1.1 ") else 0), body

    web_auth = f"Authorization: {basic('web', tokens['web'])}\r\n"
    base_url = "/web.git/info/refs?service=git-upload-pack"
    for total, want in ((4096, 200), (4097, 413)):  # URL 4 KiB (the request target, query included)
        target = base_url + "&pad=" + "x" * (total - len(base_url) - 5)
        assert len(target) == total
        st, body = status_and_body(raw_exchange(f"GET {target} HTTP/1.1\r\nHost: x\r\n{web_auth}\r\n".encode()))
        check(f"URL of {total} bytes: {want}", st == want and (want == 200 or body == b"request too large\n"), (st, body[:60]))
    fixed = len("Host") + len("x") + len("Authorization") + len(basic("web", tokens["web"]))
    for total, want in ((32768, 200), (32769, 413)):  # headers 32 KiB (names and values together)
        pad = total - fixed - len("X-Pad")
        st, body = status_and_body(raw_exchange(f"GET {base_url} HTTP/1.1\r\nHost: x\r\n{web_auth}X-Pad: {'p' * pad}\r\n\r\n".encode()))
        check(f"headers of {total} bytes: {want}", st == want and (want == 200 or body == b"request too large\n"), (st, body[:60]))
    up = f"POST /web.git/git-upload-pack HTTP/1.1\r\nHost: x\r\n{web_auth}Content-Type: application/x-git-upload-pack-request\r\n"
    # Body 8 MiB on the wire: exactly 8 MiB is read and handed to upload-pack (which refuses its content, not
    # its size); one byte more is answered 413 before any of it is sent.
    st, body = status_and_body(raw_exchange((up + f"Content-Length: {8 << 20}\r\n\r\n").encode() + b"z" * (8 << 20)))
    check("a body of exactly 8 MiB is read (the answer is about its content, not its size)", st != 413 and b"too large" not in body, (st, body[:80]))
    st, body = status_and_body(raw_exchange((up + f"Content-Length: {(8 << 20) + 1}\r\n\r\n").encode()))
    check("a body of 8 MiB + 1 announced: 413 before it is sent", st == 413 and body == b"request too large\n", (st, body[:60]))
    # A push: max_pack_mb (16 MiB here) plus 1 MiB for the commands on the wire; past it, 413 before the body.
    push = f"POST /cal.git/git-receive-pack HTTP/1.1\r\nHost: x\r\nAuthorization: {basic('cal', tokens['cal'])}\r\n"
    limit = (16 << 20) + (1 << 20)
    st, body = status_and_body(raw_exchange((push + f"Content-Length: {limit + 1}\r\n\r\n").encode()))
    check("a push body over max_pack_mb + 1 MiB announced: 413 before it is sent", st == 413 and body == b"request too large\n", (st, body[:60]))
    st, body = status_and_body(raw_exchange((push + f"Content-Length: {limit}\r\n\r\n").encode() + b"z" * limit))
    check("a push body of exactly max_pack_mb + 1 MiB is read (the answer is about its content)", st != 413 and b"too large" not in body,
          (st, body[:80]))
    # 32 MiB after gzip: a gzip bomb (32 MiB + 1 of zeros in 32 KiB) is 400 with its reason; exactly 32 MiB inflates.
    import gzip
    for size, bomb in ((32 << 20, False), ((32 << 20) + 1, True)):
        z = gzip.compress(b"\0" * size)
        st, body = status_and_body(raw_exchange((up + f"Content-Encoding: gzip\r\nContent-Length: {len(z)}\r\n\r\n").encode() + z))
        if bomb:
            check("gzip body of 32 MiB + 1 inflated: 400, said so", st == 400 and body == b"gzip body over 33554432 bytes inflated\n", (st, body[:80]))
        else:
            check("gzip body of exactly 32 MiB inflated: inflated (the answer is about its content)",
                  b"inflated" not in body and b"bad gzip" not in body, (st, body[:80]))
    st, body = status_and_body(raw_exchange((up + "Content-Encoding: gzip\r\nContent-Length: 8\r\n\r\nnot gzip").encode()))
    check("a body that is not gzip: 400, said so", st == 400 and body == b"bad gzip body\n", (st, body[:60]))
    # Keep-alive: an idle connection is closed after twice read_timeout (2 s here), not before read_timeout.
    c = socket.create_connection(("127.0.0.1", HTTP), 5)
    c.sendall(f"GET {base_url} HTTP/1.1\r\nHost: x\r\n{web_auth}\r\n".encode())
    c.settimeout(15)
    got, t_answer = b"", None
    try:
        while True:
            chunk = c.recv(65536)
            if t_answer is None:
                t_answer = time.monotonic()
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        pass
    idle = time.monotonic() - (t_answer or time.monotonic())
    c.close()
    check(f"an idle keep-alive connection is closed by the server after 2 x read_timeout (closed after {idle:.1f} s)",
          got.startswith(b"HTTP/1.1 200") and 2 * 2 - 0.5 <= idle < 15, (got[:20], idle))
    # Webhook retries: 6 attempts (after 1, 2, 4, 8 and 16 s), then "failed".
    final, wh = wait_for(lambda: json.loads(run(FC, "git", "status", "drop", "--json", "--site", SITE_FILE).stdout)
                         .get("notifications", {}).get("webhook", {}), lambda w: w.get("state") == "failed", seconds=60)
    check("an undeliverable webhook ends 'failed' after its 6th attempt", final and wh.get("attempts") == 6, wh)
    check("each attempt is logged, the last one as 6/6", "notify drop webhook http://127.0.0.1:" in open(f"{tmp}/serve.log").read() and
          "attempt 6/6 failed" in open(f"{tmp}/serve.log").read())
    r = run(FC, "git", "notify", "drop", "--attempts", "1", "--site", SITE_FILE, check_rc=False)
    check("then git notify of an undeliverable webhook: exit 1, FAILED", r.returncode == 1 and "FAILED" in r.stdout.decode(), (r.stdout, r.stderr))

    # Credentials with a life cycle (issue 23): a rotation keeps the previous token for its overlap; --overlap 0
    # ends it at once; a unikernel removed from the site loses its token on reload, and it stays invalid when
    # the name comes back.
    def ls_remote(name, token):
        return git("ls-remote", url("http", name, token), check_rc=False).returncode == 0
    t1 = tokens["kv"]
    r = run(FC, "git", "token", "kv", "--site", SITE_FILE, check_rc=False)
    t2 = r.stdout.decode().strip()
    check("rotation: both the new token and the previous one (default overlap 3600 s) work",
          r.returncode == 0 and "stays valid 3600 s" in r.stderr.decode() and ls_remote("kv", t2) and ls_remote("kv", t1), r.stderr.decode())
    t3 = run(FC, "git", "token", "kv", "--overlap", "0", "--site", SITE_FILE).stdout.decode().strip()
    check("rotation with --overlap 0: the previous token is refused at once", ls_remote("kv", t3) and not ls_remote("kv", t2))
    check("both rotations are audited", [a.get("event") for a in audit("kv")][-2:] == ["token rotated", "token rotated"], audit("kv")[-2:])
    tokens["kv"] = t3
    site_now = json.load(open(SITE_FILE))
    empty = next(u for u in site_now["unikernels"] if u["name"] == "empty")
    site_now["unikernels"].remove(empty)
    json.dump(site_now, open(SITE_FILE, "w"))
    r = run(FC, "reload", SITE_FILE, check_rc=False)
    gone = "empty" not in json.load(open(f"{DATA}/git/tokens.json"))["tokens"]
    check("a unikernel removed on reload: its token is revoked and audited", r.returncode == 0 and gone and
          audit("empty")[-1].get("event") == "token revoked", (r.stderr.decode(), audit("empty")[-1:]))
    site_now["unikernels"].append(empty)
    json.dump(site_now, open(SITE_FILE, "w"))
    r = run(FC, "reload", SITE_FILE, check_rc=False)
    check("the name back in the site: its old token stays refused", r.returncode == 0 and not ls_remote("empty", tokens["empty"]), r.stderr.decode())

    d = f"{tmp}/after-attacks"
    r = git("clone", "-q", url("http", "web"), d, check_rc=False)
    check("server still serves after every refused request", r.returncode == 0 and server.poll() is None, r.stderr.decode())

    # Connections close after their clients: wait (bounded) for the count to settle instead of sleeping.
    settled, fds = wait_for(lambda: len(os.listdir(f"/proc/{server.pid}/fd")), lambda n: n <= fds_start + 2, seconds=20)
    check(f"no descriptor leaked by refused, stalled or finished connections ({fds} open, {fds_start} at start)", settled,
          os.listdir(f"/proc/{server.pid}/fd"))
    logtext = open(f"{tmp}/serve.log").read()
    check("fetches are logged with peer, credential, repository and wanted tips",
          re.search(r"fetch http 127\.0\.0\.1:\d+ credential web repo web v\d wants [0-9a-f]{12}", logtext) is not None)
    check("the pack cache served repeated fetches", "(cached)" in logtext)
    boot = run(FC, "bootargs", "kv", "--site", SITE_FILE, env=dict(os.environ, FLEETCONF_GIT_TOKEN=tokens["kv"])).stdout.decode()
    check("bootargs (no SSH key) prints --remote with the token and --tls-authenticator for HTTPS",
          f"--remote=https://kv:{tokens['kv']}@127.0.0.1:{HTTPS}/kv.git" in boot and re.search(r"--tls-authenticator=key-fp:SHA256:[A-Za-z0-9+/=]{44}", boot),
          boot)
finally:
    try:
        hook_server.shutdown()
    except NameError:
        pass
    if server and server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            rc = server.wait(10)
            check("server stops cleanly on SIGTERM", rc == 0, rc)
        except subprocess.TimeoutExpired:
            server.kill()
            check("server stops cleanly on SIGTERM", False, "timeout")
    if failures:
        print(open(f"{tmp}/serve.log").read()[-4000:] if os.path.exists(f"{tmp}/serve.log") else "")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(VALIDATOR_DIR, ignore_errors=True)

print(f"{len(passed)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
