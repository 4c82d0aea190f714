#!/usr/bin/env bash
# run-examples.sh PAGE: run every .Dl command of PAGE's EXAMPLES section,
# in order, in an empty temporary directory, against a fresh kvnode.
# Every "tcp://127.0.0.1:7700" is replaced by the test node's endpoint, and
# every "/tmp/" by the temporary directory (so examples leave nothing).  A
# line starting with "kvnode " replaces the running node (started in the
# background with --ready-file).  Every other line must exit 0.
set -u
page=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
export PATH="$root/bin:$PATH"
work=$(mktemp -d)
node_pid=
cleanup() {
    [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work" || exit 2

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
endpoint="tcp://127.0.0.1:$port"
export KV_ENDPOINT=$endpoint

start_node() { # command line of kvnode
    if [ -n "$node_pid" ]; then
        kill "$node_pid"; wait "$node_pid" 2>/dev/null; node_pid=
    fi
    rm -f "$work/.ready"
    eval "exec $* --ready-file $work/.ready" > "$work/.node.log" 2>&1 &
    node_pid=$!
    for _ in $(seq 200); do
        [ -s "$work/.ready" ] && return 0
        kill -0 "$node_pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "node did not start: $*"; cat "$work/.node.log"; return 1
}

# .Dl lines of the EXAMPLES section, with mdoc escapes undone
lines=$(awk '/^\.Sh /{ex = ($2 == "EXAMPLES")} ex && /^\.Dl /{sub(/^\.Dl /, ""); print}' "$root/$page" |
    sed -e 's/\\-/-/g' -e 's/\\(aq/'"'"'/g' -e 's/\\(dq/"/g' -e 's/\\&//g' -e 's/\\e/\\/g')
if [ -z "$lines" ]; then
    echo "$page: no .Dl lines in EXAMPLES"; exit 1
fi
start_node kvnode -l "$endpoint" || exit 1
n=0
while IFS= read -r line; do
    n=$((n + 1))
    cmd=${line//tcp:\/\/127.0.0.1:7700/$endpoint}
    cmd=${cmd//\/tmp\//$work\/}
    case "$cmd" in
    kvnode\ *)
        case "$cmd" in *"$endpoint"*) ;; *) echo "$page example $n: a kvnode example must listen on tcp://127.0.0.1:7700: $line"; exit 1 ;; esac
        start_node "$cmd" || exit 1
        echo "ok: $line"
        continue ;;
    esac
    if out=$(sh -c "$cmd" 2>&1 < /dev/null); then
        echo "ok: $line"
    else
        echo "FAILED (exit $?): $line"; printf '%s\n' "$out"; exit 1
    fi
done <<< "$lines"
echo "$n examples ran"
