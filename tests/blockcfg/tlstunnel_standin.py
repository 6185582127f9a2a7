#!/usr/bin/env python3
"""A stand-in for tlstunnel's control socket, written from docs/tlstunnel-compat.md (independently of
fleetconf's C++): checks the HMAC over the DER, answers list/add/remove like the proxy. Used by the
tests as a module, or run alone: tlstunnel_standin.py PORT KEY_FILE STATE_FILE (the routes are written to
STATE_FILE as JSON after every change; listens on 127.0.0.1).
"""
import hashlib, hmac, json, socket, struct, sys, threading


# ---- DER, written from the ASN.1 in the docs ----
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
    if ":" in addr:
        raw = socket.inet_pton(socket.AF_INET6, addr)
        words = b"".join(der_int(struct.unpack(">i", raw[i:i + 4])[0]) for i in range(0, 16, 4))
        return tlv(0xA1, tlv(0x30, words))
    return tlv(0xA0, der_int(struct.unpack(">i", socket.inet_aton(addr))[0]))


def der_sni(name, addr, port):
    return tlv(0x30, tlv(0x0C, name.encode()) + der_ip(addr) + der_int(port))


def der_snis(routes):
    return tlv(0x30, b"".join(der_sni(*r) for r in routes))


def parse_tlv(b, i=0):
    tag, n = b[i], b[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(b[i:i + k], "big")
        i += k
    return tag, b[i:i + n], i + n


def parse_ip(b):
    tag, c, _ = parse_tlv(b)
    if tag == 0xA0:
        _, v, _ = parse_tlv(c)
        return socket.inet_ntoa(struct.pack(">i", int.from_bytes(v, "big", signed=True)))
    _, seq, _ = parse_tlv(c)
    raw, i = b"", 0
    while i < len(seq):
        _, v, i = parse_tlv(seq, i)
        raw += struct.pack(">i", int.from_bytes(v, "big", signed=True))
    return socket.inet_ntop(socket.AF_INET6, raw)


def parse_sni(c):
    _, name, i = parse_tlv(c)
    tag, ipc, j = parse_tlv(c, i)
    _, port, _ = parse_tlv(c, j)
    return (name.decode(), parse_ip(c[i:j]), int.from_bytes(port, "big", signed=True))


def parse_snis(der):
    _, seq, _ = parse_tlv(der)
    out, i = [], 0
    while i < len(seq):
        _, c, i = parse_tlv(seq, i)
        out.append(parse_sni(c))
    return out



def result(code, msg):
    return tlv(0xA4, tlv(0x30, der_int(code) + tlv(0x0C, msg.encode())))


class StandIn:
    def __init__(self, key, port=0, on_change=None):
        self.key, self.state, self.seen, self.on_change = key, {}, [], on_change
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

    def reply(self, conn, der):
        conn.sendall(struct.pack(">Q", len(der)) + der)

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                head = conn.recv(8, socket.MSG_WAITALL)
                if len(head) < 8:
                    continue
                (n,) = struct.unpack(">Q", head)
                body = b""
                while len(body) < n:
                    chunk = conn.recv(n - len(body))
                    if not chunk:
                        break
                    body += chunk
                mac, der = body[:32], body[32:]
                self.seen.append(body)
                if not hmac.compare_digest(mac, hmac.new(self.key, der, hashlib.sha256).digest()):
                    self.reply(conn, result(3, "authentication failure"))
                    continue
                tag, c, _ = parse_tlv(der)
                if tag == 0xA2:
                    self.reply(conn, tlv(0xA3, der_snis(sorted((k,) + v for k, v in self.state.items()))))
                    continue
                if tag == 0xA0:
                    name, addr, p = parse_sni(parse_tlv(c)[1])
                    self.state[name] = (addr, p)
                elif tag == 0xA1:
                    self.state.pop(parse_tlv(c)[1].decode(), None)
                else:
                    self.reply(conn, result(1, "unexpected command"))
                    continue
                self.reply(conn, result(0, ""))
                if self.on_change:
                    self.on_change(self.state)


if __name__ == "__main__":
    import argparse
    _ap = argparse.ArgumentParser(description="A stand-in tlstunnel control socket for tests.")
    _ap.add_argument("port", type=int)
    _ap.add_argument("key_file")
    _ap.add_argument("state_file")
    _a = _ap.parse_args()
    port, key_file, state_file = _a.port, _a.key_file, _a.state_file
    key = open(key_file, "rb").read()
    if key.endswith(b"\n"):
        key = key[:-1]
    def save(state):
        with open(state_file + ".tmp", "w") as f:
            json.dump({k: list(v) for k, v in state.items()}, f)
        import os
        os.replace(state_file + ".tmp", state_file)
    s = StandIn(key, port, save)
    save(s.state)
    print("ready", flush=True)
    s.thread.join()
