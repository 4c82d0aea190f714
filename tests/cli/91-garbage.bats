#!/usr/bin/env bats
# Garbage and truncated frames: every one gets an error reply, the node
# keeps serving, and no stored record changes.

setup() {
    ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
    export PATH="$ROOT/bin:$PATH"
    kvnode -l 'tcp://127.0.0.1:*' --ready-file "$BATS_TEST_TMPDIR/ready" > "$BATS_TEST_TMPDIR/node.log" 2>&1 &
    NODE_PID=$!
    for _ in $(seq 200); do
        [ -s "$BATS_TEST_TMPDIR/ready" ] && break
        kill -0 "$NODE_PID" || break
        sleep 0.05
    done
    [ -s "$BATS_TEST_TMPDIR/ready" ] || { cat "$BATS_TEST_TMPDIR/node.log"; false; }
    export KV_ENDPOINT=$(cat "$BATS_TEST_TMPDIR/ready")
}

teardown() {
    if [ -n "${NODE_PID:-}" ]; then
        kill "$NODE_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$NODE_PID" 2>/dev/null || true
    fi
    [ -n "${BATS_TEST_COMPLETED:-}" ] || cat "$BATS_TEST_TMPDIR/node.log" >&3
}

@test "malformed, truncated and random frames get error replies and change nothing" {
    for i in $(seq 50); do
        echo "{\"set\":\"s\",\"key\":\"k$i\",\"bins\":{\"n\":$i,\"s\":\"v$i\",\"l\":[1,{\"a\":null}]}}"
    done | kvquery import test
    kvquery export test | sort > "$BATS_TEST_TMPDIR/before"
    [ "$(wc -l < "$BATS_TEST_TMPDIR/before")" -eq 50 ]

    run "$ROOT/build/tests/kvgarbage" "$KV_ENDPOINT" 5000
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" != *"not ok"* ]]
    [[ "$output" == *"5000 random messages, 5000 answered"* ]]

    kvquery export test | sort > "$BATS_TEST_TMPDIR/after"
    diff "$BATS_TEST_TMPDIR/before" "$BATS_TEST_TMPDIR/after"
    # the node counted them and still answers normal requests
    run kvquery info stats
    [ "$status" -eq 0 ]
    [[ "$output" =~ \"bad_frames\":[1-9] ]]
    run kvquery get test s k7 n
    [ "$status" -eq 0 ]
    [[ "$output" == *'"bins":{"n":7}'* ]]
    kill -0 "$NODE_PID"
}
