"""What the integration tests share: running commands (in network namespaces), checks that print
`ok`/`FAIL` lines, waiting for a condition, and the bookkeeping of the namespaces and processes a test
creates (always deleted and stopped at the end, whatever happened)."""
import os, shutil, subprocess, sys, time


def require_root_and_netns():
    """Namespaces need root: outside CI the test is skipped (exit 77, said so); in CI it fails."""
    if os.geteuid() != 0 or subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        if os.environ.get("CI"):
            print("FAIL: needs root and network namespaces, and CI has them")
            sys.exit(1)
        print("SKIP: needs root and network namespaces (runs in CI)")
        sys.exit(77)


# A udhcpc hook script that records what udhcpc received (DIR/udhcpc.EVENT, one VAR=value per line) and
# configures the address like a real script would (RELEASE and renewals are sent from the leased address,
# so it must be on the interface).
UDHCPC_SCRIPT = """#!/bin/sh
env | grep -E '^(ip|router|dns|domain|subnet|opt[0-9]+|lease|serverid|ntpsrv|mask|fqdn|hostname)=' | sort > "{dir}/udhcpc.$1"
case "$1" in
  deconfig) ip addr flush dev "$interface" ;;
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface" ;;
esac
"""


def udhcpc_script(dir):
    """Writes DIR/u.sh (the script above) and removes earlier records; returns the script's path."""
    path = f"{dir}/u.sh"
    open(path, "w").write(UDHCPC_SCRIPT.format(dir=dir))
    os.chmod(path, 0o755)
    for f in os.listdir(dir):
        if f.startswith("udhcpc."):
            os.unlink(f"{dir}/{f}")
    return path


def udhcpc_record(dir, event="bound"):
    """What the script recorded for EVENT, as a dict; {} when nothing was."""
    try:
        return dict(l.split("=", 1) for l in open(f"{dir}/udhcpc.{event}").read().split("\n") if "=" in l)
    except FileNotFoundError:
        return {}


def udhcpc_waiting(pid):
    """True when udhcpc (pid) is back in its main loop: no child (its script has exited and was reaped) and
    asleep in poll/select (where it waits in every state, BOUND included, after the state is set). Where
    the kernel hides wchan ("0"), a sleeping process without a child is taken as enough."""
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        wchan = open(f"/proc/{pid}/wchan").read().strip()
    except OSError:
        return False
    return not children and state == "S" and (wchan in ("0", "") or "poll" in wchan or "select" in wchan)


def wait_udhcpc_bound(pid, dir, seconds=15):
    """Waits until a running udhcpc has run its script for "bound" and entered BOUND (signals such as
    SIGUSR1/SIGUSR2 act only there). Returns the script's record ({} when it never bound)."""
    held, _ = wait_for(lambda: os.path.exists(f"{dir}/udhcpc.bound") and udhcpc_waiting(pid), lambda ok: ok, seconds)
    return udhcpc_record(dir) if held else {}


def wait_for(get, want, seconds=15):
    """Polls get() until want(value) holds (or `seconds` pass); returns (held, last value)."""
    got = None
    for _ in range(int(seconds * 10)):
        got = get()
        if want(got):
            return True, got
        time.sleep(0.1)
    return False, got


class Harness:
    def __init__(self, prefix, env=None):
        self.prefix, self.env = prefix, env
        self.failures, self.procs, self.namespaces = [], [], []
        self.passed = 0

    def sh(self, *args, check=True, env=None, **kw):
        r = subprocess.run(list(args), capture_output=True, text=True, env=env or self.env, **kw)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, args))}: {r.stderr.strip()}")
        return r

    def ns(self, name, *args, **kw):
        return self.sh("ip", "netns", "exec", name, *args, **kw)

    def check(self, desc, ok, detail=""):
        print(("ok   " if ok else "FAIL ") + desc + ("" if ok else f"  [{detail}]"))
        if ok:
            self.passed += 1
        else:
            self.failures.append(desc)

    def add_namespaces(self, *names):
        for n in names:
            self.sh("ip", "netns", "add", n)
            self.namespaces.append(n)

    def veth(self, a, a_if, b, b_if):
        self.sh("ip", "link", "add", a_if, "netns", a, "type", "veth", "peer", "name", b_if, "netns", b)

    def bridge(self, hub, name, members, hub_addresses):
        """A bridge `name` in namespace `hub`, with a veth to each member namespace (there `eth0`, with the
        member's address, e.g. {ns: "10.77.0.1/24"}), and `hub_addresses` on the bridge."""
        self.sh("ip", "-n", hub, "link", "add", name, "type", "bridge")
        for i, (member, address) in enumerate(members.items()):
            port = f"{name[:-2]}p{i}"
            self.sh("ip", "link", "add", port, "netns", hub, "type", "veth", "peer", "name", "eth0", "netns", member)
            self.sh("ip", "-n", hub, "link", "set", port, "master", name, "up")
            self.sh("ip", "-n", member, "addr", "add", address, "dev", "eth0")
            self.sh("ip", "-n", member, "link", "set", "eth0", "up")
            self.sh("ip", "-n", member, "link", "set", "lo", "up")
        for a in hub_addresses:
            self.sh("ip", "-n", hub, "addr", "add", a, "dev", name)
        self.sh("ip", "-n", hub, "link", "set", name, "up")
        self.sh("ip", "-n", hub, "link", "set", "lo", "up")

    def teardown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for n in self.namespaces:
            self.sh("ip", "netns", "del", n, check=False)
        left = [l for l in self.sh("ip", "netns", "list").stdout.split("\n") if l.startswith(self.prefix)]
        self.check("namespaces deleted", not left, left)

    def finish(self, tmp):
        """Removes `tmp` when everything passed (else keeps it for a look), prints the summary, exits."""
        if not self.failures:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept", tmp)
        if self.passed == 0 and not self.failures:
            print("FAIL: no check ran")
            sys.exit(1)
        print(f"{self.passed} passed, {len(self.failures)} failed")
        sys.exit(1 if self.failures else 0)


class ThrowawayPg:
    """tests/support/throwaway_pg.sh: a PostgreSQL on a unix socket in /tmp (initdb as an unprivileged user),
    its state in the file `state`. Where PostgreSQL cannot run the test is skipped (exit 77, said so)."""
    SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support", "throwaway_pg.sh")

    def __init__(self, state):
        self.state = state

    def __call__(self, cmd):
        """start, restart or stop."""
        r = subprocess.run(["bash", self.SCRIPT, cmd, self.state], capture_output=True, text=True)
        if r.returncode == 77:
            print(r.stderr.strip())
            sys.exit(77)
        if r.returncode != 0:
            raise RuntimeError(f"throwaway_pg.sh {cmd}: {r.stderr}")

    def value(self, key):
        """PGDIR, CONNINFO, PASSWORD_FILE or PGBIN of the running instance."""
        for line in open(self.state):
            if line.startswith(key + "="):
                return line.split("=", 1)[1].strip()
