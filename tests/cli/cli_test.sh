#!/usr/bin/env bash
# The fleetconf command line against the example site and the invalid fixtures.
set -u
FC=$1
SRC=$2
fail=0 passed=0 failed=0
check() { # description, command...
    local desc=$1; shift
    if "$@"; then echo "ok   $desc"; passed=$((passed + 1)); else echo "FAIL $desc"; fail=1; failed=$((failed + 1)); fi
}
out=$("$FC" site check "$SRC/examples/site.json"); rc=$?
check "site check exits 0 on the example" test $rc -eq 0
check "summary line" test "$out" = "$SRC/examples/site.json: ok: site example.fleet, 1 network, 4 unikernels (3 on DHCP, 3 with fixed addresses)"

err=$("$FC" site check "$SRC/tests/sites/invalid/20-many-errors.json" 2>&1 >/dev/null); rc=$?
check "site check exits 2 on errors" test $rc -eq 2
check "every error listed" test "$(echo "$err" | grep -c ': /')" -eq 4
check "error line format" grep -qx "$SRC/tests/sites/invalid/20-many-errors.json: /networks/0/pools/1: range 10.0.0.15-10.0.0.30 overlaps 10.0.0.10-10.0.0.20" <<<"$err"
check "error count line" grep -qx "$SRC/tests/sites/invalid/20-many-errors.json: 4 errors" <<<"$err"

# A number too large for a double (issue 16.15): the documented error and exit 2, not an exception.
big="$SRC/fuzz/corpus/site/number-too-large-for-a-double.json"
err=$("$FC" site check "$big" 2>&1 >/dev/null); rc=$?
check "site check: a number too large for a double exits 2" test $rc -eq 2
check "site check: ... with FILE: invalid JSON: number overflow" grep -qx "$big: invalid JSON: number overflow parsing '8888E888888888888'" <<<"$err"

json=$("$FC" site check --json "$SRC/tests/sites/invalid/03-reversed-pool.json"); rc=$?
check "json errors exit 2" test $rc -eq 2
check "json errors content" grep -q '"pointer":"/networks/0/pools/0"' <<<"$json"

# The MAC derivation, checked against md5sum computed here.
h=$(printf 'br-fleetcalendar' | md5sum | cut -c1-6)
want="00:80:41:${h:0:2}:${h:2:2}:${h:4:2}"
show=$("$FC" site show "$SRC/examples/site.json")
check "site show derives the Albatross MAC ($want)" grep -q "^calendar .*${want}\*" <<<"$show"

args=$("$FC" bootargs resolver --site "$SRC/examples/site.json" | tail -n 1)
check "bootargs static unikernel" test "$args" = "--ipv4=10.42.0.53/24 --ipv4-gateway=10.42.0.1 --syslog=10.42.0.1 --monitor=10.42.0.1 --dns-upstream=10.42.0.1"
j=$("$FC" bootargs web --site "$SRC/examples/site.json" --json)
check "bootargs --json" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["tender"][1]=="--net-mac:service=00:80:41:88:19:f5", d' "$j"
# A unikernel that reads the configuration URI from DHCP (option 224) needs only its credential.
args=$(FLEETCONF_GIT_TOKEN=t0k "$FC" bootargs web --site "$SRC/examples/site.json" --mode dhcp-config | tail -n 1)
check "bootargs --mode dhcp-config: only the credential" test "$args" = "--git-token=t0k"
out=$("$FC" bootargs web --site "$SRC/examples/site.json")
check "bootargs lists the other modes as comments" grep -q "^# mode dhcp-config: --git-token=TOKEN$" <<<"$out"
"$FC" bootargs resolver --site "$SRC/examples/site.json" --mode dhcp >/dev/null 2>&1; rc=$?
check "bootargs: a mode the unikernel cannot use exits 2" test $rc -eq 2
"$FC" bootargs nosuch --site "$SRC/examples/site.json" >/dev/null 2>&1; rc=$?
check "bootargs unknown name exits 2" test $rc -eq 2

