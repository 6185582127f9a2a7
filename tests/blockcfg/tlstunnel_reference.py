#!/usr/bin/env python3
"""tlstunnel, ported to Python from its own source, for fleetconf's compatibility tests.

Every function below is a line-by-line port of the OCaml it names, in robur-coop/tlstunnel (read with the
workplace search tool on 2026-11-30; the commit is the one the stored file carried):

  unikernel/configuration.ml  17b98ee5f955bd7eaa8daf3d23e3159babe48287  the ASN.1 of commands and stored data
  client/client.ml            23a22f8702b4d1519b7f8f73bebe9582d63aeedb  write_cmd / read: the client's framing
  unikernel/unikernel.ml      1fa755410702fbfa713d709c207b3d0f4669e96a  config_change / config_cmd / handle_config
  unikernel/filesystem.ml     17b98ee5f955bd7eaa8daf3d23e3159babe48287  superblocks, sector chains, init

It is not derived from docs/tlstunnel-compat.md or from fleetconf's C++; where the source has a quirk it is
kept (one TCP read per command, "successfylly removed", 86,000-second days in the superblock timestamp,
uninitialised superblock padding, a reused sector buffer, List in descending key order).

  tlstunnel_reference.py vectors [--check FILE]  print (or compare with FILE) the test vectors that
                                                  tests/blockcfg/tlstunnel_test.cpp pins
  tlstunnel_reference.py serve PORT KEY_FILE STATE_FILE
                                                  run the control socket on 127.0.0.1:PORT (0: any), the routes
                                                  written to STATE_FILE as JSON after each change
  tlstunnel_reference.py read IMAGE SECTOR_SIZE   read a disk image as the proxy does at boot; JSON on stdout
"""
import argparse, hashlib, hmac, json, os, socket, struct, sys, threading


