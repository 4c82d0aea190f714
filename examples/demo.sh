#!/usr/bin/env bash
# demo.sh: the kvstore tour.  Starts a kvnode on loopback with a temporary
# data directory, loads examples/data/users.jsonl with `kvquery import`,
# runs reads, an operate and a scan, restarts the node to show the data
# kept, and stops everything it started.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$root/bin:$PATH"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvstore-demo.XXXXXX")
node_pid=
cleanup() {
    if [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null; then
        kill "$node_pid"
        wait "$node_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

show() { # print a command like a shell session, then run it
    local a line="$"
    for a in "$@"; do
        case "$a" in *[\ \"\'\$\|\;\&\<\>\*\?]*) line+=" '$a'" ;; *) line+=" $a" ;; esac
    done
    printf '\n%s\n' "$line"
    "$@" 2>&1
}

# start_node: kvnode on a free loopback port, namespace test kept in
# $tmp/data with every write flushed before it is acknowledged
start_node() {
    rm -f "$tmp/ready"
    kvnode -l 'tcp://127.0.0.1:*' -d "$tmp/data" --ns test,commit-to-device=true \
        --ready-file "$tmp/ready" > "$tmp/kvnode.log" 2>&1 &
    node_pid=$!
    for _ in $(seq 200); do
        [ -s "$tmp/ready" ] && break
        kill -0 "$node_pid" 2>/dev/null || { cat "$tmp/kvnode.log"; exit 1; }
        sleep 0.05
    done
    [ -s "$tmp/ready" ] || { echo "demo: kvnode did not start" >&2; cat "$tmp/kvnode.log"; exit 1; }
    KV_ENDPOINT=$(cat "$tmp/ready")
    export KV_ENDPOINT
    cat "$tmp/kvnode.log"
}

stop_node() {
    kill "$node_pid"
    wait "$node_pid" 2>/dev/null || true
    node_pid=
}

echo "== starting kvnode on loopback, data in a temporary directory ($tmp/data)"
printf '\n$ kvnode -l tcp://127.0.0.1:* -d %s --ns test,commit-to-device=true\n' "$tmp/data"
start_node

echo
echo "== loading the sample data set ($(wc -l < "$root/examples/data/users.jsonl") records)"
printf '\n$ kvquery import test < examples/data/users.jsonl\n'
kvquery import test < "$root/examples/data/users.jsonl" 2>&1

echo
echo "== reads"
show kvquery get test users alice
show kvquery --format raw get test users bob city
show kvquery --int-key get test orders 1002
show kvquery batch test users carol dave nobody || echo "(exit status $?: one key was not found)"
show kvquery --format table batch test users erin frank

echo
echo "== an operate: add to the score, append to the name, read both back, in one atomic step"
show kvquery operate test users alice add:score=10.5 append:name=' L.' read:score read:name

echo
echo "== check-and-set: a write with a stale generation is refused"
show kvquery put test users alice --gen 1 city=Paris || echo "(exit status $?: generation mismatch)"

echo
echo "== a scan of the orders set"
show kvquery scan test orders

echo
echo "== node statistics"
show kvquery info namespaces

echo
echo "== restarting kvnode: the index is rebuilt from the data file"
stop_node
start_node
show kvquery get test users alice

echo
echo "== stopping kvnode"
stop_node
echo "demo finished; nothing left running"
