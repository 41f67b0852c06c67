#!/usr/bin/env bash
# tests/man_coverage.sh: the man pages cannot fall behind the code. Every
# option in the getopt tables of the daemon and the client, every subcommand
# of the client and every key in the field tables of src/config*.c must appear as
# an item of its page (config_client.c's, the client's own file, in sluice.1), and every page must render without a groff warning.
# Each key read from the source is also fed to `sluiced -t`, which must not
# call it unknown: a broken extraction fails instead of passing silently.
set -uo pipefail
src=${SLUICE_SRCDIR:?}
sluiced=${SLUICED:?}
man=$src/man
fails=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}

# render PAGE: plain ASCII text, no hyphenation or overstriking.
render() {
    groff -man -Tascii -P-cbu "$1" 2>/dev/null
}

# ---- every page renders without a warning ----
for page in "$man"/sluiced.8 "$man"/sluice.1 "$man"/sluiced.yaml.5; do
    [[ -s $page ]] || { fail "$page is missing or empty"; continue; }
    warn=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$page" 2>&1)
    [[ -z $warn ]] || fail "groff warns on $page: $warn"
done

# tags PAGE: the item lines (.TP tags) of the rendered page: at the
# paragraph indent, after a line that is not (a wrapped line of prose is).
tags() {
    render "$1" | awk '/^       [^ ]/ && prev !~ /^       / { print } { prev = $0 }'
}

# ---- options: long names and short letters, from the getopt tables ----
# check_opts PAGE MIN FILE...: each FILE's options appear as items of PAGE;
# the table entries found must match the count of *_argument in the source
# and reach MIN, so a table written another way fails rather than hides.
check_opts() {
    local page=$1 min=$2 f longs shorts n want opt total=0
    shift 2
    tags "$man/$page" >"$tmp/tags"
    for f in "$@"; do
        [[ -f $f ]] || { fail "$f is missing (moved? update this list)"; continue; }
        longs=$(grep -oE '\{ *"[a-z][a-z0-9-]*", *(no|required|optional)_argument' "$f" |
            sed -E 's/\{ *"([^"]*)".*/\1/' | sort -u)
        n=$(grep -oE '\{ *"[a-z][a-z0-9-]*", *(no|required|optional)_argument' "$f" | wc -l)
        want=$(grep -oE '(no|required|optional)_argument' "$f" | wc -l)
        ((n == want)) || fail "$f: read $n option entries, but $want *_argument in it"
        # getopt_long(argc, argv, "..."), sluice_getopt(cli, argc, argv, "..." ...)
        # and the shared connection letters, #define SLUICE_CONN_SHORT "..."
        shorts=$(grep -oE '((getopt_long\(argc, *[^,]+|sluice_getopt\(&?cli, *[^,]+, *[^,]+), *|SLUICE_CONN_SHORT )"[^"]*"' "$f" |
            sed -E 's/.*"([^"]*)"$/\1/' | tr -d '+:' | fold -w1 | sort -u)
        n=$(grep -oE '(getopt_long\(argc, *[^,]+|sluice_getopt\(&?cli, *[^,]+, *[^,]+), *("[^"]*"|SLUICE_CONN_SHORT)' "$f" | wc -l)
        want=$(grep -oE '(getopt_long\(argc|sluice_getopt\(&?cli),' "$f" | wc -l)
        ((n == want)) || fail "$f: read $n getopt option strings, but $want calls"
        for opt in $longs; do
            total=$((total + 1))
            grep -qE -- "(^|[ ,\[])--$opt([ ,=]|$)" "$tmp/tags" ||
                fail "$page: no item for --$opt (from $f)"
        done
        for opt in $shorts; do
            total=$((total + 1))
            grep -qE -- "(^|[ ,\[])-$opt([ ,]|$)" "$tmp/tags" ||
                fail "$page: no item for -$opt (from $f)"
        done
    done
    ((total >= min)) || fail "$page: only $total options read from $*, expected >= $min"
    echo "$page: $total options checked"
}

check_opts sluiced.8 10 "$src/src/sluiced.c"
check_opts sluice.1 40 "$src/src/sluice.c" "$src/src/sluice_cli.h" "$src/src/sluice_pub.c" \
    "$src/src/sluice_sub.c" "$src/src/sluice_stats.c" "$src/src/sluice_cmds.c" \
    "$src/src/bench/bench_opts.c"

