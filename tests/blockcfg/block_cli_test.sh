#!/usr/bin/env bash
# fleetconf block end to end on loopback: keygen, format, serve, edits, kill -9 during a stream of
# updates, restart: every update acknowledged before the kill is on the device.
set -u
FC=$1
fail=0 passed=0 failed=0
check() { local d=$1; shift; if "$@"; then echo "ok   $d"; passed=$((passed + 1)); else echo "FAIL $d"; fail=1; failed=$((failed + 1)); fi; }
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
port=""  # learned from the server's log at each start: it listens on port 0 (tests/README.md)
C=()

"$FC" block keygen "$tmp/keys" >/dev/null
check "key file is mode 600" test "$(stat -c %a "$tmp/keys")" = 600
"$FC" block format "$tmp/d.img" --size 1048576 >/dev/null
check "format refuses a formatted device" bash -c "! '$FC' block format '$tmp/d.img' 2>/dev/null"

# Waits (at most 10 s) until PATTERN occurs at least N times in the server log: the event, not a fixed time.
wait_log() { for _ in $(seq 100); do [ "$(grep -c "$1" "$tmp/log")" -ge "$2" ] && return 0; sleep 0.1; done; return 1; }

start() {
  local mark
  mark=$(wc -l <"$tmp/log" 2>/dev/null || echo 0)
  "$FC" block serve "$tmp/d.img" --key-file "$tmp/keys" --listen "127.0.0.1:0" 2>>"$tmp/log" &
  pid=$!
  for _ in $(seq 100); do
    port=$(tail -n +$((mark + 1)) "$tmp/log" | sed -n 's/.*control socket listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' | head -1)
    if [ -n "$port" ]; then
      C=(--connect "127.0.0.1:$port" --key-file "$tmp/keys")
      "$FC" block status "${C[@]}" >/dev/null 2>&1 && return 0
    fi
    sleep 0.1
  done
  echo "server did not start"; cat "$tmp/log"; return 1
}
start || exit 1
check "add" "$FC" block add www.example.org 10.0.0.5 443 "${C[@]}"
out=$("$FC" block add www.example.org 10.0.0.5 443 "${C[@]}" 2>&1); rc=$?
check "add of an existing route exits 1 with EXISTS" test $rc -eq 1 -a -n "$(grep EXISTS <<<"$out")"
out=$("$FC" block upsert a.example.org 10.0.0.6 80 --expect-generation 1 "${C[@]}" 2>&1); rc=$?
check "stale --expect-generation gives CONFLICT" grep -q CONFLICT <<<"$out"
check "json list" bash -c "'$FC' block list --json ${C[*]} | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"routes\"][0][\"host\"]==\"www.example.org\"'"
# History (issue 23): ISO 8601 times in UTC, who (the key id) and what changed, newest first.
hist=$("$FC" block history "${C[@]}")
check "history: an ISO time, the key id and the change" grep -Eq "^[0-9]+ +20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z +[0-9]+ +.*admin.*add www.example.org -> 10.0.0.5:443" <<<"$hist"
gen=$("$FC" block history --json "${C[@]}" | python3 -c 'import json,sys; print(max(g["generation"] for g in json.load(sys.stdin)["generations"]))')
out=$("$FC" block dump "$tmp/d.img" --generation "$gen" 2>"$tmp/dumperr"); rc=$?
check "dump --generation of a served device works, read-only (exit 0, the route listed)" test $rc -eq 0 -a -n "$(grep www.example.org <<<"$out")"
check "and says that it read next to the running server" grep -q "served by a running fleetconf" "$tmp/dumperr"
bad=$(mktemp -p "$tmp"); printf 'admin %s\n' "$(head -c 32 /dev/urandom | base64)" >"$bad"; chmod 600 "$bad"
out=$("$FC" block list --connect "127.0.0.1:$port" --key-file "$bad" 2>&1); rc=$?
check "a wrong key is refused" test $rc -ne 0
check "the refusal is logged" grep -q "authentication failed" "$tmp/log"
chmod 644 "$bad"
out=$("$FC" block list --connect "127.0.0.1:$port" --key-file "$bad" 2>&1)
check "a world-readable key file is refused" grep -q "chmod 600" <<<"$out"

