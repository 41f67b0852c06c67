#!/usr/bin/env bash
# include_graph.sh: the source tree read as rooms and arrows, checked.
#
# A room is a module: foo.c, foo.h and every foo_*.c / foo_*.h beside them
# (foo_int.h, foo_internal.h, config_yaml.c, sluice_cli.c ...) are room
# "foo", because that is how src/ is organised: a module that grew is split
# by concern under its own prefix and keeps one public header. src/bench/
# is room "bench" the same way. An arrow is an `#include "..."` (resolved
# beside the including file, then in src/, as the compiler does).
#
# Fails on:
#   - an include cycle between rooms (printed as a path);
#   - an include that points up: every room has a layer in docs/design.md's
#     table between the "include_graph: layers" markers, and a file may
#     include its own layer or below, never above; a room missing from the
#     table, or a table entry with no room, fails too;
#   - a private header (foo_*.h) included from outside room foo;
#   - in a parser room (the "include_graph: parsers" line of docs/design.md):
#     an event-loop, socket, TLS or async-Redis header (event2/util.h, the
#     pure address helpers, is allowed), or a call that does network I/O;
#   - a .c or .h file in src/ or src/bench/ over 1,200 lines;
#   - a file whose first line is not a comment naming it ("/* conn.c: ...");
#   - a file missing from the README's source table ("## The source, file by
#     file": `src/x.[ch]`, `src/a.c`, `b.c` with b in a's directory), or a
#     row naming a file that is not there.
# Then it proves it can fail: each kind of violation is planted in a copy
# of the tree and must be reported.
#
# usage: include_graph.sh [TOP]   (default $SLUICE_SRCDIR, else this script's ..)
set -uo pipefail

MAX_LINES=1200
top=${1:-${SLUICE_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}}

# room FILE (relative to src/): the module it belongs to
room() {
    local f=$1 dir base r
    dir=$(dirname "$f")
    base=$(basename "$f")
    base=${base%.*}
    r=${base%%_*}
    if [[ $dir != . && $r != "$dir" ]]; then r=$dir/$r; fi
    echo "$r"
}

