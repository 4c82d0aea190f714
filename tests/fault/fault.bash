# fault.bash: what the fault suites share: kvcrash (tests/tools/kvcrash.c,
# the load generator that logs every write and acknowledgement), the
# per-test setup, and a teardown that stops loads and nodes by PID.

load '../cli/helpers'

KVCRASH=$KV_ROOT/build/tests/kvcrash

setup() {
    [ -x "$KVCRASH" ] || {
        echo "no $KVCRASH: run make fault (or make build/tests/kvcrash)" >&2
        return 1
    }
    DATA=$BATS_TEST_TMPDIR/data
    LOAD_PIDS=()
}

teardown() {
    local pid
    for pid in "${LOAD_PIDS[@]}"; do
        # still our unreaped child, so the pid cannot have been reused
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    kv_teardown
}

# verify_load ARGS...: kvcrash --verify against the current node (ARGS:
# the load's options, --state, and the log); shows the end of its report
# and fails if it does.
verify_load() {
    run "$KVCRASH" --verify -e "$KV_ENDPOINT" "$@"
    echo "$output" | tail -5
    assert_success
}
