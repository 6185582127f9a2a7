#!/usr/bin/env python3
"""Writes an OpenSSH private key file ("openssh-key-v1", unencrypted) for an ed25519 seed, so the stock
ssh client can use a key made by `fleetconf git keygen` (which prints only the 32-byte seed).

usage: openssh_key.py SEED_BASE64 PUBLIC_KEY_FILE OUT
"""
import base64, struct, sys


def s(b):
    return struct.pack(">I", len(b)) + b


def write_key(seed_b64, pub_file, out_file):
    seed = base64.b64decode(seed_b64)
    blob = base64.b64decode(open(pub_file).read().split()[1])
    pub = blob[-32:]
    priv = struct.pack(">II", 0x12345678, 0x12345678) + s(b"ssh-ed25519") + s(pub) + s(seed + pub) + s(b"fleetconf-test")
    pad = 1
    while len(priv) % 8:
        priv += bytes([pad])
        pad += 1
    body = b"openssh-key-v1\0" + s(b"none") + s(b"none") + s(b"") + struct.pack(">I", 1) + s(blob) + s(priv)
    b64 = base64.b64encode(body).decode()
    text = "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(b64[i:i + 70] for i in range(0, len(b64), 70))
    text += "\n-----END OPENSSH PRIVATE KEY-----\n"
    with open(out_file, "w") as f:
        f.write(text)


if __name__ == "__main__":
    import argparse
    _ap = argparse.ArgumentParser(description="Writes an OpenSSH ed25519 key pair from a 32-byte seed.")
    _ap.add_argument("seed_b64")
    _ap.add_argument("pub_file")
    _ap.add_argument("key_file")
    _a = _ap.parse_args()
    write_key(_a.seed_b64, _a.pub_file, _a.key_file)
