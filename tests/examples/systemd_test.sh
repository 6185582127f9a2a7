#!/usr/bin/env bash
# The example systemd units parse (systemd-analyze verify), with the built binary in place of
# /usr/local/bin/fleetconf, and the command lines they run are accepted by that binary.
set -eu
FC=$1; SRC=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for unit in "$SRC"/examples/systemd/*.service; do
  name=$(basename "$unit")
  [ "$name" = "fleetconf-block@.service" ] && name=fleetconf-block@proxy.service
  sed "s|/usr/local/bin/fleetconf|$FC|g" "$unit" > "$tmp/$name"
  systemd-analyze verify "$tmp/$name"
  echo "ok   $name verifies"
done
# The options the units pass exist: --help of each command line succeeds.
"$FC" --log-format json serve --help >/dev/null
"$FC" block serve --help | grep -q -- --key-file
"$FC" reload --help >/dev/null
"$FC" site check "$SRC/examples/site.json" >/dev/null
echo "ok   the units' command lines are accepted"

# Type=notify: READY=1 arrives on $NOTIFY_SOCKET once the sockets are bound; the block template's
# --create-size makes and formats the image on the first start (never an existing one).
"$FC" block keygen "$tmp/keys" >/dev/null
cat > "$tmp/notify.py" <<'PY'
import os, socket, subprocess, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(20)
p = subprocess.Popen(sys.argv[3:], env=dict(os.environ, NOTIFY_SOCKET=path), stderr=subprocess.DEVNULL)
try:
    msg = s.recv(4096).decode()
finally:
    p.terminate()
    p.wait(timeout=20)
open(out, "w").write(msg)
PY
python3 "$tmp/notify.py" "$tmp/n1" "$tmp/msg1" "$FC" block serve "$tmp/new.img" --create-size 1048576 --key-file "$tmp/keys" --listen 127.0.0.1:0
grep -q "^READY=1" "$tmp/msg1"
echo "ok   block serve sends READY=1 to NOTIFY_SOCKET"
"$FC" block fsck "$tmp/new.img" >/dev/null
echo "ok   block serve --create-size created and formatted the image"
gen_before=$("$FC" block dump "$tmp/new.img" --json | wc -c)
python3 "$tmp/notify.py" "$tmp/n2" "$tmp/msg2" "$FC" block serve "$tmp/new.img" --create-size 1048576 --key-file "$tmp/keys" --listen 127.0.0.1:0
test "$("$FC" block dump "$tmp/new.img" --json | wc -c)" = "$gen_before"
echo "ok   an existing image is served as it is"
if "$FC" block serve "$tmp/missing.img" --key-file "$tmp/keys" 2>"$tmp/err"; then exit 1; fi
grep -q "does not exist" "$tmp/err"
echo "ok   without --create-size a missing device is refused with the reason"
cat > "$tmp/site.json" <<JSON
{"networks": [{"name": "br0", "subnet": "10.0.0.0/24", "gateway": "10.0.0.1"}],
 "unikernels": [{"name": "proxy", "network": "br0", "address": "10.0.0.2", "dhcp": false, "block": {}}],
 "services": {"data_dir": "$tmp/data", "status": "127.0.0.1:0", "dhcp": {"enabled": false}, "git": {"enabled": false},
              "block": {"listen": "127.0.0.1:0"}}}
JSON
python3 "$tmp/notify.py" "$tmp/n3" "$tmp/msg3" "$FC" serve "$tmp/site.json"
grep -q "^READY=1" "$tmp/msg3" && grep -q "STATUS=1 service(s) running" "$tmp/msg3"
echo "ok   serve sends READY=1 (and its status) once its services run"