# ---- DER (asn1-combinators' DER encoding of the grammar in configuration.ml) ---------------------------
def tlv(tag, content):
    n = len(content)
    if n < 0x80:
        head = bytes([tag, n])
    else:
        b = n.to_bytes((n.bit_length() + 7) // 8, "big")
        head = bytes([tag, 0x80 | len(b)]) + b
    return head + content


def der_int(v):
    length = 1
    while not (-(1 << (8 * length - 1)) <= v < (1 << (8 * length - 1))):
        length += 1
    return tlv(0x02, v.to_bytes(length, "big", signed=True))


def der_ip(addr):
    # configuration.ml `ip`: choice2 (explicit 0 int) (explicit 1 (sequence4 int int int int)); the int of an
    # IPv4 address is Int32.to_int (Ipaddr.V4.to_int32 ip), so addresses from 128.0.0.0 are negative.
    if ":" in addr:
        raw = socket.inet_pton(socket.AF_INET6, addr)
        words = b"".join(der_int(struct.unpack(">i", raw[i:i + 4])[0]) for i in range(0, 16, 4))
        return tlv(0xA1, tlv(0x30, words))
    return tlv(0xA0, der_int(struct.unpack(">i", socket.inet_aton(addr))[0]))


def der_sni(name, addr, port):
    # configuration.ml `sni`: sequence3 (utf8_string sni) (ip host) (int port)
    return tlv(0x30, tlv(0x0C, name.encode()) + der_ip(addr) + der_int(port))


def der_snis(routes):
    # configuration.ml `data`: choice2 (sequence_of sni) (explicit 1 null), always the first
    return tlv(0x30, b"".join(der_sni(*r) for r in routes))


def cmd_to_der(cmd):
    # configuration.ml `cmd`: choice5 (explicit 0 sni) (explicit 1 utf8_string) (explicit 2 null)
    #                                  (explicit 3 (sequence_of sni)) (explicit 4 (sequence2 int utf8_string))
    kind = cmd[0]
    if kind == "add":
        return tlv(0xA0, der_sni(*cmd[1:]))
    if kind == "remove":
        return tlv(0xA1, tlv(0x0C, cmd[1].encode()))
    if kind == "list":
        return tlv(0xA2, tlv(0x05, b""))
    if kind == "snis":
        return tlv(0xA3, der_snis(cmd[1]))
    if kind == "result":
        return tlv(0xA4, tlv(0x30, der_int(cmd[1]) + tlv(0x0C, cmd[2].encode())))
    raise ValueError(kind)


def parse_tlv(b, i=0):
    if i + 2 > len(b):
        raise ValueError("truncated")
    tag, n = b[i], b[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(b[i:i + k], "big")
        i += k
    if i + n > len(b):
        raise ValueError("truncated")
    return tag, b[i:i + n], i + n


def parse_int(b):
    tag, v, _ = parse_tlv(b)
    if tag != 0x02:
        raise ValueError("expected INTEGER")
    return int.from_bytes(v, "big", signed=True)


def parse_ip(b):
    tag, c, _ = parse_tlv(b)
    if tag == 0xA0:
        return socket.inet_ntoa(struct.pack(">i", parse_int(c)))
    _, seq, _ = parse_tlv(c)
    raw, i = b"", 0
    while i < len(seq):
        _, v, i = parse_tlv(seq, i)
        raw += struct.pack(">i", int.from_bytes(v, "big", signed=True))
    return socket.inet_ntop(socket.AF_INET6, raw)


def parse_sni(c):
    _, name, i = parse_tlv(c)
    _, _, j = parse_tlv(c, i)
    return (name.decode(), parse_ip(c[i:j]), parse_int(c[j:]))


def parse_snis(der):
    _, seq, _ = parse_tlv(der)
    out, i = [], 0
    while i < len(seq):
        _, c, i = parse_tlv(seq, i)
        out.append(parse_sni(c))
    return out


def der_to_cmd(der):
    """configuration.ml cmd_of_str (decode_strict: trailing bytes are an error)."""
    tag, c, end = parse_tlv(der)
    if end != len(der):
        raise ValueError("trailing bytes")
    if tag == 0xA0:
        return ("add",) + parse_sni(parse_tlv(c)[1])
    if tag == 0xA1:
        return ("remove", parse_tlv(c)[1].decode())
    if tag == 0xA2:
        return ("list",)
    if tag == 0xA3:
        return ("snis", parse_snis(c))
    if tag == 0xA4:
        _, seq, _ = parse_tlv(c)
        _, _, i = parse_tlv(seq)
        return ("result", parse_int(seq[:i]), parse_tlv(seq, i)[1].decode())
    raise ValueError(f"unexpected tag 0x{tag:02x}")


# ---- framing (client.ml write / write_cmd, unikernel.ml config_change) ---------------------------------
def write_cmd(key, cmd):
    """client.ml write_cmd: u64 BE length, then HMAC-SHA256(key, der) ++ der."""
    data = cmd_to_der(cmd)
    body = hmac.new(key, data, hashlib.sha256).digest() + data
    return struct.pack(">Q", len(body)) + body


def reply_frame(der):
    """unikernel.ml config_change: u64 BE length of the reply, then the reply's DER (no MAC)."""
    return struct.pack(">Q", len(der)) + der


# ---- the block device (filesystem.ml) ----------------------------------------------------------------
NS_PER_DAY = 86_000 * 1_000_000_000  # filesystem.ml `ns_per_day`: 86,000 (not 86,400) seconds


def encode_timestamp(unix_seconds):
    """filesystem.ml encode_timestamp, for a Ptime of `unix_seconds` (Ptime.Span.to_d_ps: days, picoseconds)."""
    d, rem = divmod(unix_seconds, 86_400)
    return d * NS_PER_DAY + rem * 1_000_000_000


def decode_timestamp(ns):
    d, rem = divmod(ns, NS_PER_DAY)
    return d * 86_400 + rem // 1_000_000_000


def garbage(n, seed):
    """What Bytes.create leaves in memory: not zeros. A fixed pattern, so that the vectors are reproducible."""
    return bytes((seed * 131 + i * 29 + 7) & 0xFF for i in range(n))


def encode_superblock(ss, counter, timestamp, active, length, checksum, seed=1):
    buf = bytearray(garbage(ss, seed))  # let s = Bytes.create ss (uninitialised)
    struct.pack_into(">H", buf, 0, 1)  # super_version; bytes 2-7 are never written
    struct.pack_into(">QQQQ", buf, 8, counter, timestamp, active, length)
    buf[40:72] = checksum
    buf[ss - 32:] = hashlib.sha256(bytes(buf[:ss - 32])).digest()
    return bytes(buf)


def decode_superblock(buf):
    payload, checksum = buf[:-32], buf[-32:]
    if hashlib.sha256(payload).digest() != checksum:
        return "bad superblock checksum"
    version = struct.unpack_from(">H", payload, 0)[0]
    if version != 1:
        return f"superblock version {version} is not supported (supported is 1)"
    counter, timestamp, active, length = struct.unpack_from(">QQQQ", payload, 8)
    return {"counter": counter, "timestamp": timestamp, "active": active, "length": length, "checksum": payload[40:72]}


class Disk:
    """A Mirage_block device in memory, with filesystem.ml's init, read_data and write_data."""

    def __init__(self, ss, sectors, clock):
        self.ss, self.sectors, self.clock = ss, sectors, clock
        self.img = bytearray(garbage(ss * sectors, 99))  # a fresh device is whatever it is
        self.writes = 0

    def read(self, s):
        return bytes(self.img[s * self.ss:(s + 1) * self.ss])

    def write(self, s, data):
        assert len(data) == self.ss
        self.img[s * self.ss:(s + 1) * self.ss] = data
        self.writes += 1

    def init(self):
        sb = encode_superblock(self.ss, 0, encode_timestamp(self.clock()), 0, 0, hashlib.sha256(b"").digest(), self.writes)
        self.write(self.sectors - 1, sb)
        self.write(0, sb)
        return {"counter": 0, "used": set()}

    def read_data(self):
        """Returns (superblock, data) or raises ValueError with tlstunnel's reason."""
        a, b = decode_superblock(self.read(0)), decode_superblock(self.read(self.sectors - 1))
        to_write = None
        if isinstance(a, dict) and isinstance(b, dict):
            if a["counter"] == b["counter"]:
                sb = a
            elif a["counter"] > b["counter"]:
                sb, to_write = a, (self.sectors - 1, self.read(0))
            else:
                sb, to_write = b, (0, self.read(self.sectors - 1))
        elif a == "bad superblock checksum" and isinstance(b, dict):
            sb, to_write = b, (0, self.read(self.sectors - 1))
        elif isinstance(a, dict) and b == "bad superblock checksum":
            sb, to_write = a, (self.sectors - 1, self.read(0))
        else:
            raise ValueError(a if not isinstance(a, dict) else b)
        data, used, sector, left = b"", set(), sb["active"], sb["length"]
        while True:
            if sector == 0 and left == 0:
                break
            if sector == 0:
                raise ValueError("early end of data")
            if left == 0:
                raise ValueError("sector chain exceeds data")
            scratch = self.read(sector)
            nxt = struct.unpack_from(">Q", scratch, 0)[0]
            n = min(left, self.ss - 8)
            data += scratch[8:8 + n]
            used.add(sector)
            left -= n
            sector = nxt
        if hashlib.sha256(data).digest() != sb["checksum"]:
            raise ValueError("bad data checksum")
        if to_write:
            self.write(*to_write)
        sb["used"] = used
        return sb, data

    def write_data(self, old, data):
        ss, sectors = self.ss, self.sectors
        per = ss - 8
        needed = (len(data) + (ss - 1)) // per
        if 2 + needed + len(old["used"]) > sectors:
            raise ValueError("not enough blocks")

        def is_free(i):
            while True:
                if i + 1 >= sectors:
                    raise ValueError("no more sectors")
                if i not in old["used"]:
                    return i
                i += 1

        data_sector = bytearray(ss)  # Cstruct.create ss: zeros, then reused for every sector
        first = is_free(1)
        used, sector, rest = set(), first, data
        while True:
            nxt = 0 if len(rest) <= per else is_free(sector + 1)
            struct.pack_into(">Q", data_sector, 0, nxt)
            n = min(len(rest), per)
            data_sector[8:8 + n] = rest[:n]
            self.write(sector, bytes(data_sector))
            used.add(sector)
            if nxt == 0:
                break
            sector, rest = nxt, rest[per:]
        counter = old["counter"] + 1
        sb = encode_superblock(ss, counter, encode_timestamp(self.clock()), first, len(data), hashlib.sha256(data).digest(),
                               self.writes)
        self.write(sectors - 1, sb)
        self.write(0, sb)
        return {"counter": counter, "used": used}


# ---- the proxy's control socket (unikernel.ml) --------------------------------------------------------
def host_key(name):
    # Domain_name.Host_map orders names label by label from the root, case-insensitively.
    return tuple(reversed(name.lower().split(".")))


class Proxy:
    """unikernel.ml's configuration side: read_configuration at start, then one command per connection."""

    def __init__(self, key, port=0, on_change=None, ss=512, sectors=64, clock=lambda: 1_800_000_000):
        self.key, self.on_change = key, on_change
        self.disk = Disk(ss, sectors, clock)
        try:
            self.superblock, data = self.disk.read_data()
            self.state = {n: (h, p) for n, h, p in parse_snis(data)} if data else {}
        except ValueError as e:
            if str(e) != "bad superblock checksum":
                raise
            self.superblock, self.state = self.disk.init(), {}
        self.seen, self.truncated = [], 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def close(self):
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept(); then nothing listens
        self.sock.close()

    def fold(self):
        # Host_map.fold (ascending) consing onto a list: the list is in descending order.
        acc = []
        for n in sorted(self.state, key=host_key):
            acc.insert(0, (n, *self.state[n]))
        return acc

    def write_configuration(self):
        self.superblock = self.disk.write_data(self.superblock, der_snis(self.fold()))

    def handle_config(self, cmd):
        if cmd[0] == "add":
            _, sni, host, port = cmd
            self.state[sni] = (host, port)
            try:
                self.write_configuration()
                return ("result", 0, f"{sni} was successfully added")
            except ValueError as e:
                return ("result", 1, f"error {e} adding {sni}")
        if cmd[0] == "remove":
            self.state.pop(cmd[1], None)
            try:
                self.write_configuration()
                return ("result", 0, f"{cmd[1]} was successfylly removed")  # sic
            except ValueError as e:
                return ("result", 1, f"error {e} removing {cmd[1]}")
        if cmd[0] == "list":
            return ("snis", self.fold())
        return ("result", 1, "unexpected")

    def config_cmd(self, body):
        if not (len(body) > 32 and hmac.compare_digest(hmac.new(self.key, body[32:], hashlib.sha256).digest(), body[:32])):
            return ("result", 3, "authentication failure")
        try:
            cmd = der_to_cmd(body[32:])
        except (ValueError, IndexError, UnicodeDecodeError) as e:
            return ("result", 2, str(e))
        return self.handle_config(cmd)

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                # Private.TCP.read once: the whole frame must arrive in that one read.
                buf = conn.recv(1 << 20)
                if len(buf) < 8:
                    continue
                (n,) = struct.unpack(">Q", buf[:8])
                if len(buf) - 8 != n:
                    self.truncated += 1  # "truncated config message": closed without a reply
                    continue
                self.seen.append(buf[8:])
                before = dict(self.state)
                reply = self.config_cmd(buf[8:])
                conn.sendall(reply_frame(cmd_to_der(reply)))
                if self.on_change and self.state != before:
                    self.on_change(self.state)


# ---- the vectors pinned by tests/blockcfg/tlstunnel_test.cpp ------------------------------------------
def vectors():
    key = b"tlstunnel-reference-key"
    add = ("add", "www.example.org", "192.168.1.10", 8443)
    out = {
        "provenance": "tests/blockcfg/tlstunnel_reference.py vectors: ported from robur-coop/tlstunnel "
                      "(configuration.ml, client.ml, unikernel.ml, filesystem.ml; commits in the script)",
        "key": key.decode(),
        "request_add": write_cmd(key, add).hex(),
        "request_remove": write_cmd(key, ("remove", "www.example.org")).hex(),
        "request_list": write_cmd(key, ("list",)).hex(),
    }
    # Replies of the proxy (port), on a disk of 16 512-byte sectors, to a sequence of commands.
    p = Proxy.__new__(Proxy)
    p.key, p.state = key, {}
    p.disk = Disk(512, 16, lambda: 1_800_000_000)
    p.superblock = p.disk.init()
    out["reply_add"] = reply_frame(cmd_to_der(p.config_cmd(write_cmd(key, add)[8:]))).hex()
    out["reply_bad_key"] = reply_frame(cmd_to_der(p.config_cmd(write_cmd(b"wrong", ("list",))[8:]))).hex()
    routes = [(f"site{i}.example.org", f"10.{i}.0.{i + 1}", 443 + i) for i in range(20)] + [("v6.example.org", "2001:db8::8000:1", 65535)]
    for r in routes:
        p.config_cmd(write_cmd(key, ("add",) + r)[8:])
    out["reply_remove"] = reply_frame(cmd_to_der(p.config_cmd(write_cmd(key, ("remove", "site3.example.org"))[8:]))).hex()
    out["reply_list"] = reply_frame(cmd_to_der(p.config_cmd(write_cmd(key, ("list",))[8:]))).hex()
    sb, data = p.disk.read_data()
    out["disk"] = {"sector_size": 512, "sectors": 16, "counter": sb["counter"], "unix_time": 1_800_000_000,
                   "timestamp": sb["timestamp"], "first_sector": sb["active"], "routes": [list(r) for r in parse_snis(data)],
                   "image": bytes(p.disk.img).hex()}
    return out


def main():
    ap = argparse.ArgumentParser(description="tlstunnel ported from its source: test vectors, a control socket, a disk reader.")
    sub = ap.add_subparsers(dest="what", required=True)
    v = sub.add_parser("vectors", help="print the test vectors as JSON")
    v.add_argument("--check", metavar="FILE", help="compare with FILE instead; exit 1 when they differ")
    s = sub.add_parser("serve", help="run the control socket on 127.0.0.1")
    s.add_argument("port", type=int)
    s.add_argument("key_file")
    s.add_argument("state_file")
    r = sub.add_parser("read", help="read a disk image as the proxy does at boot")
    r.add_argument("image")
    r.add_argument("sector_size", type=int)
    a = ap.parse_args()
    if a.what == "vectors":
        got = vectors()
        if a.check:
            want = json.load(open(a.check))
            diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
            if diff:
                print(f"FAIL: {a.check} differs from the port's vectors in: {', '.join(diff)}")
                return 1
            print(f"{len(got)} passed: {a.check} is what the port of tlstunnel's source produces")
            return 0
        json.dump(got, sys.stdout, indent=1)
        print()
        return 0
    if a.what == "read":
        img = open(a.image, "rb").read()
        d = Disk(a.sector_size, len(img) // a.sector_size, lambda: 0)
        d.img = bytearray(img)
        try:
            sb, data = d.read_data()
        except ValueError as e:
            print(json.dumps({"error": str(e)}))
            return 1
        print(json.dumps({"counter": sb["counter"], "timestamp": sb["timestamp"], "unix_time": decode_timestamp(sb["timestamp"]),
                          "routes": [list(x) for x in parse_snis(data)] if data else []}))
        return 0
    key = open(a.key_file, "rb").read()
    if key.endswith(b"\n"):
        key = key[:-1]

    def save(state):
        with open(a.state_file + ".tmp", "w") as f:
            json.dump({k: list(v) for k, v in state.items()}, f)
        os.replace(a.state_file + ".tmp", a.state_file)

    p = Proxy(key, a.port, save)
    save(p.state)
    print("ready", p.port, flush=True)
    p.thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
