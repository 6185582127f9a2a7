#!/usr/bin/env bash
# Installs fleetconf into a temporary prefix and builds examples/consumer against it with find_package.
set -eu
BUILD=$1; SRC=$2; CXX=$3; FLAGS=${4:-}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cmake --install "$BUILD" --prefix "$tmp/prefix" >/dev/null
cmake -S "$SRC/examples/consumer" -B "$tmp/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_CXX_COMPILER="$CXX" \
  -DCMAKE_CXX_FLAGS="$FLAGS" -DCMAKE_EXE_LINKER_FLAGS="$FLAGS" >/dev/null
cmake --build "$tmp/build" >/dev/null
out=$("$tmp/build/consumer" "$SRC/examples/site.json" web)
echo "$out"
test "$out" = "web 00:80:41:88:19:f5"
# The embedded block store: a new image, one durable change, read back; a second run sees the first.
out=$("$tmp/build/consumer" --block "$tmp/proxy.img" www.example.org 10.0.0.5 443)
echo "$out"
test "$out" = "www.example.org 10.0.0.5:443
generation 2"
out=$("$tmp/build/consumer" --block "$tmp/proxy.img" cal.example.org 10.0.0.6 8443)
test "$out" = "cal.example.org 10.0.0.6:8443
www.example.org 10.0.0.5:443
generation 3"
