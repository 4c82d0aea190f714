#!/usr/bin/env bats
# Crash safety of the file storage engine (kvnode(1) STORAGE): kvnode is
# killed with SIGKILL at random points under a pipelined load of puts and
# deletes (build/tests/kvcrash, which logs every write it sends and every
# acknowledgement), restarted, and checked: every key holds the last write
# that had to survive or a write sent after it, never an older one, never
# a partly written record, and a deleted record never comes back.
# Slow: run by `make fault` (tests/run tests/fault), not by `make test`.
#
# KV_CRASH_ROUNDS sets the number of kill points of the main test (20).

load fault

# acks_at_least LOG N: the load has logged N acknowledgements.
acks_at_least() {
    [ "$(grep -c '^A ' "$1")" -ge "$2" ]
}

# clock_ms_past MS: the wall clock has passed MS milliseconds since the epoch.
clock_ms_past() {
    [ "$(date +%s%3N)" -gt "$1" ]
}

# start_load LOG ARGS...: start kvcrash against the current node, logging
# to LOG (its stderr to LOG.err).  Sets LOAD_PID.
start_load() {
    local log=$1
    shift
    "$KVCRASH" -e "$KV_ENDPOINT" "$@" >"$log" 2>"$log.err" 3>&- </dev/null &
    LOAD_PID=$!
    LOAD_PIDS+=("$LOAD_PID")
}

# wait_load [SECONDS]: wait (default up to 15 s) for the load to end, kill
# it if it does not, and reap it.  Sets LOAD_STATUS.
wait_load() {
    local limit=${1:-15} pid=$LOAD_PID keep=() p
    if ! wait_until "$limit" eval "! _kv_alive $pid"; then
        echo "wait_load: kvcrash $pid still running after $limit s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    LOAD_STATUS=0
    wait "$pid" || LOAD_STATUS=$?
    for p in "${LOAD_PIDS[@]}"; do
        [ "$p" = "$pid" ] || keep+=("$p")
    done
    LOAD_PIDS=("${keep[@]}")
}

# check_node: nothing read from disk failed its checksum, and the file
# stays within its limit.
check_node() {
    run -0 ns_info test read_errors
    assert_output 0
    run -0 ns_info test disk_used
    [ "$output" -le "$(ns_info test disk_limit)" ]
}

@test "kill -9 at 20 random points under load, commit-to-device=true: no acknowledged write is lost, no record is torn" {
    local rounds=${KV_CRASH_ROUNDS:-20}
    local args=(-d "$DATA" --ns test,commit-to-device=true,write-block=64K,disk=4M)
    # 1000 keys of up to 2 KB, 90% of the writes to 100 of them: blocks
    # keep a few live records and get defragmented
    local load=(-k 1000 -p 32 -d 15 -z 2000 -H 100)
    local state=$BATS_TEST_TMPDIR/state round log target blocks acked=0 defrag=0
    start_node "${args[@]}"
    for round in $(seq 1 "$rounds"); do
        log=$BATS_TEST_TMPDIR/log.$round
        start_load "$log" "${load[@]}" -b $((round * 100000000)) -r "$round"
        # the kill point: after a random number of acknowledged writes
        target=$((RANDOM % 15000 + 1))
        wait_until 60 acks_at_least "$log" "$target"
        blocks=$(ns_info test defrag_blocks)
        defrag=$((defrag + blocks))
        kill9_node
        wait_load
        # the load saw its connection go: exit 1, nothing else
        [ "$LOAD_STATUS" -eq 1 ] || {
            cat "$log.err"
            fail "round $round: kvcrash exited $LOAD_STATUS"
        }
        acked=$((acked + $(grep -c '^A ' "$log")))
        start_node "${args[@]}"
        run "$KVCRASH" --verify -e "$KV_ENDPOINT" "${load[@]}" --state "$state" "$log"
        echo "round $round (killed after $target acks): $output" | tail -5
        assert_success
        check_node
    done
    echo "$rounds kill points, $acked writes acknowledged, $defrag blocks defragmented"
    [ "$acked" -ge "$rounds" ]
    [ "$defrag" -gt 0 ]
    # a clean restart changes nothing either
    restart_node "${args[@]}"
    : >"$BATS_TEST_TMPDIR/empty.log"
    verify_load "${load[@]}" --state "$state" "$BATS_TEST_TMPDIR/empty.log"
    check_node
}

