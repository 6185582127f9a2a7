"""Helpers the benchmarks share: a veth pair between two network namespaces that the benchmark creates and
deletes (its traffic never touches a host interface), and stopping a server."""
import signal, subprocess


def sh(*args, check=True, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: {r.stderr.strip()[-500:]}")
    return r


def veth_pair(srv, cli, if_s, if_c, srv_cidr, cli_cidr):
    """Namespaces `srv` and `cli` joined by the veth pair if_s <-> if_c, addressed, up, with loopback up."""
    sh("ip", "netns", "add", srv)
    sh("ip", "netns", "add", cli)
    sh("ip", "link", "add", if_s, "netns", srv, "type", "veth", "peer", "name", if_c, "netns", cli)
    sh("ip", "-n", srv, "addr", "add", srv_cidr, "dev", if_s)
    sh("ip", "-n", cli, "addr", "add", cli_cidr, "dev", if_c)
    for n, i in ((srv, if_s), (cli, if_c)):
        sh("ip", "-n", n, "link", "set", i, "up")
        sh("ip", "-n", n, "link", "set", "lo", "up")


def delete_namespaces(*names):
    for n in names:
        sh("ip", "netns", "del", n, check=False)


def stop(p, timeout=10):
    """SIGTERM, then SIGKILL after `timeout` seconds."""
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
