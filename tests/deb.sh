#!/usr/bin/env bash
# tests/deb.sh TARBALL WORKDIR: build the Debian package from a `make dist`
# tarball (so it proves the tarball is enough), check what is in it, run
# lintian, unpack it into a scratch root and check the installed daemon
# accepts the installed config. Run by `./build.sh check` (dpkg-buildpackage
# cannot run inside the same tree's `make check`).
set -euo pipefail
tarball=$(realpath "${1:?usage: tests/deb.sh TARBALL WORKDIR}")
work=${2:?usage: tests/deb.sh TARBALL WORKDIR}
fails=0

fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}

rm -rf "$work"
mkdir -p "$work"
work=$(realpath "$work")
tar -xzf "$tarball" -C "$work"
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'sluice-*')
[[ -n $src && -d $src/debian ]] || { echo "FAIL: no debian/ in $tarball" >&2; exit 1; }

# The suite ran already (plain, sanitized, distcheck): the package build skips it.
echo "deb: dpkg-buildpackage in $src"
if ! (cd "$src" && DEB_BUILD_OPTIONS="nocheck parallel=${JOBS:-2}" DEB_BUILD_PROFILES=nocheck \
        dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1); then
    tail -n 60 "$work/build.log" >&2
    echo "FAIL: dpkg-buildpackage (log: $work/build.log)" >&2
    exit 1
fi
deb=$(find "$work" -maxdepth 1 -name 'sluice_*.deb' ! -name '*dbgsym*')
[[ -f $deb ]] || { echo "FAIL: no sluice_*.deb in $work" >&2; exit 1; }
echo "deb: built $(basename "$deb")"

# ---- contents ----
dpkg-deb -c "$deb" | awk '{ print $6 }' >"$work/contents"
for path in ./usr/sbin/sluiced ./usr/bin/sluice ./lib/systemd/system/sluiced.service \
    ./lib/systemd/system/sluiced@.service ./lib/systemd/system/sluice-takeover@.service \
    ./etc/sluice/sluiced.yaml ./usr/share/man/man8/sluiced.8.gz \
    ./usr/share/man/man1/sluice.1.gz ./usr/share/man/man5/sluiced.yaml.5.gz \
    ./usr/share/doc/sluice/README.md ./usr/share/doc/sluice/copyright \
    ./usr/share/doc/sluice/grafana/sluice.json ./usr/lib/python3/dist-packages/sluice.py; do
    grep -qxF "$path" "$work/contents" || fail "$(basename "$deb") lacks $path"
done
# Nothing of the build's own (static library, tests) gets in.
grep -E '\.(a|la|so)$|/tests?/' "$work/contents" && fail "build leftovers in the package"

# ---- control: the conffile, and maintainer scripts that start nothing ----
mkdir -p "$work/control"
dpkg-deb -e "$deb" "$work/control"
grep -qxF /etc/sluice/sluiced.yaml "$work/control/conffiles" ||
    fail "/etc/sluice/sluiced.yaml is not a conffile"
for script in "$work"/control/{preinst,postinst,prerm,postrm}; do
    [[ -f $script ]] || continue
    # debhelper's code for a --no-enable --no-start unit starts nothing and
    # enables only what the admin had enabled before (under `was-enabled`).
    bad=$(awk 'BEGIN { guard = -100 } /was-enabled/ { guard = NR }
        /deb-systemd-invoke +(start|restart)|systemctl +(enable|start|restart)/ ||
        (/deb-systemd-helper +enable/ && NR - guard > 2) { print FILENAME ":" NR ": " $0 }' "$script")
    [[ -z $bad ]] || fail "a maintainer script enables or starts a service: $bad"
done

# ---- lintian: no errors (the kept warnings are listed in docs/packaging.md) ----
changes=$(find "$work" -maxdepth 1 -name 'sluice_*.changes')
[[ -f $changes ]] || fail "no sluice_*.changes for lintian"
if lintian --fail-on error --tag-display-limit 0 "$changes" >"$work/lintian.log" 2>&1; then
    echo "deb: lintian: $(grep -c '^E:' "$work/lintian.log" || true) errors," \
        "$(grep -c '^W:' "$work/lintian.log" || true) warnings"
else
    cat "$work/lintian.log" >&2
    fail "lintian reports errors"
fi
grep '^[EW]:' "$work/lintian.log" || true

# ---- install into a scratch root and run the installed daemon ----
root=$work/root
dpkg -x "$deb" "$root"
if ! out=$("$root/usr/sbin/sluiced" -t -c "$root/etc/sluice/sluiced.yaml" 2>&1); then
    fail "installed sluiced -t rejects the installed config: $out"
fi
"$root/usr/bin/sluice" --version | grep -q '^sluice ' || fail "installed sluice --version"
PYTHONPATH=$root/usr/lib/python3/dist-packages PYTHONDONTWRITEBYTECODE=1 \
    python3 -c 'import sluice, sys; sys.exit(not sluice.__file__.startswith(sys.argv[1]))' "$root" ||
    fail "the installed sluice.py does not import"
grep -qx 'ExecStart=/usr/sbin/sluiced -c /etc/sluice/sluiced.yaml' \
    "$root/lib/systemd/system/sluiced.service" || fail "the unit does not run /usr/sbin/sluiced"
warn=$(LC_ALL=C.UTF-8 man --warnings -l "$root/usr/share/man/man8/sluiced.8.gz" 2>&1 >/dev/null)
[[ -z $warn ]] || fail "man -l sluiced.8.gz warns: $warn"

((fails == 0)) || { echo "deb: $fails failures" >&2; exit 1; }
echo "deb: package contents, conffile, scripts, lintian and the installed sluiced -t all good"