@test "kill -9 under load, commit-to-device=false, flush-ms=100: only writes of the last flush-ms may be lost" {
    local rounds=${KV_CRASH_ROUNDS_NOCOMMIT:-10}
    local args=(-d "$DATA" --ns test,flush-ms=100,write-block=64K,disk=4M)
    local load=(-k 1000 -p 32 -d 15 -z 2000 -H 100)
    local state=$BATS_TEST_TMPDIR/state round log target killed_at
    start_node "${args[@]}"
    for round in $(seq 1 "$rounds"); do
        log=$BATS_TEST_TMPDIR/log.$round
        start_load "$log" "${load[@]}" -b $((round * 100000000)) -r "$round"
        # the kill point: a random moment 2 to 5 s into the load (so that
        # many writes are older than the grace period), once it has had
        # 1000 writes acknowledged
        target=$(($(date +%s%3N) + 2000 + RANDOM % 3000))
        wait_until 60 acks_at_least "$log" 1000
        wait_until 10 clock_ms_past "$target"
        killed_at=$(date +%s%3N)
        kill9_node
        wait_load
        [ "$LOAD_STATUS" -eq 1 ] || {
            cat "$log.err"
            fail "round $round: kvcrash exited $LOAD_STATUS"
        }
        start_node "${args[@]}"
        # acknowledged more than flush-ms (plus a second for the flush in
        # progress and the kill itself) before the kill: must be there
        run "$KVCRASH" --verify -e "$KV_ENDPOINT" "${load[@]}" --state "$state" \
            --grace 1100 --killed-at "$killed_at" "$log"
        echo "round $round: $output" | tail -5
        assert_success
        check_node
    done
}

@test "kill -9 while kvnode is starting up, after it opened the data file: the data is unchanged" {
    local args=(-d "$DATA" --ns test,commit-to-device=true,write-block=64K,disk=8M)
    local load=(-k 2000 -p 32 -d 10 -z 3000)
    local state=$BATS_TEST_TMPDIR/state log=$BATS_TEST_TMPDIR/log n pid
    start_node "${args[@]}"
    start_load "$log" "${load[@]}" -c 20000 -b 1
    wait_load 120
    assert_equal "$LOAD_STATUS" 0
    run "$KVCRASH" --verify -e "$KV_ENDPOINT" "${load[@]}" --state "$state" "$log"
    assert_success
    kill9_node
    local file
    file=$(realpath "$DATA/test.dat")
    # data_open PID: kvnode PID has test.dat open
    data_open() {
        local f
        for f in /proc/"$1"/fd/*; do
            [ "$(readlink "$f")" = "$file" ] && return 0
        done
        return 1
    }
    : >"$BATS_TEST_TMPDIR/empty.log"
    KV_NODE_LOGS+=("$BATS_TEST_TMPDIR/boot.log")
    for n in $(seq 1 10); do
        kvnode -l 'tcp://127.0.0.1:*' "${args[@]}" --ready-file "$BATS_TEST_TMPDIR/ready.boot" \
            >>"$BATS_TEST_TMPDIR/boot.log" 2>&1 3>&- </dev/null &
        pid=$!
        KV_NODE_PIDS+=("$pid")
        # kill it at a different moment each time: as soon as it has the
        # file open, or once it is serving
        if ((n % 2)); then
            wait_until 10 data_open "$pid" || true
        else
            wait_until 10 test -s "$BATS_TEST_TMPDIR/ready.boot"
        fi
        kill9_node "$pid"
        rm -f "$BATS_TEST_TMPDIR/ready.boot"
    done
    start_node "${args[@]}"
    verify_load "${load[@]}" --state "$state" "$BATS_TEST_TMPDIR/empty.log"
    check_node
}
