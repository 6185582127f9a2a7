#!/usr/bin/env python3
"""Differential test of the upload-pack core against git's own: the same stateless requests go to
`git upload-pack --stateless-rpc` and to fleetconf's smart HTTP endpoint (loopback), on a repository
with merges, tags and uneven commit dates. For every request the shallow/unshallow lines and the
ACK/NAK lines must be the same and the packs must hold the same objects.

usage: differential_test.py FLEETCONF
"""
import argparse, base64, json, os, random, re, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

_ap = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n\n")[0])
_ap.add_argument("fleetconf", help="the fleetconf binary to test")
FC = os.path.abspath(_ap.parse_args().fleetconf)
tmp = tempfile.mkdtemp(prefix="fleetconf-gitdiff-")
ENV = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t",
           HOME=tmp, GIT_CONFIG_NOSYSTEM="1")
failures, passed = [], []
server = None


def sh(*a, cwd=None, env=None, input=None):
    r = subprocess.run(list(a), capture_output=True, cwd=cwd, env=env or ENV, input=input)
    if r.returncode != 0:
        raise RuntimeError(f"{a}: {r.stderr.decode()}")
    return r.stdout


def check(desc, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + desc + ("" if ok else f"  [{str(detail)[:800]}]"))
    if ok:
        passed.append(desc)
    else:
        failures.append(desc)


def pkt(s):
    b = s.encode() if isinstance(s, str) else s
    return b"%04x" % (len(b) + 4) + b


def parse(data):
    lines, pack, i = [], b"", 0
    while i + 4 <= len(data):
        n = int(data[i:i + 4], 16)
        if n == 0:
            i += 4
            continue
        p = data[i + 4:i + n]
        i += n
        if p[:1] == b"\x01":
            pack += p[1:]
        elif p[:1] in (b"\x02", b"\x03"):
            continue
        else:
            lines.append(p.decode().rstrip("\n"))
    return lines, pack


def objects(pack):
    if not pack:
        return set()
    d = tempfile.mkdtemp(dir=tmp)
    open(f"{d}/p.pack", "wb").write(pack)
    sh("git", "init", "-q", d)
    sh("git", "index-pack", "-o", f"{d}/p.idx", f"{d}/p.pack", cwd=d)
    out = sh("git", "verify-pack", "-v", f"{d}/p.idx", cwd=d).decode()
    return {l.split()[0] for l in out.splitlines() if re.match(r"^[0-9a-f]{40} ", l)}


# ---- a branchy history: two lines of work merged twice, tags, dates out of order -------------
work = f"{tmp}/work"
sh("git", "init", "-q", "-b", "main", work)
rng = random.Random(7)
t = 1700000000
commits = []


def commit(msg, files):
    global t
    t += rng.choice([60, 120, 600, -30])  # a clock that sometimes goes backwards
    for p, c in files.items():
        os.makedirs(os.path.dirname(f"{work}/{p}") or work, exist_ok=True)
        open(f"{work}/{p}", "w").write(c)
    e = dict(ENV, GIT_AUTHOR_DATE=f"{t} +0000", GIT_COMMITTER_DATE=f"{t} +0000")
    sh("git", "add", "-A", cwd=work, env=e)
    sh("git", "commit", "-q", "-m", msg, cwd=work, env=e)
    h = sh("git", "rev-parse", "HEAD", cwd=work).decode().strip()
    commits.append((h, t))
    return h


for i in range(6):
    commit(f"main {i}", {f"dir{i % 3}/f{i}.txt": f"main {i}\n", "shared.json": json.dumps({"i": i})})
sh("git", "checkout", "-q", "-b", "side", "HEAD~3", cwd=work)
for i in range(5):
    commit(f"side {i}", {f"side/s{i}.txt": f"side {i}\n" * (i + 1)})
sh("git", "checkout", "-q", "main", cwd=work)
e = dict(ENV, GIT_AUTHOR_DATE=f"{t + 50} +0000", GIT_COMMITTER_DATE=f"{t + 50} +0000")
sh("git", "merge", "-q", "--no-edit", "side", cwd=work, env=e)
commits.append((sh("git", "rev-parse", "HEAD", cwd=work).decode().strip(), t + 50))
t += 50
for i in range(4):
    commit(f"after {i}", {f"dir{i % 2}/after{i}.txt": f"after {i}\n"})
