#!/usr/bin/env bash
# Every script in bench/ and tests/ parses its arguments with argparse: --help explains and exits 0 without
# starting anything, an unknown flag fails with exit 2 (issue 16.14). Modules that are only imported
# (nstest.py, dhcp_packets.py, bench/netns.py) are skipped.
set -u
SRC=$1
fail=0 n=0
while IFS= read -r f; do
    case $(basename "$f") in nstest.py|dhcp_packets.py|netns.py) continue ;; esac
    n=$((n + 1))
    out=$(cd "$(dirname "$f")" && timeout 20 python3 "$(basename "$f")" --help 2>&1); rc=$?
    if [ $rc -ne 0 ] || ! grep -q '^usage: ' <<<"$out"; then echo "FAIL $f --help: exit $rc: $(head -c 300 <<<"$out")"; fail=1
    else echo "ok   $f --help"; fi
    out=$(cd "$(dirname "$f")" && timeout 20 python3 "$(basename "$f")" --no-such-flag x y z 2>&1); rc=$?
    if [ $rc -ne 2 ]; then echo "FAIL $f --no-such-flag: exit $rc (want 2): $(head -c 300 <<<"$out")"; fail=1
    else echo "ok   $f --no-such-flag: exit 2"; fi
done < <(find "$SRC/bench" "$SRC/tests" -name '*.py' -not -path '*/__pycache__/*' | sort)
[ $n -ge 10 ] || { echo "FAIL only $n scripts found"; fail=1; }
[ $fail -eq 0 ] && echo "$((n * 2)) passed, 0 failed"
exit $fail
