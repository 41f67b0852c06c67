#!/usr/bin/env bash
# build.sh: from a fresh Debian clone to a built sluice, or to a tested one.
#
#   ./build.sh          install what is missing, build into build/
#   ./build.sh check    the same, then the whole test suite twice: plain
#                       (build/) and under ASan+UBSan (build-san/), the
#                       fuzzers, `make distcheck`, and the Debian package
#   ./build.sh soak     the long soak and fuzz runs (not part of check);
#                       check runs each fuzzer for 30 s (FUZZ_SECONDS)
#
# Idempotent: a second run installs nothing and only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")"
top=$PWD
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}

build_pkgs=(build-essential autoconf automake libtool pkg-config
            libevent-dev libhiredis-dev libyaml-dev libssl-dev check)
test_pkgs=(redis-server redis-sentinel iputils-arping beanstalkd valgrind clang libclang-rt-14-dev systemd openssl prometheus
           nodejs iproute2
           groff dpkg-dev debhelper fakeroot lintian tmux python3 gnuplot-nox)

# fivebeans' suite (tests/fivebeans.sh) needs Node and npm. Debian's npm
# package unless the installed nodejs brings its own (NodeSource's provides
# and conflicts with it, so asking apt for npm there would fail).
command -v npm >/dev/null 2>&1 || test_pkgs+=(npm)

need_pkgs() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    echo "build.sh: installing ${missing[*]}" >&2
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# configure_in DIR [configure args...]: an out-of-tree build, configured once.
configure_in() {
    local dir=$1
    shift
    if [[ ! -x configure || configure.ac -nt configure || Makefile.am -nt configure ||
          tests/tests.am -nt configure ]]; then
        autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
    fi
    mkdir -p "$dir"
    if [[ ! -f $dir/Makefile || configure -nt $dir/Makefile ]]; then
        (cd "$dir" && "$top/configure" --enable-werror "$@" >/dev/null)
    fi
}

build() {
    need_pkgs "${build_pkgs[@]}"
    configure_in build
    make -s -C build -j"$jobs"
}

# check_in DIR: run the suite there; keep going so both builds report.
check_in() {
    local dir=$1 rc=0
    make -s -C "$dir" -j"$jobs" check || rc=$?
    if ((rc)); then
        echo "build.sh: failures in $dir; their logs:" >&2
        for log in "$dir"/tests/*.log; do
            [[ -f $log && $log != */test-suite.log ]] || continue
            grep -q '^:test-result: \(FAIL\|ERROR\)' "${log%.log}.trs" 2>/dev/null &&
                { echo "==> $log"; tail -n 60 "$log"; }
        done
    fi
    return "$rc"
}

