#!/usr/bin/env python3
"""tlstunnel compatibility, end to end through the `fleetconf` binary, against tlstunnel itself as far as
this machine can run it: tlstunnel_reference.py, a port of robur-coop/tlstunnel's own source (not of
fleetconf's docs), plus images built here byte by byte:

- disk images built here byte by byte (512- and 4096-byte sectors, multi-sector chains in any order,
  one superblock damaged, an older counter, a broken chain, both superblocks damaged), read with
  `fleetconf block dump --format tlstunnel`; export -> dump -> import round trips;
- images fleetconf exports, read by the port of the proxy's boot-time reader (filesystem.ml read_data);
- the port's control socket on 127.0.0.1 (unikernel.ml: one TCP read per command, HMAC, the proxy's
  replies), driven by `fleetconf block --legacy-tlstunnel list|add|remove`.

usage: tlstunnel_compat_test.py FLEETCONF_BINARY
"""
import argparse, hashlib, hmac, json, os, socket, struct, subprocess, sys, tempfile, threading, time

_ap = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n\n")[0])
_ap.add_argument("fleetconf", help="the fleetconf binary to test")
FC = os.path.abspath(_ap.parse_args().fleetconf)
tmp = tempfile.mkdtemp(prefix="fleetconf-tlstunnel-")
failures, passed = [], []


def check(desc, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + desc + ("" if ok else f"  [{detail}]"))
    if ok:
        passed.append(desc)
    else:
        failures.append(desc)


def run(*args, env=None):
    return subprocess.run([FC, *args], capture_output=True, text=True, env=env)


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tlstunnel_reference import tlv, der_int, der_ip, der_sni, der_snis, parse_tlv, parse_sni, parse_snis, Disk, Proxy, decode_timestamp  # noqa: E402


# ---- disk images, from the documented layout ----
def superblock(ss, counter, timestamp, first, data):
    body = struct.pack(">H6xQQQQ", 1, counter, timestamp, first, len(data)) + hashlib.sha256(data).digest()
    body += bytes(ss - 32 - len(body))
    return body + hashlib.sha256(body).digest()


def image(ss, sectors, routes, order=None, counters=(5, 5), broken_for=None):
    """`order`: the data sectors to use, in chain order (default 1, 2, ...)."""
    data = der_snis(routes)
    per = ss - 8
    chunks = [data[i:i + per] for i in range(0, len(data), per)]
    order = order or list(range(1, len(chunks) + 1))
    img = bytearray(ss * sectors)
    for k, (sec, chunk) in enumerate(zip(order, chunks)):
        nxt = order[k + 1] if k + 1 < len(chunks) else 0
        img[sec * ss:sec * ss + 8] = struct.pack(">Q", nxt)
        img[sec * ss + 8:sec * ss + 8 + len(chunk)] = chunk
    img[0:ss] = superblock(ss, counters[0], 1_700_000_000, order[0], data)
    img[-ss:] = superblock(ss, counters[1], 1_700_000_001, order[0], data)
    return img


def write(name, data):
    p = f"{tmp}/{name}"
    open(p, "wb").write(bytes(data))
    return p


def dump(path, *extra):
    r = run("block", "dump", "--format", "tlstunnel", "--json", path, *extra)
    return r, (json.loads(r.stdout) if r.returncode == 0 else None)


def routes_of(j):
    return [(x["host"], x["address"], x["port"]) for x in j["routes"]]


ROUTES = [(f"site{i}.example", f"{10 + i % 200}.{i % 256}.0.{i % 250 + 1}", 443 + i) for i in range(40)]
ROUTES += [("high.example", "192.168.1.1", 8443), ("top.example", "255.255.255.254", 1), ("v6.example", "2001:db8::8000:1", 65535)]

