# helpers.bash: shared machinery of the kvstore command-line tests: find the
# binaries, start and stop kvnode with a bounded wait for its ready file,
# poll conditions, and assertions on standard error.
#
# A test file does `load helpers`, usually with `setup() { start_node; }`.
# The teardown defined here stops every node the test started and prints
# their logs only when the test failed.  A file that needs its own teardown
# calls kv_teardown from it.

load '/usr/lib/bats/bats-support/load'
load '/usr/lib/bats/bats-assert/load'

# `run -N` and `run --separate-stderr` need bats 1.5.
bats_require_minimum_version 1.5.0

KV_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KV_BIN=${KV_BIN:-$KV_ROOT/bin}
if [ ! -x "$KV_BIN/kvnode" ] || [ ! -x "$KV_BIN/kvquery" ]; then
    echo "helpers.bash: no kvnode and kvquery in $KV_BIN (run make, or set KV_BIN)" >&2
    return 1
fi
PATH="$KV_BIN:$PATH"
export KV_BIN PATH
# Never talk to a server the environment points at.
unset KV_ENDPOINT

KV_NODE_PIDS=()  # the kvnodes this test started and has not reaped yet
KV_NODE_LOGS=()  # the logs of every kvnode this test started

# _kv_alive PID: true while PID runs (a zombie counts as gone).
_kv_alive() {
    local state
    state=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# _kv_is_kvnode PID: PID is a running kvnode or kvroute (so a recycled
# PID is never signalled).
_kv_is_kvnode() {
    local comm
    comm=$(cut -d' ' -f2 "/proc/$1/stat" 2>/dev/null) || return 1
    { [ "$comm" = "(kvnode)" ] || [ "$comm" = "(kvroute)" ]; } && _kv_alive "$1"
}

# _kv_forget PID: drop PID from the nodes still to stop.
_kv_forget() {
    local pid keep=()
    for pid in "${KV_NODE_PIDS[@]}"; do
        [ "$pid" = "$1" ] || keep+=("$pid")
    done
    KV_NODE_PIDS=("${keep[@]}")
}

# _kv_now_us: wall clock in microseconds.
_kv_now_us() {
    local t=${EPOCHREALTIME/[.,]/}
    echo "$((10#$t))"
}

# wait_until SECONDS CMD [ARG...]: run CMD (output discarded) every 0.05 s
# until it succeeds; fails if SECONDS (may be fractional) pass first.
wait_until() {
    local limit_us end
    limit_us=$(awk -v t="$1" 'BEGIN { printf "%d", t * 1000000 }')
    shift
    end=$(($(_kv_now_us) + limit_us))
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        [ "$(_kv_now_us)" -lt "$end" ] || break
        sleep 0.05
    done
    echo "wait_until: '$*' still failing after $((limit_us / 1000)) ms" >&2
    return 1
}

# start_node [--no-default-listen] [kvnode args...]: start kvnode in the
# background on tcp://127.0.0.1:* (unless the args give -l, or
# --no-default-listen leaves the choice to a config file), wait up to 10 s
# for its ready file, and export KV_ENDPOINT.  Sets NODE_PID, NODE_LOG,
# NODE_READY for the node just started.  The first node of a test uses
# $BATS_TEST_TMPDIR/ready and node.log; later ones ready.N and node.N.log.
start_node() {
    local listen=(-l 'tcp://127.0.0.1:*') a
    if [ "${1:-}" = --no-default-listen ]; then
        listen=()
        shift
    fi
    for a in "$@"; do
        case $a in
        -l | -l?* | --listen | --listen=*) listen=() ;;
        esac
    done
    local n=${#KV_NODE_LOGS[@]} suffix=""
    [ "$n" -eq 0 ] || suffix=".$n"
    NODE_READY="$BATS_TEST_TMPDIR/ready$suffix"
    NODE_LOG="$BATS_TEST_TMPDIR/node$suffix.log"
    rm -f "$NODE_READY"
    # fd 3 is bats' own: a daemon holding it open would hang the run
    kvnode "${listen[@]}" --ready-file "$NODE_READY" "$@" >"$NODE_LOG" 2>&1 3>&- </dev/null &
    NODE_PID=$!
    KV_NODE_PIDS+=("$NODE_PID")
    KV_NODE_LOGS+=("$NODE_LOG")
    local i
    for ((i = 0; i < 200; i++)); do
        [ -s "$NODE_READY" ] && break
        _kv_alive "$NODE_PID" || break
        sleep 0.05
    done
    if [ ! -s "$NODE_READY" ]; then
        local why="not ready after 10 s"
        if ! _kv_alive "$NODE_PID"; then
            local st=0
            wait "$NODE_PID" || st=$?
            _kv_forget "$NODE_PID"
            why="exited with status $st before it was ready"
        fi
        {
            echo "start_node: kvnode ${listen[*]} $* $why; its log:"
            cat "$NODE_LOG"
        } >&2
        return 1
    fi
    KV_ENDPOINT=$(cat "$NODE_READY")
    export KV_ENDPOINT
}

# stop_node [PID]: SIGTERM the node (default: the last one started), wait
# up to 5 s, then SIGKILL; reap it.  Sets NODE_STATUS to its exit status.
stop_node() {
    local pid=${1:-$NODE_PID} i
    NODE_STATUS=
    [ -n "$pid" ] || return 0
    if _kv_is_kvnode "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            _kv_alive "$pid" || break
            sleep 0.05
        done
        if _kv_is_kvnode "$pid"; then
            echo "stop_node: kvnode $pid ignored SIGTERM for 5 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    NODE_STATUS=0
    wait "$pid" 2>/dev/null || NODE_STATUS=$?
    _kv_forget "$pid"
}

# start_router [kvroute args...]: start kvroute on tcp://127.0.0.1:* with
# a bounded wait for its ready file, like start_node (teardown stops it).
# Sets ROUTER_PID, ROUTER_LOG and ROUTER_EP.
start_router() {
    local n=${#KV_NODE_LOGS[@]}
    local ready="$BATS_TEST_TMPDIR/router.$n.ready" i
    ROUTER_LOG="$BATS_TEST_TMPDIR/router.$n.log"
    kvroute -l 'tcp://127.0.0.1:*' --ready-file "$ready" "$@" >"$ROUTER_LOG" 2>&1 3>&- </dev/null &
    ROUTER_PID=$!
    KV_NODE_PIDS+=("$ROUTER_PID")
    KV_NODE_LOGS+=("$ROUTER_LOG")
    for ((i = 0; i < 200; i++)); do
        [ -s "$ready" ] && break
        _kv_alive "$ROUTER_PID" || break
        sleep 0.05
    done
    if [ ! -s "$ready" ]; then
        echo "start_router: kvroute $* did not get ready; its log:" >&2
        cat "$ROUTER_LOG" >&2
        return 1
    fi
    ROUTER_EP=$(cat "$ready")
}

# ---- clusters: nodes and kvroute (95-cluster, 96-replication) ----

# cluster_json EP EXPR: evaluate a Python expression over `info cluster`
# of the router at EP (bound as d).
cluster_json() {
    kvquery -e "$1" info cluster | python3 -c "import json, sys; d = json.load(sys.stdin); print($2)"
}

# version_is EP V: the router at EP has table version V.
version_is() { [ "$(cluster_json "$1" 'd["version"]')" = "$2" ]; }
# version_past EP V: the router at EP has a table version above V.
version_past() { [ "$(cluster_json "$1" 'd["version"] > '"$2")" = True ]; }
# settled EP LIST [V]: the router's table is settled (no migration left),
# its version is above V (default 0), and its nodes' states are LIST (as
# members_are).
settled() {
    [ "$(cluster_json "$1" 'd["settled"] and d["migrations"]["active"] == 0 and d["version"] > '"${3:-0}"' and str([n["state"] for n in d["nodes"]]) == "'"$2"'"')" = True ]
}

# nodes_up EP N: N nodes up and in the table at EP.
nodes_up() {
    [ "$(cluster_json "$1" 'sum(1 for n in d["nodes"] if n["state"] == "up" and n["masters"] > 0)')" = "$2" ]
}

# members EP N: N nodes up, filling or back (in the table) at EP.
members() {
    [ "$(cluster_json "$1" 'sum(1 for n in d["nodes"] if n["state"] in ("up", "filling", "back"))')" = "$2" ]
}

# start_nodes N [args]: N nodes with data directories (n1, n2, ... of the
# test's directory, the first ones not yet made); endpoints in NODES[].
start_nodes() {
    local n=$1 i k=1
    shift
    NODES=()
    NODE_PIDS=()
    NODE_LOGS=()
    for ((i = 1; i <= n; i++)); do
        while [ -e "$BATS_TEST_TMPDIR/n$k" ]; do k=$((k + 1)); done
        mkdir "$BATS_TEST_TMPDIR/n$k"
        start_node -d "$BATS_TEST_TMPDIR/n$k" "$@"
        NODES+=("$KV_ENDPOINT")
        NODE_PIDS+=("$NODE_PID")
        NODE_LOGS+=("$NODE_LOG")
    done
}

# start_cluster N [kvnode args]: start_nodes, then a router over them
# (with ROUTER_ARGS, if set), once every node has installed table
# version 1.  Sets what start_nodes and start_router set.
start_cluster() {
    local n=$1 i args=()
    start_nodes "$@"
    for ((i = 0; i < n; i++)); do args+=(--node "${NODES[$i]}"); done
    start_router "${args[@]}" ${ROUTER_ARGS[@]+"${ROUTER_ARGS[@]}"}
    wait_until 10 nodes_up "$ROUTER_EP" "$n"
    for ((i = 0; i < n; i++)); do
        wait_until 5 grep -q 'installed table version 1 ' "${NODE_LOGS[$i]}"
    done
}

# members_are EP LIST: the states of the router's nodes, in order, printed
# as a Python list.
members_are() { [ "$(cluster_json "$1" '[n["state"] for n in d["nodes"]]')" = "$2" ]; }

# kv_teardown: stop every node of this test; show their logs if it failed.
kv_teardown() {
    local pid log
    for pid in "${KV_NODE_PIDS[@]}"; do
        stop_node "$pid"
    done
    if [ -z "${BATS_TEST_COMPLETED:-}" ]; then
        for log in "${KV_NODE_LOGS[@]}"; do
            echo "--- $log"
            cat "$log" 2>/dev/null || true
        done
    fi
    KV_NODE_PIDS=()
    KV_NODE_LOGS=()
}

teardown() {
    kv_teardown
}

# assert_stderr [--partial|--regexp] TEXT: like assert_output, for the
# $stderr of `run --separate-stderr`.
assert_stderr() {
    local mode=exact
    case $1 in
    -p | --partial) mode=partial; shift ;;
    -e | --regexp) mode=regexp; shift ;;
    esac
    local want=$1 ok=1
    case $mode in
    exact) [ "$stderr" = "$want" ] || ok=0 ;;
    partial) [[ $stderr == *"$want"* ]] || ok=0 ;;
    regexp) [[ $stderr =~ $want ]] || ok=0 ;;
    esac
    if [ "$ok" -eq 0 ]; then
        batslib_print_kv_single_or_multi 8 "expected ($mode)" "$want" stderr "$stderr" |
            batslib_decorate "stderr differs" | fail
    fi
}