# fuzz SECONDS: build each libFuzzer target under ASan+UBSan and run it for
# SECONDS from its seed corpus (a scratch copy: seeds stay as committed).
# Any crash fails the run.
fuzz() {
    local secs=$1 rc=0 name out
    local yaml_flags
    yaml_flags=$(pkg-config --cflags --libs yaml-0.1 libevent)
    mkdir -p build-fuzz
    declare -A srcs=([proto]="src/proto.c" [config]="src/config.c src/config_yaml.c src/config_units.c src/config_cluster.c src/config_client.c src/addr.c"
                     [bproto]="src/bproto.c src/proto.c"
                     [bcore]="src/bproto.c src/proto.c src/msg.c src/idtab.c src/topic.c src/broker.c
                              src/broker_deliver.c src/broker_timer.c src/broker_topics.c
                              src/broker_bstalk.c src/place.c")
    for name in proto config bproto bcore; do
        out=build-fuzz/fuzz_$name
        if [[ ! -x $out || -n $(find src tests/fuzz -newer "$out" -name '*.[ch]' -print -quit) ]]; then
            # shellcheck disable=SC2086
            clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -D_GNU_SOURCE -Isrc ${srcs[$name]} tests/fuzz/fuzz_$name.c $yaml_flags -o "$out"
        fi
        rm -rf "build-fuzz/corpus-$name"
        cp -r "tests/fuzz/corpus/$name" "build-fuzz/corpus-$name"
        if "$out" -max_total_time="$secs" -print_final_stats=1 "build-fuzz/corpus-$name" \
            >"build-fuzz/$name.log" 2>&1; then
            echo "fuzz $name: $(grep -o 'stat::number_of_executed_units: *[0-9]*' \
                "build-fuzz/$name.log" | grep -o '[0-9]*$') executions in ${secs}s, no crash"
        else
            echo "fuzz $name: FAILED (build-fuzz/$name.log):" >&2
            tail -n 40 "build-fuzz/$name.log" >&2
            rc=1
        fi
    done
    return "$rc"
}

# The steps of check that are not test programs (distcheck, the package):
# each counts once in the summary. step NAME CMD...: run it, count it.
steps_passed=0
steps_failed=0
step() {
    local name=$1
    shift
    if "$@"; then
        echo "$name: passed"
        steps_passed=$((steps_passed + 1))
    else
        echo "$name: FAILED" >&2
        steps_failed=$((steps_failed + 1))
        return 1
    fi
}

# distcheck: the tarball builds out of tree, installs, and its own suite
# passes. Its test logs live (and die) inside the tarball's scratch tree,
# so summary never sees them: this step counts once.
distcheck() {
    if make -s -C build -j"$jobs" distcheck >build/distcheck.log 2>&1; then
        return 0
    fi
    tail -n 60 build/distcheck.log >&2
    return 1
}

# debpkg: the Debian package, built from the release tarball in build-deb/
# (tests/deb.sh checks its contents, lintian, and the installed sluiced -t).
debpkg() {
    make -s -C build dist >/dev/null &&
        JOBS=$jobs tests/deb.sh "$(ls -t build/sluice-*.tar.gz | head -n 1)" build-deb
}

# Add up Check's own closing lines: "NN%: Checks: N, Failures: F, Errors: E".
# A test that is not a Check program (a script) counts as one, by its .trs.
summary() {
    local passed=$steps_passed failed=$steps_failed c f e log line
    for log in build/tests/*.log build-san/tests/*.log; do
        [[ -f $log && $log != */test-suite.log ]] || continue
        line=$(grep -E '^[0-9]+%: Checks: [0-9]+' "$log" | tail -n 1) || true
        if [[ -z $line ]]; then
            # A program that died before Check could report counts as failed.
            if grep -q '^:test-result: PASS' "${log%.log}.trs" 2>/dev/null; then
                passed=$((passed + 1))
            else
                failed=$((failed + 1))
            fi
            continue
        fi
        c=$(sed -E 's/.*Checks: ([0-9]+).*/\1/' <<<"$line")
        f=$(sed -E 's/.*Failures: ([0-9]+).*/\1/' <<<"$line")
        e=$(sed -E 's/.*Errors: ([0-9]+).*/\1/' <<<"$line")
        passed=$((passed + c - f - e))
        failed=$((failed + f + e))
    done
    echo "$passed passed, $failed failed"
}

case "${1:-build}" in
build)
    build
    echo "build.sh: built build/src/sluiced and build/src/sluice"
    ;;
check)
    build
    need_pkgs "${test_pkgs[@]}"
    configure_in build-san --enable-sanitizers
    make -s -C build-san -j"$jobs"
    rc=0
    check_in build || rc=1
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        CK_TIMEOUT_MULTIPLIER=3 check_in build-san || rc=1
    fuzz "${FUZZ_SECONDS:-30}" || rc=1
    step "make distcheck" distcheck || rc=1
    step "debian package" debpkg || rc=1
    summary
    exit "$rc"
    ;;
soak)
    build
    need_pkgs "${test_pkgs[@]}"
    make -s -C build soak
    fuzz "${FUZZ_SECONDS:-600}"
    ;;
*)
    echo "usage: ./build.sh [build|check|soak]" >&2
    exit 2
    ;;
esac
