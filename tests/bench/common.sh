# tests/bench/common.sh: what every benchmark script starts with (source it):
# a scratch directory $work, and $pids, the servers and loads it started,
# all killed and removed when the script exits however it exits; $here (this
# folder), $top (the tree), and SLUICED and SLUICE defaulting to its build.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
SLUICED=${SLUICED:-$top/build/src/sluiced}
SLUICE=${SLUICE:-$top/build/src/sluice}
work=$(mktemp -d)
pids=()
bench_cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap bench_cleanup EXIT

# a loopback TCP port nothing listens on now
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
