#!/usr/bin/env bats
# kvrepl ship: every change of one cluster shipped to another under a
# write load, until verify finds them equal; killed with -9 it resumes
# from its cursor; a damaged cursor is refused; --set and --bins; usage
# errors; an unreachable endpoint is retried until a signal stops it.

load helpers

KVCRASH=$KV_ROOT/build/tests/kvcrash
BG_PIDS=() # ship and load processes this test started and has not reaped

teardown() {
    local pid
    for pid in "${BG_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    BG_PIDS=()
    if [ -z "${BATS_TEST_COMPLETED:-}" ]; then
        for f in "$BATS_TEST_TMPDIR"/ship*.log; do
            [ -e "$f" ] && { echo "--- $f"; cat "$f"; }
        done
    fi
    kv_teardown
}

# forget PID: PID has been reaped.
forget() {
    local pid keep=()
    for pid in "${BG_PIDS[@]}"; do [ "$pid" = "$1" ] || keep+=("$pid"); done
    BG_PIDS=(${keep[@]+"${keep[@]}"})
}

# ship_start LOG ARGS...: kvrepl ship ARGS in the background, its
# standard error in LOG; its pid in SHIP_PID.
ship_start() {
    local log=$1
    shift
    kvrepl ship "$@" 2>"$log" 3>&- </dev/null &
    SHIP_PID=$!
    BG_PIDS+=("$SHIP_PID")
}

# ship_stop PID: SIGTERM, and its exit status in SHIP_STATUS.
ship_stop() {
    kill -TERM "$1"
    SHIP_STATUS=0
    wait "$1" || SHIP_STATUS=$?
    forget "$1"
}

# cursor_of FILE: the cursor in a cursor file.
cursor_of() { cut -d' ' -f2 "$1"; }
# cursor_past FILE MS: the cursor in FILE is past MS.
cursor_past() { [ -s "$1" ] && [ "$(cursor_of "$1")" -gt "$2" ]; }
# passes_in LOG N: LOG shows N passes done.
passes_in() { [ "$(grep -cE 'ship: pass [0-9]+: ' "$1")" -ge "$2" ]; }
# first_pass LOG: records + tombstones of the first pass LOG shows done.
first_pass() {
    sed -nE 's/.*ship: pass [0-9]+: ([0-9]+) records, ([0-9]+) tombstones.*/\1 \2/p' "$1" | head -1 |
        awk '{ print $1 + $2 }'
}
# acks_past N: the load has N acknowledged writes.
acks_past() { [ "$(grep -c '^A' "$BATS_TEST_TMPDIR/load.log")" -ge "$1" ]; }

@test "ship between two clusters under a write load converges; killed with -9, it resumes from its cursor" {
    [ -x "$KVCRASH" ] || skip "no $KVCRASH (make build/tests/kvcrash)"
    start_cluster 3
    local SRC=$ROUTER_EP
    start_cluster 2
    local DST=$ROUTER_EP
    local T=$BATS_TEST_TMPDIR cursor=$BATS_TEST_TMPDIR/ship.cursor
    # 3000 records written before shipping starts and never again
    python3 -c "
import json
for i in range(3000): print(json.dumps({'set': 'pre', 'key': 'r%d' % i, 'bins': {'v': i}}))" |
        kvquery -e "$SRC" import test >/dev/null
    ship_start "$T/ship1.log" --from "$SRC" --to "$DST" --cursor "$cursor" -v
    local ship1=$SHIP_PID
    # puts and deletes (10%) to 2000 keys, through SRC's router
    "$KVCRASH" -T -e "$SRC" -k 2000 -p 16 -c 30000 -t 2000 -z 200 >"$T/load.log" 2>"$T/load.err" 3>&- &
    local load=$!
    BG_PIDS+=("$load")
    # the first pass shipped all that was there before; once the cursor
    # is past that pass's start (its cursor + --overlap), a restart does
    # not ship it again
    wait_until 30 passes_in "$T/ship1.log" 1
    local c1
    c1=$(sed -nE 's/.*ship: pass [0-9]+: .* cursor ([0-9]+),.*/\1/p' "$T/ship1.log" | head -1)
    wait_until 30 cursor_past "$cursor" $((c1 + 1000))
    wait_until 30 acks_past 5000
    kill -KILL "$ship1"
    wait "$ship1" || true
    forget "$ship1"
    local killed_at
    killed_at=$(cursor_of "$cursor")
    echo "ship killed with -9 at cursor $killed_at: $(grep -cE 'ship: pass [0-9]+: ' "$T/ship1.log") passes" >&3
    # again from the same cursor, while the load goes on
    ship_start "$T/ship2.log" --from "$SRC" --to "$DST" --cursor "$cursor" -v
    local ship2=$SHIP_PID
    wait_until 10 grep -q "from cursor $killed_at$" "$T/ship2.log"
    wait_until 30 passes_in "$T/ship2.log" 1
    local st=0
    wait "$load" || st=$?
    forget "$load"
    cat "$T/load.err" >&3
    [ "$st" -eq 0 ]
    wait_until 30 passes_in "$T/ship2.log" 3
    ship_stop "$ship2"
    [ "$SHIP_STATUS" -eq 0 ]
    grep -q "kvrepl: ship: stopped by SIGTERM after [0-9]* passes" "$T/ship2.log"
    # a last pass, once the load has stopped: the clusters are equal
    run --separate-stderr kvrepl ship --from "$SRC" --to "$DST" --cursor "$cursor" --once
    assert_success
    echo "$stderr" | tail -1 >&3
    run kvrepl verify "$SRC" "$DST"
    echo "$output"
    assert_success
    # DST's replicas took every copy its masters did
    run kvrepl verify --replicas "$DST"
    echo "$output"
    assert_success
    echo "records DST held with a higher generation, deleted first: $(sed -nE 's/.*, ([0-9]+) over a record of a higher generation.*/\1/p' "$T"/ship*.log | awk '{ n += $1 } END { print n + 0 }')" >&3
    # every acknowledged write of the load (deletes too) is on DST
    run "$KVCRASH" --verify -e "$DST" -k 2000 -z 200 "$T/load.log"
    echo "$output" | tail -1
    assert_success
    # the first pass shipped the whole data set; the first one after the
    # restart only what changed since the cursor
    local whole first1 first2
    whole=$(kvquery -e "$SRC" scan test | wc -l)
    first1=$(first_pass "$T/ship1.log")
    first2=$(first_pass "$T/ship2.log")
    echo "data set $whole records; first pass $first1 records and tombstones; first pass after kill -9: $first2" >&3
    [ "$first1" -ge 3000 ]
    [ "$first2" -lt 3000 ] && [ "$first2" -lt "$whole" ]
}