# Key rotation: add a second key, SIGHUP, use it; a broken key file on SIGHUP keeps the old keys.
printf 'next %s\n' "$(head -c 32 /dev/urandom | base64 -w0)" >>"$tmp/keys"
check "the new key is refused before the reload" bash -c "! '$FC' block list --connect 127.0.0.1:$port --key-file '$tmp/keys' --key-id next >/dev/null 2>&1"
kill -HUP "$pid"; wait_log "reloaded keys from" 1
check "after SIGHUP the new key works" "$FC" block list --connect "127.0.0.1:$port" --key-file "$tmp/keys" --key-id next
cp "$tmp/keys" "$tmp/keys.good"; echo "broken line" >>"$tmp/keys"
kill -HUP "$pid"; wait_log "key reload refused" 1
cp "$tmp/keys.good" "$tmp/keys"
check "a broken key file on SIGHUP keeps the keys" "$FC" block list --connect "127.0.0.1:$port" --key-file "$tmp/keys" --key-id admin
check "the refused reload is logged" grep -q "key reload refused" "$tmp/log"

# A stream of updates, kill -9 in the middle, restart: every acknowledged one is present.
: >"$tmp/acked"
( for i in $(seq 1 400); do
    "$FC" block upsert "h$i.example.org" 10.0.1.1 $((1000 + i)) "${C[@]}" >/dev/null 2>&1 && echo "$i" >>"$tmp/acked"
  done ) &
writer=$!
# The kill lands mid-stream: after 20 acknowledged updates, while the writer still has hundreds to go.
for _ in $(seq 300); do [ "$(wc -l <"$tmp/acked")" -ge 20 ] && break; sleep 0.05; done
kill -9 "$pid"; wait "$pid" 2>/dev/null; pid=""
wait "$writer" 2>/dev/null
n=$(wc -l <"$tmp/acked")
check "some updates were acknowledged before the kill ($n)" test "$n" -ge 20
check "the kill landed mid-stream: updates after it were refused ($n of 400 acknowledged)" test "$n" -lt 400
"$FC" block dump --json "$tmp/d.img" >"$tmp/dump.json"
missing=$(python3 - "$tmp/acked" "$tmp/dump.json" <<'PY'
import json, sys
acked = [int(x) for x in open(sys.argv[1]).read().split()]
routes = {r["host"]: r["port"] for r in json.load(open(sys.argv[2]))["routes"]}
print(sum(1 for i in acked if routes.get(f"h{i}.example.org") != 1000 + i))
PY
)
check "every acknowledged update survived kill -9 (missing: $missing)" test "$missing" = 0
check "fsck after the crash" "$FC" block fsck "$tmp/d.img"
start || exit 1
check "the restarted server serves them" bash -c "'$FC' block get h1.example.org ${C[*]} >/dev/null"
kill -TERM "$pid"; wait "$pid"; rc=$?; pid=""
check "SIGTERM stops the server cleanly" test $rc -eq 0
"$FC" block export "$tmp/d.img" >"$tmp/x.json"; rc=$?
check "export writes the routes (exit 0, h1.example.org -> 10.0.1.1:1001 among them)" bash -c "test $rc -eq 0 && python3 -c '
import json, sys
r = {x[\"host\"]: (x[\"address\"], x[\"port\"]) for x in json.load(open(sys.argv[1]))[\"routes\"]}
assert r[\"h1.example.org\"] == (\"10.0.1.1\", 1001), r.get(\"h1.example.org\")
assert len(r) >= $n, len(r)
' '$tmp/x.json'"
"$FC" block format --force "$tmp/d.img" >/dev/null; rc=$?
check "format --force exits 0" test $rc -eq 0
check "the formatted device holds no route" bash -c "'$FC' block export '$tmp/d.img' | python3 -c 'import json,sys; assert not json.load(sys.stdin)[\"routes\"]'"
"$FC" block import "$tmp/d.img" "$tmp/x.json" >/dev/null; rc=$?
check "import exits 0" test $rc -eq 0
check "export, format --force, import round trip" cmp -s <("$FC" block export "$tmp/d.img") "$tmp/x.json"
echo "$passed passed, $failed failed"
exit $fail