sh("git", "tag", "-a", "v1", "-m", "v1", "HEAD~2", cwd=work)
sh("git", "checkout", "-q", "side", cwd=work)
commit("side late", {"side/late.txt": "late\n"})
sh("git", "checkout", "-q", "main", cwd=work)
e = dict(ENV, GIT_AUTHOR_DATE=f"{t + 50} +0000", GIT_COMMITTER_DATE=f"{t + 50} +0000")
sh("git", "merge", "-q", "--no-edit", "side", cwd=work, env=e)
t += 50
for i in range(3):
    commit(f"tip {i}", {"shared.json": json.dumps({"tip": i})})

tip = sh("git", "rev-parse", "main", cwd=work).decode().strip()
all_commits = sh("git", "rev-list", "--all", cwd=work).decode().split()
dates = {h: int(sh("git", "show", "-s", "--format=%ct", h, cwd=work)) for h in all_commits}

# ---- the same repository served by fleetconf (copied into its data directory) -----------------
# Port 0: the kernel picks a free port, and the test reads it from the server's log (tests/README.md).
site = {"networks": [{"name": "br0", "subnet": "10.7.0.0/24", "gateway": "10.7.0.1", "pools": ["10.7.0.100-10.7.0.120"]}],
        "unikernels": [{"name": "r", "network": "br0", "git": {}}],
        "services": {"data_dir": f"{tmp}/data", "status": "off", "dhcp": {"enabled": False}, "block": {"enabled": False},
                     "git": {"http": "127.0.0.1:0"}}}
json.dump(site, open(f"{tmp}/site.json", "w"))
bare = f"{tmp}/data/git/repos/r.git"
os.makedirs(os.path.dirname(bare))
sh("git", "clone", "-q", "--bare", work, bare)
sh("git", "--git-dir", bare, "tag", "-l")  # sanity
token = subprocess.run([FC, "git", "token", "r", "--site", f"{tmp}/site.json"], capture_output=True).stdout.decode().strip()
log = open(f"{tmp}/serve.log", "w")
server = subprocess.Popen([FC, "serve", f"{tmp}/site.json"], stdout=log, stderr=subprocess.STDOUT)
port = None
for _ in range(150):
    m = re.search(r"HTTP listening on 127\.0\.0\.1:(\d+)", open(f"{tmp}/serve.log").read())
    if m:
        port = int(m[1])
        break
    time.sleep(0.1)
if port is None:
    print("FAIL: the server did not log its HTTP port:\n" + open(f"{tmp}/serve.log").read()[-2000:])
    server.kill()
    sys.exit(1)
auth = "Basic " + base64.b64encode(f"r:{token}".encode()).decode()


