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