"$FC" --help >/dev/null; check "--help" test $? -eq 0
for sub in site "site check" bootargs serve reload git "git put" "git token"; do
    # shellcheck disable=SC2086
    "$FC" $sub --help | grep -q -- "--help"; check "$sub --help" test $? -eq 0
done
"$FC" frobnicate >/dev/null 2>&1; check "unknown subcommand exits 2" test $? -eq 2
"$FC" --log-level loud site check "$SRC/examples/site.json" >/dev/null 2>&1; check "bad --log-level exits 2" test $? -eq 2

# serve with JSON logs: starts, reports unbuilt services, stops on SIGTERM.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# (--no-dhcp: the example's bridge exists only inside ./dev run's namespace; never bind DHCP on the host.)
# (--no-git: the example's git listener address, 10.42.0.1, also exists only there.)
"$FC" --log-format json serve "$SRC/examples/site.json" --data-dir "$tmp/data" --no-block --no-dhcp --no-git 2>"$tmp/log" &
pid=$!
for _ in $(seq 50); do grep -q 'service(s) running' "$tmp/log" && break; sleep 0.1; done
kill -TERM $pid; wait $pid; rc=$?
check "serve stops cleanly on SIGTERM" test $rc -eq 0
check "serve logs JSON lines" python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1]) if l.strip()]' "$tmp/log"
check "serve says which services are switched off" grep -q '"service":"serve".*git: disabled' "$tmp/log"

# serve runs blockcfg from the site file: device and key file created on first start, edits durable.
# Port 0 everywhere: the kernel picks free ports, and the test reads them from the log (tests/README.md).
cat >"$tmp/site.json" <<JSON
{ "networks": [ { "name": "br0", "subnet": "10.9.0.0/24" } ],
  "unikernels": [ { "name": "proxy", "network": "br0", "block": { "size": 262144 } } ],
  "services": { "data_dir": "data2", "status": "127.0.0.1:0",
                "block": { "listen": "127.0.0.1:0", "commit_mode": "checksummed" } } }