@test "ship --once: deletes ship as tombstones from a file namespace, not from one in memory; a pass ships what changed" {
    start_node -d "$BATS_TEST_TMPDIR/a"
    local A=$KV_ENDPOINT
    start_node
    local M=$KV_ENDPOINT
    start_node
    local B=$KV_ENDPOINT
    local c=$BATS_TEST_TMPDIR/c
    for k in k1 k2 k3; do kvquery -e "$A" put test s "$k" v="$k" >/dev/null; done
    run --separate-stderr kvrepl ship --from "$A" --to "$B" --cursor "$c" --once --overlap 0
    assert_success
    assert_stderr --partial "from the start (no cursor file)"
    assert_stderr --partial "pass 1: 3 records, 0 tombstones (3 applied, 0 not applied)"
    [ -s "$c" ]
    kvquery -e "$A" delete test s k1
    kvquery -e "$A" put test s k2 v=new >/dev/null
    # only what changed since the cursor (and within --overlap of it)
    run --separate-stderr kvrepl ship --from "$A" --to "$B" --cursor "$c" --once --overlap 0
    assert_success
    assert_stderr --partial "pass 1: 1 records, 1 tombstones (2 applied, 0 not applied)"
    gone test s k1 -e "$B"
    run kvquery -e "$B" get test s k2
    assert_output --partial '"v":"new"'
    run kvrepl verify "$A" "$B"
    assert_success
    # nothing changed: nothing shipped, no pass line without -v
    run --separate-stderr kvrepl ship --from "$A" --to "$B" --cursor "$c" --once --overlap 0
    assert_success
    [[ $stderr != *"pass 1:"* ]]
    run --separate-stderr kvrepl ship --from "$A" --to "$B" --cursor "$c" --once --overlap 0 -v
    assert_stderr --partial "pass 1: 0 records, 0 tombstones"
    # an in-memory namespace keeps no tombstones: its deletes do not ship
    kvquery -e "$M" put test s m1 v=1 >/dev/null
    kvrepl ship --from "$M" --to "$B" --cursor "$BATS_TEST_TMPDIR/m" --once 2>/dev/null
    kvquery -e "$M" delete test s m1
    run --separate-stderr kvrepl ship --from "$M" --to "$B" --cursor "$BATS_TEST_TMPDIR/m" --once
    assert_success
    kvquery -e "$B" get test s m1 >/dev/null
}

@test "ship --set ships one set and no deletes; --bins ships only the listed bins and skips records with none" {
    start_node -d "$BATS_TEST_TMPDIR/a"
    local A=$KV_ENDPOINT
    start_node
    local B=$KV_ENDPOINT
    start_node
    local C=$KV_ENDPOINT
    kvquery -e "$A" put test s k1 name=Ann age:int=30 city=Oslo >/dev/null
    kvquery -e "$A" put test s k2 city=Rome >/dev/null
    kvquery -e "$A" put test t k3 name=Tom >/dev/null
    kvquery -e "$A" put test t gone v=1 >/dev/null
    run --separate-stderr kvrepl ship --from "$A" --to "$B" --cursor "$BATS_TEST_TMPDIR/cb" --set t --once
    assert_success
    assert_stderr --partial "namespace 'test', set t from"
    assert_stderr --partial "pass 1: 2 records, 0 tombstones"
    [ "$(kvquery -e "$B" scan test | wc -l)" -eq 2 ]
    [ "$(kvquery -e "$B" scan test t | wc -l)" -eq 2 ]
    kvquery -e "$A" delete test t gone
    run --separate-stderr kvrepl ship --from "$A" --to "$B" --cursor "$BATS_TEST_TMPDIR/cb" --set t --once
    assert_success
    kvquery -e "$B" get test t gone >/dev/null # a delete has no set: not shipped
    run --separate-stderr kvrepl ship --from "$A" --to "$C" --cursor "$BATS_TEST_TMPDIR/cc" --bins name,age --once
    assert_success
    assert_stderr --partial "pass 1: 2 records, 1 tombstones (2 applied, 1 not applied), 1 skipped (none of --bins)"
    run kvquery -e "$C" get test s k1
    assert_output --partial '"bins":{"name":"Ann","age":30}'
    run kvquery -e "$C" get test t k3
    assert_output --partial '"bins":{"name":"Tom"}'
    gone test s k2 -e "$C"
    gone test t gone -e "$C"
}