# ---- subcommands: each `strcmp(cli.cmd, "NAME")` is a subsection ----
render "$man/sluice.1" >"$tmp/sluice.txt"
cmds=$(grep -oE 'strcmp\(cli\.cmd, *"[a-z]+"\)' "$src/src/sluice.c" | sed -E 's/.*"([a-z]+)".*/\1/')
n=$(wc -w <<<"$cmds")
want=$(grep -o 'strcmp(cli\.cmd' "$src/src/sluice.c" | wc -l)
((n == want && n >= 8)) || fail "sluice.c: read $n subcommands of $want strcmp(cli.cmd (need >= 8)"
for c in $cmds; do
    grep -qE "^   $c( |$)" "$tmp/sluice.txt" || fail "sluice.1: no subsection for '$c'"
done
echo "sluice.1: $n subcommands checked"

# ---- the client's config file (src/config_client.c): each key an item of sluice.1 ----
client_keys=$(sed -n '/^static const config_field_t config_client_fields\[\] = {/,/^};/p' \
    "$src/src/config_client.c" | grep -oE '"[a-z_]+"' | tr -d '"')
[[ -n $client_keys ]] || fail "config_client.c: no keys read from config_client_fields"
tags "$man/sluice.1" >"$tmp/sluice.tags"
for k in $client_keys; do
    grep -qE "^       $k( |$)" "$tmp/sluice.tags" || fail "sluice.1: no item for the client config key $k"
done
echo "sluice.1: $(wc -w <<<"$client_keys") client config keys checked"

# ---- config keys: every string in each config_*_fields table of src/config*.c ----
# table -> "where sluiced -t finds it|prefix in the page" (root: empty).
# A table not listed here fails: map it when you add it.
declare -A where=([root]="|" [tls]="tls|tls." [admin]="admin|admin." [log]="log|log."
                  [limits]="limits|limits." [redis]="redis|redis." [topic]="defaults|"
                  [user]="users.u|" [beanstalk]="beanstalk|beanstalk." [cluster]="cluster|cluster.")
tags "$man/sluiced.yaml.5" >"$tmp/yaml.tags"
# sluiced -t must call a bogus key unknown, or the probe proves nothing.
echo 'redis: {bogus_probe_key: 1}' >"$tmp/probe.yaml"
out=$("$sluiced" -t -c "$tmp/probe.yaml" 2>&1)
grep -q "unknown key 'bogus_probe_key'" <<<"$out" ||
    fail "sluiced -t does not report an unknown key the way this test expects"
cat "$src"/src/config*.c >"$tmp/config.c"
# config_client_fields is the sluice client's own file, not sluiced's: below.
tables=$(grep -oE '^static const config_field_t config_[a-z]+_fields\[\]' "$tmp/config.c" |
    sed -E 's/.*config_([a-z]+)_fields.*/\1/' | grep -vx client)
total=0
for t in $tables; do
    [[ -n ${where[$t]+x} ]] || { fail "config.c: table config_${t}_fields is not mapped here"; continue; }
    path=${where[$t]%%|*}
    prefix=${where[$t]#*|}
    keys=$(sed -n "/^static const config_field_t config_${t}_fields\[\] = {/,/^};/p" \
        "$tmp/config.c" | grep -oE '"[a-z_]+"' | tr -d '"')
    [[ -n $keys ]] || fail "config.c: no keys read from config_${t}_fields"
    for k in $keys; do
        total=$((total + 1))
        # The value is wrong for every key: the error must be about it, not "unknown".
        yaml="$k: {x: {y: 1}}"
        if [[ -n $path ]]; then
            IFS=. read -ra parts <<<"$path"
            for ((i = ${#parts[@]} - 1; i >= 0; i--)); do yaml="${parts[i]}: {$yaml}"; done
        fi
        echo "$yaml" >"$tmp/probe.yaml"
        out=$("$sluiced" -t -c "$tmp/probe.yaml" 2>&1)
        grep -q "unknown key '$k'" <<<"$out" && fail "read '$k' from config_${t}_fields, but sluiced -t says: $out"
        grep -qE "^       $prefix$k( |$)" "$tmp/yaml.tags" ||
            fail "sluiced.yaml.5: no item for $prefix$k"
    done
done
((total >= 40)) || fail "config.c: only $total keys read, expected >= 40"
echo "sluiced.yaml.5: $total config keys checked"

((fails == 0)) || { echo "$fails failures"; exit 1; }
echo "all man pages cover the code"