def fleetconf(body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/r.git/git-upload-pack", data=body, method="POST",
                                 headers={"Authorization": auth, "Content-Type": "application/x-git-upload-pack-request"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def reference(body):
    return subprocess.run(["git", "upload-pack", "--stateless-rpc", bare], input=body, capture_output=True, env=ENV).stdout


CAPS = "multi_ack_detailed side-band-64k ofs-delta no-progress no-done deepen-relative include-tag"
cases = []
for d in (1, 2, 3, 5, 8, 100):
    cases.append((f"deepen {d}", [tip], [], [f"deepen {d}"], [], True))
for c in (3, 8, 12, len(commits) - 3):
    h, when = commits[c]
    cases.append((f"deepen-since the date of commit {c}", [tip], [], [f"deepen-since {when}"], [], True))
cases.append(("deepen-not v1", [tip], [], ["deepen-not refs/tags/v1"], [], True))
cases.append(("deepen-not side", [tip], [], ["deepen-not side"], [], True))
# a shallow client deepening, relative and absolute
s1 = commits[-4][0]
cases.append(("client shallow + deepen 2", [tip], [s1], ["deepen 2"], [], True))
cases.append(("client shallow + deepen 6", [tip], [commits[-2][0]], ["deepen 6"], [], True))
cases.append(("client shallow + deepen 2 relative", [tip], [commits[-2][0]], ["deepen 2"], [], True))
cases.append(("git-kv pull: shallow + deepen-since + have", [tip], [commits[-2][0]], [f"deepen-since {dates[commits[-2][0]]}"],
              [commits[-2][0]], False))
# Pulls with no-done (no "done" line: the first stateless round) where the shallow boundary moves (issue 16.10):
# git adds the parents of unshallowed commits to the wants and grafts the shallow commits before it decides
# whether it may give up, so these get "ACK ... common" + NAK from git, not "ready" and a pack.
old_tip, older = commits[-4][0], commits[-9]
cases.append(("git-kv pull, old tip unshallowed (deepen-since an older date), no done", [tip], [old_tip],
              [f"deepen-since {older[1]}"], [old_tip], False))
cases.append(("git-kv pull, the new tip becomes shallow (deepen-since the tip's date), no done", [tip], [commits[-2][0]],
              [f"deepen-since {dates[tip]}"], [commits[-2][0]], False))
cases.append(("stock git fetch --shallow-since from a shallow clone, first round", [tip], [old_tip],
              [f"deepen-since {older[1]}"], [old_tip, commits[-5][0], commits[-6][0]], False))
cases.append(("git-kv pull, nothing unshallowed (deepen-since the old tip's date), no done", [tip], [old_tip],
              [f"deepen-since {dates[old_tip]}"], [old_tip], False))
# plain negotiation: haves that exist, haves that do not, a full clone
cases.append(("full clone, no haves", [tip], [], [], [], True))
cases.append(("haves: some common", [tip], [], [], [commits[5][0], commits[9][0], "1" * 40], False))
cases.append(("haves: none known", [tip], [], [], ["2" * 40, "3" * 40], False))
cases.append(("haves: the tip's parent", [tip], [], [], [commits[-2][0]], False))
cases.append(("two wants (main and side)", [tip, sh("git", "rev-parse", "side", cwd=work).decode().strip()], [], [], [commits[2][0]], False))

for name, wants, shallows, deepen, haves, done in cases:
    caps = CAPS if "relative" in name else CAPS.replace(" deepen-relative", "")
    body = pkt(f"want {wants[0]} {caps}\n")
    for w in wants[1:]:
        body += pkt(f"want {w}\n")
    for s_ in shallows:
        body += pkt(f"shallow {s_}\n")
    for d in deepen:
        body += pkt(d + "\n")
    body += b"0000"
    for h in haves:
        body += pkt(f"have {h}\n")
    body += pkt("done\n") if done or not haves else b"0000"
    ref_raw = reference(body)
    ref_lines, ref_pack = parse(ref_raw)
    our_lines, our_pack = parse(fleetconf(body))
    check(f"{name}: git itself answered (a pack after done, or acknowledgements)", bool(ref_raw) and
          (bool(ref_pack) if (done or not haves) else any(l.startswith(("ACK", "NAK")) for l in ref_lines)), ref_raw[:200])
    ref_objs, our_objs = objects(ref_pack), objects(our_pack)
    sl = lambda ls: sorted(l for l in ls if l.startswith(("shallow", "unshallow")))
    al = lambda ls: [l for l in ls if l.startswith(("ACK", "NAK"))]
    check(f"{name}: shallow lines as git's", sl(ref_lines) == sl(our_lines), f"git {sl(ref_lines)} ours {sl(our_lines)}")
    check(f"{name}: ACK/NAK lines as git's", al(ref_lines) == al(our_lines), f"git {al(ref_lines)} ours {al(our_lines)}")
    check(f"{name}: every other pkt line as git's, in order", [l for l in ref_lines if not l.startswith(("shallow", "unshallow"))] ==
          [l for l in our_lines if not l.startswith(("shallow", "unshallow"))], f"git {ref_lines} ours {our_lines}")
    check(f"{name}: the same objects as git's pack ({len(ref_objs)})", ref_objs == our_objs,
          f"missing {len(ref_objs - our_objs)} extra {len(our_objs - ref_objs)}")

server.send_signal(signal.SIGTERM)
server.wait(10)
if failures:
    print(open(f"{tmp}/serve.log").read()[-3000:])
shutil.rmtree(tmp, ignore_errors=True)
print(f"{len(passed)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
