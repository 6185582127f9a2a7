"""DHCP requests as a relay sends them (giaddr = the relay's address), for the scripted relays of the
integration tests (dhcp_relay.py, dhcp_commit_probe.py)."""
import socket, struct


def relayed(msg_type, mac, xid, relay, extra=b""):
    """A BOOTREQUEST of DHCP message type `msg_type` for the 6-byte `mac`, relayed by `relay`."""
    h = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 1, xid, 0, 0, b"\0" * 4, b"\0" * 4, b"\0" * 4,
                    socket.inet_aton(relay), mac + b"\0" * 10, b"\0" * 64, b"\0" * 128)
    return h + b"\x63\x82\x53\x63" + bytes([53, 1, msg_type]) + extra + b"\xff"


def selecting(yiaddr, server):
    """The options of a REQUEST in SELECTING: requested address (50) and server identifier (54)."""
    return bytes([50, 4]) + yiaddr + bytes([54, 4]) + socket.inet_aton(server)