try:
    # 512-byte sectors: a chain of several sectors, laid out backwards on the disk.
    n_data = (len(der_snis(ROUTES)) + 503) // 504
    check(f"the test routes need a multi-sector chain ({n_data} sectors of 512 bytes)", n_data >= 3)
    backwards = list(range(n_data + 10, 10, -1))
    r, j = dump(write("back512.img", image(512, 64, ROUTES, order=backwards)))
    check("512-byte sectors, chain in reverse order: every route, signed IPv4 above 128.0.0.0 and IPv6 included",
          j and routes_of(j) == ROUTES and j["sector_size"] == 512, r.stderr[-400:] + r.stdout[-200:])
    r, j = dump(write("s4096.img", image(4096, 8, ROUTES)))
    check("4096-byte sectors detected and read", j and routes_of(j) == ROUTES and j["sector_size"] == 4096, r.stderr[-400:])
    r, j = dump(write("empty.img", image(512, 8, [])))
    check("a valid empty configuration reads as empty", j and j["routes"] == [], r.stderr)

    # Newer counter wins; a damaged superblock is reported, the other one used.
    r, j = dump(write("newer.img", image(512, 16, ROUTES[:3], counters=(9, 4))))
    check("the newer counter wins", j and j["counter"] == 9 and j["superblock"] == "first", j)
    img = image(512, 16, ROUTES[:3])
    img[12] ^= 0xFF
    r, j = dump(write("first_bad.img", img))
    check("first superblock damaged: read through the last, and reported",
          j and j["superblock"] == "last" and routes_of(j) == ROUTES[:3] and "first superblock" in r.stderr and "checksum" in r.stderr,
          r.stderr)
    # The newer superblock's chain is broken (copy-on-write: the older one still has its own chain).
    old_routes, new_routes = ROUTES[:2], ROUTES[2:5]
    img = image(512, 32, old_routes, order=[20], counters=(3, 3))
    newer = image(512, 32, new_routes, order=[5], counters=(4, 4))
    img[5 * 512:6 * 512] = newer[5 * 512:6 * 512]
    img[0:512] = newer[0:512]                   # first superblock: counter 4, data in sector 5
    img[5 * 512:5 * 512 + 8] = struct.pack(">Q", 31)  # ... but sector 5 points on, at the last superblock
    r, j = dump(write("fallback.img", img))
    check("the newer superblock's broken chain falls back to the older generation, with the reason",
          j and j["counter"] == 3 and routes_of(j) == old_routes and "chain" in r.stderr, (r.stderr, j))

    both = image(512, 16, ROUTES[:3])
    both[12] ^= 1
    both[-1] ^= 1
    r, _ = dump(write("both_bad.img", both))
    check("both superblocks damaged: exit 1, each reason, never an empty configuration",
          r.returncode == 1 and "NOT an empty configuration" in r.stderr and r.stderr.count("checksum mismatch") >= 2, r.stderr)
    chain = image(512, 16, ROUTES, order=[1, 2, 3, 4, 5][:n_data])
    chain[2 * 512:2 * 512 + 8] = struct.pack(">Q", 2)  # sector 2 points at itself
    r, _ = dump(write("loop.img", chain))
    check("a chain that loops: exit 1, named", r.returncode == 1 and "loops back to sector 2" in r.stderr, r.stderr)
    hashbad = image(512, 16, ROUTES[:3])
    hashbad[1 * 512 + 20] ^= 1
    r, _ = dump(write("data_bad.img", hashbad))
    check("damaged data: exit 1, data checksum named", r.returncode == 1 and "data checksum mismatch" in r.stderr, r.stderr)
    r, _ = dump(write("short.img", b"\0" * 700))
    check("not whole sectors: exit 1", r.returncode == 1 and "sectors" in r.stderr, r.stderr)

    # Round trip: tlstunnel image -> fleetconf device -> tlstunnel image -> (this file's reader).
    dev = f"{tmp}/fleet.img"
    r = run("block", "format", dev, "--size", str(1 << 20))
    check("format a fleetconf device", r.returncode == 0, r.stderr)
    r = run("block", "import", "--format", "tlstunnel", f"{tmp}/back512.img", dev)
    check("import --format tlstunnel IMAGE DEVICE", r.returncode == 0 and f"imported {len(ROUTES)} route(s)" in r.stdout, r.stderr + r.stdout)
    r = run("block", "dump", "--json", dev)
    got = sorted((x["host"], x["address"], x["port"]) for x in json.loads(r.stdout)["routes"]) if r.returncode == 0 else None
    check("the fleetconf device holds exactly the tlstunnel routes", got == sorted(ROUTES), (got or r.stderr)[:3])
    for ss in (512, 4096):
        out = f"{tmp}/export{ss}.img"
        r = run("block", "export", "--format", "tlstunnel", "--sector-size", str(ss), "--size", str(64 * ss), dev, out)
        check(f"export --format tlstunnel ({ss}-byte sectors)", r.returncode == 0 and os.path.getsize(out) == 64 * ss, r.stderr)
        data = open(out, "rb").read()
        disk = Disk(ss, len(data) // ss, lambda: 0)
        disk.img = bytearray(data)
        try:
            sb, chain = disk.read_data()  # what tlstunnel does at boot with this device
            got, err = sorted(parse_snis(chain)), None
        except ValueError as e:
            sb, got, err = None, None, str(e)
        check(f"the exported image boots the proxy (port of filesystem.ml read_data), every route there ({ss})",
              err is None and got == sorted(ROUTES) and disk.writes == 0, (err, (got or [])[:2]))
        check(f"the exported image's timestamp is in tlstunnel's encoding ({ss})",
              sb is not None and abs(decode_timestamp(sb["timestamp"]) - time.time()) < 3600, sb and sb["timestamp"])
    r = run("block", "export", "--format", "tlstunnel", dev, f"{tmp}/export512.img")
    r2, j = dump(f"{tmp}/export512.img")
    check("export over an existing image keeps its size and counts on", r.returncode == 0 and j and j["counter"] == 2 and
          os.path.getsize(f"{tmp}/export512.img") == 64 * 512, (r.stderr, j and j["counter"]))
    bad = image(512, 16, [("ok.example", "10.0.0.1", 80), ("bad.example", "10.0.0.2", 70000)])
    r = run("block", "import", "--format", "tlstunnel", write("badport.img", bad), dev)
    check("import refuses a port tlstunnel accepted but is out of range, and changes nothing",
          r.returncode == 2 and "70000" in r.stderr, r.stderr)

    # ---- the control socket, against the port of the proxy's ----
    KEY = b"shared tlstunnel key"
    standin = Proxy(KEY)
    state, seen, port = standin.state, standin.seen, standin.port
    keyfile = f"{tmp}/tlstunnel.key"
    fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, KEY + b"\n")
    os.close(fd)
    legacy = ["block", "--legacy-tlstunnel"]
    conn = ["--connect", f"127.0.0.1:{port}", "--key-file", keyfile]
    r = run(*legacy, "add", "web.example", "192.168.1.10", "8443", *conn)
    check("legacy add: accepted by the proxy, the address above 128.0.0.0 arrives intact",
          r.returncode == 0 and state.get("web.example") == ("192.168.1.10", 8443), (r.stderr, state))
    check("every use says there is no replay protection", "no replay protection" in r.stderr, r.stderr)
    check("the proxy's reply is shown", "(tlstunnel: web.example was successfully added)" in r.stdout, r.stdout)
    check("each command reaches the proxy whole in its one read (no truncated frame)", standin.truncated == 0, standin.truncated)
    _, disk_data = standin.disk.read_data()
    check("the proxy stored the route on its disk", parse_snis(disk_data) == [("web.example", "192.168.1.10", 8443)], disk_data.hex())
    check("the frame is u64 length + HMAC-SHA256(key, DER) + DER of add",
          seen and seen[-1][32:] == tlv(0xA0, der_sni("web.example", "192.168.1.10", 8443)), seen[-1].hex() if seen else None)
    run(*legacy, "add", "v6.example", "2001:db8::1", "443", *conn)
    r = run(*legacy, "list", "--json", *conn)
    got = json.loads(r.stdout) if r.returncode == 0 else None
    check("legacy list (the proxy answers in descending order; shown as it came)",
          got == [{"host": "web.example", "address": "192.168.1.10", "port": 8443},
                  {"host": "v6.example", "address": "2001:db8::1", "port": 443}], (r.stderr, got))
    r = run(*legacy, "list", *conn)
    check("legacy list, as a table", r.returncode == 0 and "web.example" in r.stdout and "192.168.1.10" in r.stdout, r.stdout)
    r = run(*legacy, "remove", "web.example", *conn)
    check("legacy remove", r.returncode == 0 and "web.example" not in state and
          "(tlstunnel: web.example was successfylly removed)" in r.stdout, (r.stderr, r.stdout, state))
    fd = os.open(f"{tmp}/wrong.key", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not the key")
    os.close(fd)
    r = run(*legacy, "list", "--connect", f"127.0.0.1:{port}", "--key-file", f"{tmp}/wrong.key")
    check("a wrong key: exit 1 with tlstunnel's result 3 explained", r.returncode == 1 and
          "fleetconf: tlstunnel: result 3 (" in r.stderr and "): authentication failure" in r.stderr, r.stderr)
    r = run(*legacy, "history", *conn)
    check("commands tlstunnel does not have are refused before connecting", r.returncode == 2 and "only list, add and remove" in r.stderr, r.stderr)
    os.chmod(keyfile, 0o644)
    r = run(*legacy, "list", *conn)
    check("a key file readable by others is refused", r.returncode != 0 and "chmod 600" in r.stderr, r.stderr)
    os.chmod(keyfile, 0o600)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # accepts (in the kernel) and never answers
    sp = silent.getsockname()[1]
    # No timing threshold: the client's own deadline ends it (else ctest's timeout would), and says so.
    r = run(*legacy, "list", "--connect", f"127.0.0.1:{sp}", "--key-file", keyfile)
    check("a proxy that never answers: given up on with a clear error, not waited for", r.returncode == 1 and "no complete reply" in r.stderr,
          (r.returncode, r.stderr))
    run("block", "keygen", f"{tmp}/bc.keys")
    r = run("block", "list", "--connect", f"127.0.0.1:{sp}", "--key-file", f"{tmp}/bc.keys")
    check("the same for the blockcfg client (no hello)", r.returncode != 0 and "no reply within" in r.stderr, (r.returncode, r.stderr))
    silent.close()
    standin.close()
    r = run(*legacy, "list", *conn)
    check("no proxy listening: a clear error", r.returncode == 1 and "cannot connect" in r.stderr, (r.returncode, r.stderr))
finally:
    subprocess.run(["rm", "-rf", tmp])

print(f"{len(passed)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