JSON
"$FC" serve "$tmp/site.json" --no-dhcp --no-git 2>"$tmp/log2" &
pid=$!
for _ in $(seq 100); do grep -q "control socket listening" "$tmp/log2" && grep -q "status on http://" "$tmp/log2" && break; sleep 0.1; done
port=$(sed -n 's/.*control socket listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/log2" | head -1)
sport=$(sed -n 's|.*status on http://127\.0\.0\.1:\([0-9]*\) .*|\1|p' "$tmp/log2" | head -1)
check "serve logs the ports it bound (port 0 in the site file)" test -n "$port" -a -n "$sport" -a "${port:-0}" != 0
check "serve created the device" test -f "$tmp/data2/block/proxy.img"
check "serve created a mode-600 key file" test "$(stat -c %a "$tmp/data2/block/keys" 2>/dev/null)" = 600
check "block add through serve" "$FC" block add www.example.org 10.9.0.5 443 --connect "127.0.0.1:$port" --key-file "$tmp/data2/block/keys"
check "GET /health on services.status: the block editor is healthy" bash -c \
    "curl -sf http://127.0.0.1:$sport/health | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"services\"][\"block\"][\"ok\"], d'"
check "GET /metrics counts the change" bash -c "curl -sf http://127.0.0.1:$sport/metrics | grep -q '^fleetconf_block_changes_total{device=\"proxy\",result=\"applied\"} 1$'"
"$FC" serve "$tmp/site.json" --no-dhcp --no-git >"$tmp/second" 2>&1; rc=$?
check "a second serve on the same data directory is refused" test $rc -eq 1
check "and says which process holds it" grep -q "another fleetconf server (pid $pid)" "$tmp/second"
out=$("$FC" reload "$tmp/site.json"); rc=$?
check "fleetconf reload signals the running serve" test $rc -eq 0
check "and prints the verdict it waited for" grep -q "pid $pid reloaded .*(reload #1): 1 networks" <<<"$out"
for _ in $(seq 30); do grep -q "control keys from" "$tmp/log2" && break; sleep 0.1; done
check "the reload is applied (site and keys)" grep -q "control keys from" "$tmp/log2"
cp "$tmp/site.json" "$tmp/broken.json"; echo '{' >>"$tmp/broken.json"
"$FC" reload "$tmp/broken.json" --data-dir "$tmp/data2" >/dev/null 2>"$tmp/err"; rc=$?
check "reload of an invalid site file exits 2 and sends nothing" test $rc -eq 2
check "naming the error" grep -q "nothing sent" "$tmp/err"
kill -HUP $pid
for _ in $(seq 100); do [ "$(grep -c "control keys from" "$tmp/log2")" -ge 2 ] && break; sleep 0.1; done
check "SIGHUP reloads the site and the keys" test "$(grep -c "control keys from" "$tmp/log2")" -ge 2
kill -TERM $pid; wait $pid; rc=$?
check "serve with blockcfg stops cleanly" test $rc -eq 0
check "the route is on the device" bash -c "'$FC' block dump '$tmp/data2/block/proxy.img' | grep -q www.example.org"
"$FC" reload "$tmp/site.json" >/dev/null 2>"$tmp/err"; rc=$?
check "reload with no server running exits 1" test $rc -eq 1
check "and says so" grep -q "no fleetconf server runs" "$tmp/err"

# --data-dir is one operation for every command (common::Site::set_data_dir): each path under the data
# directory moves with it, and nothing is made under the site file's own data_dir.
dd="$tmp/dd"; mkdir -p "$dd"
cat >"$dd/site.json" <<JSON
{ "networks": [ { "name": "br0", "subnet": "10.9.0.0/24" } ],
  "unikernels": [ { "name": "proxy", "network": "br0", "block": { "size": 262144 }, "git": {} } ],
  "services": { "data_dir": "old", "status": "off", "git": { "http": "127.0.0.1:0" },
                "block": { "listen": "127.0.0.1:0" } } }
JSON
new="$dd/new"
"$FC" git create proxy --site "$dd/site.json" --data-dir "$new" >/dev/null 2>&1
check "--data-dir: git create makes the repository under it" test -d "$new/git/repos/proxy.git"
out=$("$FC" git list --site "$dd/site.json" --data-dir "$new" --json)
check "--data-dir: git list reads it there" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d[0]["head"], d' "$out"
"$FC" git token proxy --site "$dd/site.json" --data-dir "$new" >/dev/null 2>&1
check "--data-dir: git token writes the token file under it" test -f "$new/git/tokens.json"
err=$("$FC" dhcp leases "$dd/site.json" --data-dir "$new" 2>&1 >/dev/null)
check "--data-dir: dhcp leases looks for the journal under it" grep -qF "$new/dhcp/leases.journal: no lease journal" <<<"$err"
err=$("$FC" dhcp ctl list-commands --site "$dd/site.json" --data-dir "$new" 2>&1 >/dev/null)
check "--data-dir: dhcp ctl uses the control socket under it" grep -qF "$new/dhcp/control.sock" <<<"$err"
"$FC" serve "$dd/site.json" --data-dir "$new" --no-dhcp --no-git 2>"$dd/log" &
pid=$!
for _ in $(seq 100); do grep -q "control socket listening" "$dd/log" && break; sleep 0.1; done
check "--data-dir: serve makes the block device under it" test -f "$new/block/proxy.img"
check "--data-dir: ... and the block key file" test -f "$new/block/keys"
out=$("$FC" reload "$dd/site.json" --data-dir "$new" 2>&1)
check "--data-dir: reload finds the server of that data directory" grep -q "pid $pid reloaded" <<<"$out"
kill -TERM $pid; wait $pid
check "--data-dir: nothing was made under the site file's data_dir" test ! -e "$dd/old"

echo "$passed passed, $failed failed"
exit $fail
