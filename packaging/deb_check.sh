#!/usr/bin/env bash
# The package is reproducible and installs: two clean clones of the current commit in different folders,
# built at different times with the same SOURCE_DATE_EPOCH, must give byte-identical .deb files; the package
# then installs (dpkg -i), `fleetconf --version` names the commit, `systemd-analyze verify` accepts the
# installed units, and it removes cleanly (dpkg -r). Needs root for dpkg (CI is root; skipped otherwise).
# usage: packaging/deb_check.sh SOURCE_DIR
set -euo pipefail
src=$(cd "${1:?usage: deb_check.sh SOURCE_DIR}" && pwd)
if [ "$(id -u)" -ne 0 ]; then
  if [ -n "${CI:-}" ]; then echo "FAIL: needs root for dpkg -i, and CI is root"; exit 1; fi
  echo "SKIP: needs root for dpkg -i (CI runs it)"; exit 77
fi
commit=$(git -C "$src" rev-parse HEAD)
export SOURCE_DATE_EPOCH=$(git -C "$src" log -1 --format=%ct)
work=$(mktemp -d /tmp/fleetconf-debcheck-XXXXXX)
trap 'rm -rf "$work"' EXIT
passed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; exit 1; }
for side in a b; do
  git clone -q --no-local "$src" "$work/checkout-$side-$RANDOM"
done
set -- "$work"/checkout-a-* "$work"/checkout-b-*
git -C "$1" checkout -q "$commit"
git -C "$2" checkout -q "$commit"
deb_a=$("$1/packaging/deb.sh" "$1" "$work/out-a")
sleep 2  # a different wall-clock time for the second build
deb_b=$(umask 027; "$2/packaging/deb.sh" "$2" "$work/out-b")
sha_a=$(sha256sum "$deb_a" | cut -d' ' -f1)
sha_b=$(sha256sum "$deb_b" | cut -d' ' -f1)
echo "     $(basename "$deb_a"): $sha_a (built in $1)"
echo "     $(basename "$deb_b"): $sha_b (built in $2)"
if [ "$sha_a" = "$sha_b" ]; then
  ok "two builds from two checkouts, at two times, are byte-identical"
else
  if command -v diffoscope >/dev/null; then diffoscope "$deb_a" "$deb_b" | head -n 60 || true; fi
  fail "the two builds differ"
fi
dpkg -i "$deb_a" >/dev/null
trap 'dpkg -r fleetconf >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
v=$(fleetconf --version)
[ "$v" = "fleetconf $(sed -n 's/^project(fleetconf VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt") (commit ${commit:0:12})" ] \
  && ok "installed: $v" || fail "fleetconf --version says: $v"
getent passwd fleetconf >/dev/null && [ -d /var/lib/fleetconf ] && ok "the package made the fleetconf user and /var/lib/fleetconf" \
  || fail "no fleetconf user or data directory after install"
[ -f /usr/share/man/man1/fleetconf.1.gz ] && zcat /usr/share/man/man1/fleetconf.1.gz | grep -q "unikernel" \
  && ok "man page fleetconf(1) installed" || fail "no man page"
out=$(systemd-analyze verify /lib/systemd/system/fleetconf.service /lib/systemd/system/fleetconf-block@.service 2>&1 \
      | grep -v -i "ignoring\|is not executable\|Failed to resolve" || true)
if [ -z "$out" ]; then ok "systemd-analyze verify accepts the installed units"; else echo "$out"; fail "systemd-analyze verify"; fi
dpkg -r fleetconf >/dev/null
[ ! -e /usr/bin/fleetconf ] && ok "dpkg -r removes it" || fail "/usr/bin/fleetconf still there after dpkg -r"
echo "$passed passed, 0 failed"
