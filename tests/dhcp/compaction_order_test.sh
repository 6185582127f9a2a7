#!/usr/bin/env bash
# Compaction's crash safety across a power loss is the order of its syscalls: the new journal is written
# to a temporary file and fsynced, renamed over the old one, and then the directory is fsynced (so the
# rename itself is durable). Runs one compaction of the unit-test binary under strace and checks that
# order on the trace.
# usage: compaction_order_test.sh FLEETCONF_TESTS_BINARY
set -euo pipefail
bin=${1:?usage: compaction_order_test.sh FLEETCONF_TESTS_BINARY}
if ! command -v strace >/dev/null; then
  if [ -n "${CI:-}" ]; then echo "FAIL: strace is missing (./dev deps installs it)"; exit 1; fi
  echo "SKIP: strace is not installed (CI installs it)"; exit 77
fi
dir=$(mktemp -d /tmp/fleetconf-compaction-XXXXXX)
trap 'rm -rf "$dir"' EXIT
export FLEETCONF_COMPACTION_DIR=$dir
# LeakSanitizer cannot run under ptrace (the sanitizer build would abort at exit); the rest of the sanitizer
# suite checks leaks, this test only the order of the syscalls.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
# strace fails under some sandboxes (no ptrace): say so rather than pass.
if ! strace -f -qq -e trace=openat,fsync,fdatasync,rename,renameat,renameat2 -o "$dir/trace" \
     "$bin" "[.compaction-syscalls]" >"$dir/out" 2>&1; then
  cat "$dir/out" "$dir/trace" 2>/dev/null | tail -20
  if grep -q "PTRACE_TRACEME\|Operation not permitted" "$dir/trace" "$dir/out" 2>/dev/null && [ -z "${CI:-}" ]; then
    echo "SKIP: ptrace is not allowed here (CI allows it)"; exit 77
  fi
  echo "FAIL: the compaction run failed"; exit 1
fi
python3 - "$dir" <<'PY'
import re, sys
d = sys.argv[1]
lines = open(f"{d}/trace").read().splitlines()
fds, events = {}, []
for l in lines:
    m = re.search(r'openat\(AT_FDCWD, "([^"]+)", ([^)]*)\)\s+=\s+(\d+)', l)
    if m:
        fds[m.group(3)] = m.group(1)
        continue
    m = re.search(r'\b(fsync|fdatasync)\((\d+)\)\s+=\s+0', l)
    if m:
        events.append((m.group(1), fds.get(m.group(2), "?")))
        continue
    m = re.search(r'\brename(?:at2?)?\((?:AT_FDCWD, )?"([^"]+)", (?:AT_FDCWD, )?"([^"]+)"', l)
    if m:
        events.append(("rename", m.group(1) + " -> " + m.group(2)))
tmp, journal = f"{d}/.leases.journal.tmp", f"{d}/leases.journal"
want = [("fsync", tmp), ("rename", f"{tmp} -> {journal}"), ("fsync", d)]
pos, got = 0, []
for e in events:
    if pos < len(want) and e == want[pos]:
        got.append(e)
        pos += 1
print("syscalls seen:", *events, sep="\n  ")
if pos != len(want):
    print(f"FAIL: expected in order {want}, matched only {got}")
    sys.exit(1)
# After the rename, the journal is reopened and its preallocation synced before anything else is promised.
after = events[events.index(("rename", f"{tmp} -> {journal}")):]
if ("fsync", journal) not in after:
    print("FAIL: the reopened journal is never fsynced after the rename")
    sys.exit(1)
print("3 passed: fsync(temporary), rename over the journal, fsync(directory); the reopened journal synced")
PY
