#!/usr/bin/env bash
# Builds fleetconf_<version>_amd64.deb from a checkout, reproducibly: the same commit built anywhere, at any
# time, gives the same bytes. SOURCE_DATE_EPOCH is the commit's time (unless set); paths into the build are
# mapped away (-ffile-prefix-map); every file in the package gets that time and root ownership; man pages are
# gzipped without names or times; dpkg-deb sorts the archive and clamps its times to SOURCE_DATE_EPOCH.
#
# usage: packaging/deb.sh SOURCE_DIR OUT_DIR      (needs: cmake, ninja, g++, help2man, dpkg-dev)
set -euo pipefail
src=$(cd "${1:?usage: deb.sh SOURCE_DIR OUT_DIR}" && pwd)
out=$(mkdir -p "${2:?usage: deb.sh SOURCE_DIR OUT_DIR}" && cd "$2" && pwd)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$src" log -1 --format=%ct)}
export TZ=UTC LC_ALL=C.UTF-8
umask 022
commit=$(git -C "$src" rev-parse --short=12 HEAD)
version=$(sed -n 's/^project(fleetconf VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
work=$(mktemp -d /tmp/fleetconf-deb-XXXXXX)
trap 'rm -rf "$work"' EXIT
build=$work/build stage=$work/stage

# The binary only, Release, without ccache or precompiled headers (nothing cached from elsewhere).
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLEETCONF_TESTS=OFF -DFLEETCONF_PCH=OFF \
  -DCMAKE_CXX_COMPILER_LAUNCHER= -DFLEETCONF_CCACHE=FLEETCONF_CCACHE-NOTFOUND -DFLEETCONF_COMMIT="$commit" \
  -DCMAKE_CXX_FLAGS="-ffile-prefix-map=$src=. -ffile-prefix-map=$build=." >&2
cmake --build "$build" --target fleetconf >&2

install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/usr/share/doc/fleetconf/examples" \
  "$stage/usr/share/man/man1"
install -m 0755 "$build/cli/fleetconf" "$stage/usr/bin/fleetconf"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/usr/bin/fleetconf"
# The units from examples/, for the packaged binary's path.
for u in "$src"/examples/systemd/*.service; do
  sed -e 's|/usr/local/bin/fleetconf|/usr/bin/fleetconf|g' -e 's|/usr/local/share/doc/fleetconf|/usr/share/doc/fleetconf|g' "$u" \
    > "$stage/lib/systemd/system/$(basename "$u")"
  chmod 0644 "$stage/lib/systemd/system/$(basename "$u")"
done
install -m 0644 "$src/examples/site.json" "$stage/usr/share/doc/fleetconf/examples/site.json"
install -m 0644 "$src/README.md" "$stage/usr/share/doc/fleetconf/README.md"
cat > "$stage/usr/share/doc/fleetconf/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: fleetconf
Source: fleetconf, commit $commit

Files: *
Copyright: the fleetconf authors
License: see the source repository
COPYRIGHT
printf 'fleetconf (%s) unstable; urgency=medium\n\n  * Built from commit %s.\n\n -- fleetconf <fleetconf@localhost>  %s\n' \
  "$version" "$commit" "$(date -u -d "@$SOURCE_DATE_EPOCH" -R)" | gzip -9n > "$stage/usr/share/doc/fleetconf/changelog.Debian.gz"
# Man pages from --help (help2man reads SOURCE_DATE_EPOCH for its date).
help2man --no-info --no-discard-stderr --name "configuration services for a unikernel fleet" \
  --version-string "$version" "$stage/usr/bin/fleetconf" | gzip -9n > "$stage/usr/share/man/man1/fleetconf.1.gz"

# Dependencies from the binary's libraries (dpkg-shlibdeps wants a debian/control next to it).
mkdir -p "$work/shlibs/debian"
printf 'Source: fleetconf\n\nPackage: fleetconf\nArchitecture: amd64\n' > "$work/shlibs/debian/control"
depends=$(cd "$work/shlibs" && dpkg-shlibdeps -O "$stage/usr/bin/fleetconf" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
installed=$(du -sk --apparent-size "$stage/usr" "$stage/lib" | awk '{s += $1} END {print s}')
cat > "$stage/DEBIAN/control" <<CONTROL
Package: fleetconf
Version: $version
Architecture: amd64
Maintainer: fleetconf <fleetconf@localhost>
Installed-Size: $installed
Depends: $depends, adduser
Section: net
Priority: optional
Homepage: https://github.com/fleetconf/fleetconf
Description: run-time configuration services for MirageOS unikernel fleets
 One site file describes the fleet; fleetconf serves each unikernel its address and site options
 (DHCPv4), its configuration repository (a git host over git://, HTTP(S) and SSH) and its proxy routes
 (a crash-safe store on a block device, edited over an authenticated control socket).
 Built from commit $commit.
CONTROL
cat > "$stage/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if ! getent passwd fleetconf >/dev/null; then
    adduser --system --group --home /var/lib/fleetconf --no-create-home --quiet fleetconf
  fi
  install -d -o fleetconf -g fleetconf -m 0750 /var/lib/fleetconf
  install -d -m 0755 /etc/fleetconf
  if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
fi
exit 0
POSTINST
cat > "$stage/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
# The data in /var/lib/fleetconf and the fleetconf user stay: leases, repositories and keys are the operator's.
exit 0
POSTRM
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/postrm"
(cd "$stage" && find usr lib -type f -print0 | sort -z | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"
find "$stage" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
deb=$out/fleetconf_${version}_amd64.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
echo "$deb"
