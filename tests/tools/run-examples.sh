#!/usr/bin/env bash
# run-examples.sh PAGE: run every .Dl command of PAGE's EXAMPLES section,
# in order, in an empty temporary directory, against a fresh kvnode.
# Every "tcp://127.0.0.1:7700" is replaced by the test node's endpoint, and
# every "/tmp/" by the temporary directory (so examples leave nothing).  A
# line starting with "kvnode " replaces the running node (started in the
# background with --ready-file).  Likewise every "tcp://127.0.0.1:7800" is
# replaced by a second free endpoint, and a line starting with "kvroute "
# starts (or replaces) a kvroute in the background, next to the node, and
# waits (at most 5 s) until it has a partition table, as a reader would
# before sending it records.
# Every other line must exit 0.
set -u
page=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
export PATH="$root/bin:$PATH"
work=$(mktemp -d)
node_pid=
router_pid=
cleanup() {
    [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null
    [ -n "$router_pid" ] && kill "$router_pid" 2>/dev/null && wait "$router_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work" || exit 2

read -r port rport < <(python3 -c 'import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')
endpoint="tcp://127.0.0.1:$port"
router_endpoint="tcp://127.0.0.1:$rport"
export KV_ENDPOINT=$endpoint

# start_server NAME COMMAND...: start a kvnode or kvroute in the background
# with a ready file and wait for it; its pid in server_pid.
start_server() {
    local name=$1
    shift
    rm -f "$work/.$name.ready"
    eval "exec $* --ready-file $work/.$name.ready" > "$work/.$name.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 200); do
        [ -s "$work/.$name.ready" ] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "$name did not start: $*"; cat "$work/.$name.log"; return 1
}

start_node() { # command line of kvnode
    if [ -n "$node_pid" ]; then
        kill "$node_pid"; wait "$node_pid" 2>/dev/null; node_pid=
    fi
    start_server node "$@"; local rc=$?
    node_pid=$server_pid
    return $rc
}

start_router() { # command line of kvroute
    if [ -n "$router_pid" ]; then
        kill "$router_pid"; wait "$router_pid" 2>/dev/null; router_pid=
    fi
    start_server router "$@"; local rc=$?
    router_pid=$server_pid
    [ $rc -eq 0 ] || return $rc
    for _ in $(seq 100); do # until the first table is agreed (UNAVAILABLE before)
        kvquery -e "$router_endpoint" info cluster 2>/dev/null | grep -q '"version":[1-9]' && break
        sleep 0.05
    done
    return 0
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
    cmd=${cmd//tcp:\/\/127.0.0.1:7800/$router_endpoint}
    cmd=${cmd//\/tmp\//$work\/}
    case "$cmd" in
    kvnode\ *)
        case "$cmd" in *"$endpoint"*) ;; *) echo "$page example $n: a kvnode example must listen on tcp://127.0.0.1:7700: $line"; exit 1 ;; esac
        start_node "$cmd" || exit 1
        echo "ok: $line"
        continue ;;
    kvroute\ *)
        case "$cmd" in *"$router_endpoint"*) ;; *) echo "$page example $n: a kvroute example must listen on tcp://127.0.0.1:7800: $line"; exit 1 ;; esac
        start_router "$cmd" || exit 1
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
