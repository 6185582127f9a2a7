#!/usr/bin/env bash
# `./dev run` creates its demo namespaces and deletes them again when stopped with SIGTERM or SIGINT.
set -u
BIN=$1; SRC=$2
if [ "$(id -u)" -ne 0 ] || ! ip netns list >/dev/null 2>&1; then
  if [ -n "${CI:-}" ]; then echo "FAIL: this test needs root and network namespaces, and CI has them"; exit 1; fi
  echo "SKIP: needs root and network namespaces (runs in CI)"; exit 77
fi
fail=0
for sig in TERM INT; do
  prefix="fct$$${sig:0:1}"
  state=$(mktemp -d)
  log=$state/log
  FLEETCONF_BIN=$BIN FLEETCONF_DEMO_PREFIX=$prefix FLEETCONF_DEMO_STATE=$state setsid python3 -c '
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background job of a script starts with SIGINT ignored
os.execv(sys.argv[1], sys.argv[1:])' "$SRC/dev" run >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q "demo is running" "$log" && break; sleep 0.1; done
  if ! ip netns list | grep -q "^$prefix-host" || ! ip netns list | grep -q "^$prefix-fleet"; then
    echo "FAIL($sig): namespaces were not created"; cat "$log"; fail=1
  fi
  ip -n "$prefix-host" link show br-fleet >/dev/null 2>&1 || { echo "FAIL($sig): no bridge in the host namespace"; fail=1; }
  kill -"$sig" "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then echo "FAIL($sig): dev run did not stop"; kill -KILL -- -"$pid"; fail=1; fi
  if ip netns list | grep -q "^$prefix-"; then
    echo "FAIL($sig): namespaces left behind:"; ip netns list | grep "^$prefix-"; fail=1
    ip netns del "$prefix-host" 2>/dev/null; ip netns del "$prefix-fleet" 2>/dev/null
  fi
  grep -q "namespaces $prefix-host and $prefix-fleet deleted" "$log" || { echo "FAIL($sig): no stop message"; cat "$log"; fail=1; }
  pgrep -f "serve $SRC/examples/site.json --data-dir $state/data" >/dev/null && { echo "FAIL($sig): serve still running"; fail=1; }
  [ $fail -eq 0 ] && echo "ok   SIG$sig: namespaces created, then removed"
  rm -rf "$state"
done
# A server that cannot start: dev run fails, and still deletes its namespaces.
prefix="fct$$E"
state=$(mktemp -d)
if FLEETCONF_BIN=/nonexistent FLEETCONF_DEMO_PREFIX=$prefix FLEETCONF_DEMO_STATE=$state "$SRC/dev" run >"$state/log" 2>&1; then
  echo "FAIL(early): dev run succeeded with a missing binary"; fail=1
fi
if ip netns list | grep -q "^$prefix-"; then
  echo "FAIL(early): namespaces left behind after a failed start"; fail=1
  ip netns del "$prefix-host" 2>/dev/null; ip netns del "$prefix-fleet" 2>/dev/null
else
  echo "ok   failed start: namespaces removed"
fi
rm -rf "$state"
exit $fail
