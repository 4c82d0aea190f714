#!/usr/bin/env bash
# demo.sh: the kvstore tour.  Starts a kvnode on loopback with a temporary
# directory, loads examples/data/users.jsonl with `kvquery import`, runs
# reads, an operate and a scan, and stops everything it started.
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

echo "== starting kvnode on loopback (temporary directory $tmp)"
kvnode -l 'tcp://127.0.0.1:*' --ready-file "$tmp/ready" > "$tmp/kvnode.log" 2>&1 &
node_pid=$!
for _ in $(seq 200); do
    [ -s "$tmp/ready" ] && break
    kill -0 "$node_pid" 2>/dev/null || { cat "$tmp/kvnode.log"; exit 1; }
    sleep 0.05
done
[ -s "$tmp/ready" ] || { echo "demo: kvnode did not start" >&2; cat "$tmp/kvnode.log"; exit 1; }
export KV_ENDPOINT=$(cat "$tmp/ready")
cat "$tmp/kvnode.log"

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
echo "== stopping kvnode"
kill "$node_pid"
wait "$node_pid" 2>/dev/null || true
node_pid=
echo "demo finished; nothing left running"