@test "ship refuses a damaged cursor, and bad arguments; an unreachable endpoint is retried until SIGTERM" {
    start_node -d "$BATS_TEST_TMPDIR/a"
    local A=$KV_ENDPOINT
    start_node
    local B=$KV_ENDPOINT
    local c=$BATS_TEST_TMPDIR/c
    kvquery -e "$A" put test s k1 v=1 >/dev/null
    kvrepl ship --from "$A" --to "$B" --cursor "$c" --once 2>/dev/null
    local good
    good=$(cat "$c")
    # one digit changed, cut short, empty, not a cursor at all
    local bad
    for bad in "$(sed 's/ 1/ 2/' <<<"$good")" "${good:0:20}" "" "hello"; do
        printf '%s' "$bad" >"$c"
        [ -z "$bad" ] || [ "$bad" = "${good:0:20}" ] || echo >>"$c"
        run kvrepl ship --from "$A" --to "$B" --cursor "$c" --once
        assert_failure 2
        assert_output --partial "kvrepl: ship: --cursor $c is not a ship cursor (damaged?): "
        assert_output --partial "not starting (remove the file to ship everything again)"
    done
    printf '%s\n' "$good" >"$c"
    run kvrepl ship --from "$A" --to "$B" --cursor "$c" --once
    assert_success
    run kvrepl ship --from "$A" --to "$B" --cursor "$BATS_TEST_TMPDIR/no/such/dir/c" --once
    assert_failure 2
    assert_output --partial "kvrepl: ship: --cursor: cannot create $BATS_TEST_TMPDIR/no/such/dir/c.tmp: No such file or directory"
    # usage errors
    run kvrepl ship --from "$A" --to "$B" --once
    assert_failure 2
    assert_output --partial "ship: --cursor is required"
    run kvrepl ship --from "$A" --cursor "$c"
    assert_output --partial "ship: --to is required"
    run kvrepl ship --from "$A" --to "$B" --cursor "$c" --interval 1s
    assert_output --partial "--interval '1s': expected milliseconds from 0 to 3600000"
    run kvrepl ship --from "$A" --to "$B" --cursor "$c" --overlap -1
    assert_output --partial "--overlap '-1': expected milliseconds"
    run kvrepl ship --from "$A" --to "$B" --cursor "$c" --bins a,,b
    assert_failure 2
    assert_output --partial "--bins 'a,,b': '' is not a bin name (1 to 15 bytes)"
    run kvrepl ship --from "$A" --to "$B" --cursor "$c" --partitions 0-9
    assert_output --partial "ship: --partitions does not apply to ship"
    run kvrepl dump --from "$A" --once
    assert_output --partial "dump: --once does not apply to dump"
    run kvrepl ship --help
    assert_success
    [[ ${lines[0]} == "usage: kvrepl ship --from src --to dst "* ]]
    # --once with an endpoint nobody serves: the pass fails, exit 2
    local ep
    ep=$(kv_free_endpoint)
    run kvrepl ship --from "$ep" --to "$B" --cursor "$c" --once
    assert_failure 2
    assert_output --partial "kvrepl: ship: the pass failed: --from $ep: cannot connect to $ep: connection refused; the cursor"
    # without --once it tries again, with the same message, until SIGTERM
    ship_start "$BATS_TEST_TMPDIR/ship.log" --from "$A" --to "$ep" --cursor "$c"
    wait_until 10 grep -q "pass 2 failed: --to $ep: cannot connect to $ep: connection refused" "$BATS_TEST_TMPDIR/ship.log"
    grep -q "trying again in 1 s" "$BATS_TEST_TMPDIR/ship.log"
    [ "$(cat "$c")" = "$good" ] || [ "$(cursor_of "$c")" -ge "$(cut -d' ' -f2 <<<"$good")" ]
    ship_stop "$SHIP_PID"
    [ "$SHIP_STATUS" -eq 0 ]
    grep -q "stopped by SIGTERM after 0 passes (2 failed)\|stopped by SIGTERM after 0 passes ([0-9]* failed)" "$BATS_TEST_TMPDIR/ship.log"
}