# The marked lines of docs/design.md: "LAYER ROOM" for each room.
layers() {
    sed -n '/<!-- include_graph: layers -->/,/<!-- include_graph: end -->/p' "$1/docs/design.md" |
        awk -F'|' '$2 ~ /^ *[0-9]+ *$/ {
            n = $2 + 0; s = $3
            while (match(s, /`[^`]+`/)) { print n, substr(s, RSTART + 1, RLENGTH - 2); s = substr(s, RSTART + RLENGTH) }
        }'
}

parsers() {
    grep -m1 '<!-- include_graph: parsers -->' "$1/docs/design.md" | grep -o '`[^`]*`' | tr -d '`'
}

# Every file the README's source table names (relative to src/).
readme_files() {
    sed -n '/^## The source, file by file/,/^## /p' "$1/README.md" |
        awk -F'|' '/^\| *`/ {
            s = $2; dir = ""
            while (match(s, /`[^`]+`/)) {
                t = substr(s, RSTART + 1, RLENGTH - 2); s = substr(s, RSTART + RLENGTH)
                if (t ~ /\//) { dir = t; sub(/[^\/]*$/, "", dir) } else t = dir t
                if (t !~ /^src\//) continue
                sub(/^src\//, "", t)
                if (t ~ /\.\[ch\]$/) { sub(/\.\[ch\]$/, "", t); print t ".c"; print t ".h" } else print t
            }
        }'
}

# check TOP: print every violation; exit 1 if there is one.
check() {
    local t=$1 bad=0 f inc to r rto
    local -A layer=() isparser=() seen_room=()
    local edges
    edges=$(mktemp)

    while read -r n r; do layer[$r]=$n; done < <(layers "$t")
    for r in $(parsers "$t"); do isparser[$r]=1; done
    if ((${#layer[@]} == 0)); then
        echo "docs/design.md: no layer table between the include_graph markers"
        bad=1
    fi

    cd "$t/src" || return 1
    local files
    files=$(ls ./*.[ch] bench/*.[ch] 2>/dev/null | sed 's|^\./||' | sort)
    for f in $files; do
        r=$(room "$f")
        seen_room[$r]=1
        if [[ -z ${layer[$r]:-} ]]; then
            echo "src/$f: room '$r' has no layer in docs/design.md"
            bad=1
        fi
        local lines
        lines=$(wc -l < "$f")
        if ((lines > MAX_LINES)); then
            echo "src/$f: $lines lines (at most $MAX_LINES)"
            bad=1
        fi
        if ! head -1 "$f" | grep -q "^/\* $(basename "$f"):"; then
            echo "src/$f: the first line is not a comment naming it (\"/* $(basename "$f"): ...\")"
            bad=1
        fi
        while read -r inc; do
            if [[ -f $(dirname "$f")/$inc ]]; then
                to=$(dirname "$f")/$inc
            elif [[ -f $inc ]]; then
                to=$inc
            else
                echo "src/$f: includes \"$inc\", which is not in src/"
                bad=1
                continue
            fi
            to=${to#./}
            rto=$(room "$to")
            [[ $rto == "$r" ]] && continue
            echo "$r $rto src/$f $inc" >> "$edges"
            if [[ $(basename "$to") == *_*.h ]]; then
                echo "src/$f: includes \"$inc\", private to room '$rto'"
                bad=1
            fi
            if [[ -n ${layer[$r]:-} && -n ${layer[$rto]:-} ]] && ((layer[$rto] > layer[$r])); then
                echo "src/$f: includes \"$inc\": points up (room '$r', layer ${layer[$r]} -> '$rto', layer ${layer[$rto]})"
                bad=1
            fi
        done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
        if [[ -n ${isparser[$r]:-} ]]; then
            local hit
            hit=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*<(event2/|openssl/|unistd\.h|poll\.h|netdb\.h|sys/ioctl\.h|sys/epoll\.h|hiredis/async\.h|hiredis/adapters/)' "$f" |
                grep -v 'event2/util\.h')
            if [[ -n $hit ]]; then
                echo "src/$f: parser room '$r' includes an I/O header: $hit"
                bad=1
            fi
            # Comments out, then any call that moves bytes over a socket or runs a loop.
            hit=$(perl -0777 -pe 's{/\*.*?\*/}{}gs; s{//[^\n]*}{}g' "$f" |
                grep -nE '(^|[^A-Za-z0-9_>.])(socket|connect|bind|listen|accept4?|send|sendmsg|recv|recvmsg|read|write|writev|poll|select|getaddrinfo|redisConnect[A-Za-z]*|redisCommand|redisAsync[A-Za-z]*|event_[a-z_]*|evbuffer_[a-z_]*|bufferevent_[a-z_]*)[[:space:]]*\(')
            if [[ -n $hit ]]; then
                echo "src/$f: parser room '$r' does I/O: $hit"
                bad=1
            fi
        fi
    done

    for r in "${!layer[@]}"; do
        if [[ -z ${seen_room[$r]:-} ]]; then
            echo "docs/design.md: layer table names room '$r', which has no file"
            bad=1
        fi
    done

    # Cycles: strip rooms with no arrow out until none is left; what stays
    # is on a cycle or leads to one; walk from it until a room repeats.
    local cyc
    cyc=$(awk '{ if (!(($1 SUBSEP $2) in e)) { e[$1, $2] = 1; out[$1] = out[$1] " " $2 }; node[$1]; node[$2] }
        END {
            do {
                changed = 0
                for (n in node) {
                    k = split(out[n], o, " "); live = 0
                    for (i = 1; i <= k; i++) if (o[i] in node) live = 1
                    if (!live) { delete node[n]; changed = 1 }
                }
            } while (changed)
            for (n in node) { start = n; break }
            if (start == "") exit
            path = ""; cur = start
            while (!(cur in onpath)) {
                onpath[cur] = 1; order[++len] = cur
                k = split(out[cur], o, " ")
                for (i = 1; i <= k; i++) if (o[i] in node) { cur = o[i]; break }
            }
            for (i = 1; i <= len && order[i] != cur; i++) ;
            for (; i <= len; i++) path = path order[i] " -> "
            print path cur
        }' "$edges")
    if [[ -n $cyc ]]; then
        echo "include cycle between rooms: $cyc"
        local a b
        read -r -a hops <<< "${cyc//->/ }"
        for ((i = 0; i + 1 < ${#hops[@]}; i++)); do
            a=${hops[i]} b=${hops[i + 1]}
            awk -v a="$a" -v b="$b" '$1 == a && $2 == b { print "  " $3 " includes \"" $4 "\"" }' "$edges"
        done
        bad=1
    fi
    rm -f "$edges"

    local listed
    listed=$(readme_files "$t" | sort -u)
    for f in $files; do
        if ! grep -qxF "$f" <<< "$listed"; then
            echo "README.md: src/$f is missing from the source table"
            bad=1
        fi
    done
    for f in $listed; do
        if [[ ! -f $f ]]; then
            echo "README.md: the source table names src/$f, which is not there"
            bad=1
        fi
    done
    return $bad
}

# plant NAME WANT EDIT: a copy of the tree with one violation (the shell
# command EDIT, run in the copy); check must fail with a line matching WANT.
plant() {
    local name=$1 want=$2 cmd=$3 tmp out
    tmp=$(mktemp -d)
    mkdir -p "$tmp/docs"
    cp -r "$top/src" "$tmp/"
    cp "$top/README.md" "$tmp/"
    cp "$top/docs/design.md" "$tmp/docs/"
    chmod -R u+w "$tmp"
    (cd "$tmp" && eval "$cmd")
    out=$(check "$tmp")
    local rc=$?
    rm -rf "$tmp"
    if ((rc == 0)) || ! grep -qE -- "$want" <<< "$out"; then
        echo "FAIL: a planted $name was not reported as /$want/; the check said:"
        echo "$out"
        return 1
    fi
    echo "ok: a planted $name is reported: $(grep -m1 -E -- "$want" <<< "$out")"
}

rc=0
if ! out=$(check "$top"); then
    echo "$out"
    echo "FAIL: the tree breaks the rules above"
    rc=1
else
    echo "ok: $(ls "$top"/src/*.[ch] "$top"/src/bench/*.[ch] | wc -l) files, no cycle, no include up, all in the README"
fi

# Each #include goes after the first line, so that the file still names itself.
plant "cycle (conn.c includes server.h)" '^include cycle between rooms: .*(conn -> .*server|server -> .*conn)' \
    'sed -i "1a #include \"server.h\"" src/conn.c' || rc=1
plant "cycle between rooms of one layer" '^include cycle between rooms: .*(bench -> top|top -> bench)' \
    'sed -i "1a #include \"top.h\"" src/bench/bench_int.h; sed -i "1a #include \"bench/bench.h\"" src/top.c' || rc=1
plant "include up (the core includes the connection)" 'src/topic.c: includes "conn.h": points up' \
    'sed -i "1a #include \"conn.h\"" src/topic.c' || rc=1
plant "private header outside its room" 'src/broker.c: includes "config_yaml.h", private' \
    'sed -i "1a #include \"config_yaml.h\"" src/broker.c' || rc=1
plant "socket call in a parser" 'src/addr.c: parser room .addr. does I/O' \
    'echo "int addr_x(void); int addr_x(void) { return socket(0, 0, 0); }" >> src/addr.c' || rc=1
plant "event2 header in a parser" 'src/proto.c: parser room .proto. includes an I/O header' \
    'sed -i "1a #include <event2/event.h>" src/proto.c' || rc=1
plant "file over $MAX_LINES lines" "src/notify.c: [0-9]+ lines" \
    'yes "/* x */" | head -n $((MAX_LINES + 1)) >> src/notify.c' || rc=1
plant "file without its naming comment" 'src/msg.c: the first line is not a comment naming it' \
    'sed -i "1s|^/\* msg.c:|/* message:|" src/msg.c' || rc=1
plant "file missing from the README" 'README.md: src/extra.c is missing' \
    'echo "/* extra.c: planted */" > src/extra.c' || rc=1
plant "README row for a file that is gone" 'README.md: the source table names src/notify.h' \
    'rm src/notify.h' || rc=1
plant "room missing from the layer table" "src/extra.c: room 'extra' has no layer" \
    'echo "/* extra.c: planted */" > src/extra.c; sed -i "/^| \`src\/notify/a | \`src/extra.c\` | planted |" README.md' || rc=1
exit $rc
