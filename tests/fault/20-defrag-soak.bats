#!/usr/bin/env bats
# Defragmentation soak of the file storage engine (kvnode(1) STORAGE): an
# update-heavy load (build/tests/kvcrash, puts and deletes over a small key
# set) writes many times the namespace's disk limit; the file stays within
# the limit the whole time (info sampled while the load runs), writes are
# never refused for lack of space, and the contents match the load's log
# at the end, over a clean restart and over kill -9.
# Slow: run by `make fault` (tests/run tests/fault), not by `make test`.
#
# KV_SOAK_OPS sets the number of writes of the main test (300000).

load fault

# run_sampled LOG SAMPLES ARGS...: run kvcrash ARGS to its end (at most 10
# minutes), logging to LOG, and append `kvquery info test` to SAMPLES
# about every 0.1 s meanwhile.  Sets LOAD_STATUS.
run_sampled() {
    local log=$1 samples=$2 n=0
    shift 2
    "$KVCRASH" -e "$KV_ENDPOINT" "$@" >"$log" 2>"$log.err" 3>&- </dev/null &
    local pid=$!
    LOAD_PIDS+=("$pid")
    while _kv_alive "$pid" && [ "$n" -lt 6000 ]; do
        kvquery info test >>"$samples" || true
        n=$((n + 1))
        sleep 0.1
    done
    if _kv_alive "$pid"; then
        echo "run_sampled: kvcrash still running after $n samples; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    LOAD_STATUS=0
    wait "$pid" || LOAD_STATUS=$?
    LOAD_PIDS=()
    cat "$log.err"
}

# check_samples SAMPLES: every sample has disk_used <= disk_limit and
# blocks_used <= blocks_total; prints a summary.
check_samples() {
    python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert rows, "no samples"
bad = [r for r in rows if r["disk_used"] > r["disk_limit"] or r["blocks_used"] > r["blocks_total"]]
print("%d samples: disk_used max %d of %d, blocks_free min %d, defrag_queue max %d, live_fraction min %.2f"
      % (len(rows), max(r["disk_used"] for r in rows), rows[0]["disk_limit"],
         min(r["blocks_free"] for r in rows), max(r["defrag_queue"] for r in rows),
         min(r["live_fraction"] for r in rows)))
for r in bad[:5]:
    print("over the limit:", r)
sys.exit(1 if bad else 0)
' "$1"
}

@test "update-heavy soak: 60 times the disk limit written, disk stays under it, contents match the log" {
    local ops=${KV_SOAK_OPS:-300000}
    local args=(-d "$DATA" --ns test,write-block=64K,disk=4M)
    # 1000 keys of 0 to 1600 bytes (about 0.8 MB live in a 4 MB file), 90%
    # of the writes to 200 of them
    local load=(-k 1000 -p 64 -d 5 -z 1600 -H 200)
    local log=$BATS_TEST_TMPDIR/log samples=$BATS_TEST_TMPDIR/samples
    start_node "${args[@]}"
    run_sampled "$log" "$samples" "${load[@]}" -c "$ops" -b 1
    assert_equal "$LOAD_STATUS" 0
    # writes were never refused for lack of space
    [ "$(grep -c '^R ' "$log")" -eq 0 ] || fail "$(grep -c '^R ' "$log") writes refused with NAMESPACE_FULL"
    [ "$(grep -c '^A ' "$log")" -eq "$ops" ]
    run check_samples "$samples"
    echo "$output"
    assert_success
    run -0 kvquery info test
    echo "$output"
    local info=$output limit written
    limit=$(echo "$info" | json_field 'r["disk_limit"]')
    written=$(echo "$info" | json_field 'r["write_bytes"]')
    echo "written $written bytes, $((written / limit)) times the disk limit"
    # puts of 800 bytes on average: at least half that was written
    [ "$written" -ge $((ops * 400)) ]
    [ "$(echo "$info" | json_field 'r["defrag_blocks"]')" -gt 0 ]
    [ "$(echo "$info" | json_field 'r["disk_used"]')" -le "$limit" ]
    [ "$(echo "$info" | json_field 'r["read_errors"]')" -eq 0 ]
    # every key holds its last write: now, after a clean restart, and
    # after a kill -9 at once (whatever defragmentation is doing then, the
    # records flushed at the clean stop must stay)
    verify_load "${load[@]}" "$log"
    restart_node "${args[@]}"
    verify_load "${load[@]}" "$log"
    kill9_node
    start_node "${args[@]}"
    verify_load "${load[@]}" "$log"
    run -0 ns_info test disk_used
    [ "$output" -le "$limit" ]
}

@test "soak with records close to the write-block size: blocks fill unevenly, contents match the log" {
    local args=(-d "$DATA" --ns test,write-block=64K,disk=16M)
    start_node "${args[@]}"
    local max fill
    max=$(ns_info test max_record_size)
    echo "max_record_size with 64K blocks: $max"
    [ "$max" -le 65536 ]
    # the filler may reach the largest record allowed, less the other bins
    # and the metadata
    fill=$((max - 200))
    local load=(-k 150 -p 16 -d 10 -z "$fill")
    local log=$BATS_TEST_TMPDIR/log samples=$BATS_TEST_TMPDIR/samples
    # 15000 writes of 32 KB on average: about 30 times the disk limit
    run_sampled "$log" "$samples" "${load[@]}" -c 15000 -b 1
    assert_equal "$LOAD_STATUS" 0
    [ "$(grep -c '^R ' "$log")" -eq 0 ] || fail "$(grep -c '^R ' "$log") writes refused with NAMESPACE_FULL"
    run check_samples "$samples"
    echo "$output"
    assert_success
    run -0 ns_info test defrag_blocks
    echo "defrag_blocks: $output"
    [ "$output" -gt 0 ]
    verify_load "${load[@]}" "$log"
    restart_node "${args[@]}"
    verify_load "${load[@]}" "$log"
}

@test "soak in segments with restarts between them (SIGTERM and kill -9, commit-to-device=true)" {
    local args=(-d "$DATA" --ns test,commit-to-device=true,write-block=64K,disk=4M)
    local load=(-k 600 -p 64 -d 10 -z 1600 -H 200)
    local state=$BATS_TEST_TMPDIR/state seg log
    start_node "${args[@]}"
    for seg in $(seq 1 8); do
        log=$BATS_TEST_TMPDIR/log.$seg
        run_sampled "$log" "$BATS_TEST_TMPDIR/samples" "${load[@]}" -c 15000 -b $((seg * 100000000)) -r "$seg"
        assert_equal "$LOAD_STATUS" 0
        [ "$(grep -c '^R ' "$log")" -eq 0 ] || fail "segment $seg: writes refused with NAMESPACE_FULL"
        if ((seg % 2)); then
            kill9_node
            start_node "${args[@]}"
        else
            restart_node "${args[@]}"
        fi
        run "$KVCRASH" --verify -e "$KV_ENDPOINT" "${load[@]}" --state "$state" "$log"
        echo "segment $seg: $output" | tail -5
        assert_success
    done
    run check_samples "$BATS_TEST_TMPDIR/samples"
    echo "$output"
    assert_success
    run -0 ns_info test read_errors
    assert_output 0
}