# refute_stderr: $stderr of `run --separate-stderr` is empty.
refute_stderr() {
    if [ -n "$stderr" ]; then
        batslib_print_kv_single_or_multi 8 stderr "$stderr" | batslib_decorate "stderr is not empty" | fail
    fi
}

# kv_free_endpoint: a tcp endpoint nobody listens on (a node's, after it
# stopped), so no test depends on a fixed port being free.
kv_free_endpoint() {
    start_node
    local ep=$KV_ENDPOINT
    stop_node
    echo "$ep"
}

# json_field FIELD: print FIELD (a Python expression on r, e.g.
# 'r["bins"]["n"]') of the JSON object on stdin, as JSON.
json_field() {
    python3 -c 'import json, sys; r = json.load(sys.stdin); print(json.dumps('"$1"'))'
}

# kill9_node [PID]: kill the node (default: the last one started) with
# SIGKILL, as a crash would, and reap it.  Sets NODE_STATUS.
kill9_node() {
    local pid=${1:-$NODE_PID}
    NODE_STATUS=
    [ -n "$pid" ] || return 0
    if _kv_is_kvnode "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    NODE_STATUS=0
    wait "$pid" 2>/dev/null || NODE_STATUS=$?
    _kv_forget "$pid"
}

# restart_node [kvnode args...]: stop the last node started with SIGTERM
# (stop_node), fail unless it exited 0, and start a new node with ARGS
# (give the same -d DIR to restart on the same data).
restart_node() {
    stop_node
    if [ "$NODE_STATUS" != 0 ]; then
        echo "restart_node: kvnode exited with status $NODE_STATUS on SIGTERM" >&2
        return 1
    fi
    start_node "$@"
}

# ns_info NS FIELD: print FIELD of `kvquery info NS` as it is in the JSON
# (numbers and booleans bare, strings quoted); fails if it is missing.
ns_info() {
    local out
    out=$(kvquery info "$1") || return
    out=$(sed -nE 's/.*"'"$2"'":("[^"]*"|[^,}]*).*/\1/p' <<<"$out")
    [ -n "$out" ] || { echo "ns_info: no field '$2' in info $1" >&2; return 1; }
    echo "$out"
}

# gone NS SET KEY: the record can no longer be read (exit 1).
gone() {
    local st=0
    kvquery get "$@" || st=$?
    [ "$st" -eq 1 ]
}

# clock_past S: the wall clock has passed second S.
clock_past() {
    [ "$(date +%s)" -gt "$1" ]
}
