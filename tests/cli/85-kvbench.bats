#!/usr/bin/env bats
# kvbench: options, output and error paths against a real node.  Short
# runs only: these check behaviour, not speed (make bench measures speed).

load helpers

setup() {
    start_node
}

@test "insert writes every key once, then reads find them all" {
    run -0 --separate-stderr kvbench -w insert -k 500 -c 4 -p 8 -d 30 --json
    assert_output --regexp '^\{"workload":"insert","ops":500,'
    assert_output --partial '"errors":{}'
    run -0 kvquery info test
    assert_output --partial '"records":500,'
    run -0 kvquery --int-key get test bench 499
    assert_output --regexp '"bins":\{"v":"abcdefghijklmnopqrstuvwxyz'
    run -0 --separate-stderr kvbench -w read -k 500 -c 2 -p 4 --count 2000 --json
    assert_output --regexp '"ops":2000,'
    assert_output --partial '"errors":{}'
}

@test "--json has every field, one object per workload, in order" {
    kvbench -w insert -k 200 -c 2 -p 2 --json > /dev/null
    run -0 --separate-stderr kvbench -w read,update,A,B,C -k 200 -c 2 -p 2 --count 300 --json
    [ "${#lines[@]}" -eq 5 ]
    python3 - "$output" <<'PY'
import json, sys
rows = [json.loads(l) for l in sys.argv[1].splitlines()]
assert [r["workload"] for r in rows] == ["read", "update", "A", "B", "C"], rows
for r in rows:
    for f in ("workload", "ops", "seconds", "ops_per_sec", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "errors"):
        assert f in r, (f, r)
    assert r["ops"] == 300, r
    assert 0 < r["p50_us"] <= r["p90_us"] <= r["p99_us"] <= r["p999_us"] <= r["max_us"], r
    assert r["errors"] == {}, r
PY
}

@test "update writes values of the given size and type" {
    run -0 kvbench -w update -k 10 -s 7 -c 1 -p 1 --count 50 --bytes --json
    run -0 kvquery --int-key get test bench 3
    assert_output --partial '"bins":{"v":{"$bytes":"YWJjZGVmZw=="}}'
}

@test "reads of keys never inserted are counted as NOT_FOUND errors" {
    run -0 --separate-stderr kvbench -w read -k 1000 -c 1 -p 4 --count 100 --json
    assert_output --partial '"errors":{"NOT_FOUND":100}'
    run -0 --separate-stderr kvbench -w read -k 1000 -c 1 -p 4 --count 100
    assert_output --partial 'errors: 100 not found'
}

@test "--rate keeps to the rate" {
    run -0 --separate-stderr kvbench -w update -k 100 -c 2 -p 4 --rate 500 -d 1 --json
    python3 - "$output" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
assert 350 <= r["ops_per_sec"] <= 650, r
PY
}

@test "--progress prints a line a second on stderr" {
    run -0 --separate-stderr kvbench -w update -k 100 -c 1 -p 1 -d 2.5 --progress
    [[ "$stderr" == *"kvbench: update"*"ops/s"*"p99"* ]]
}

@test "an unknown namespace or an unreachable node is refused before loading, exit 2" {
    run -2 --separate-stderr kvbench -n nope --count 10
    assert_stderr --partial "no namespace 'nope' on"
    refute_output --partial workload
    stop_node
    run -2 --separate-stderr kvbench -e "$(kv_free_endpoint)" --count 10
    assert_stderr --partial 'cannot connect to'
}

@test "bad options are usage errors, exit 2" {
    run -2 --separate-stderr kvbench -w delete
    assert_stderr --partial "-w 'delete': unknown workload"
    run -2 --separate-stderr kvbench -c 0
    assert_stderr --partial "-c '0': expected an integer from 1 to 1000"
    run -2 --separate-stderr kvbench -d abc
    assert_stderr --partial "-d 'abc'"
    run -2 --separate-stderr kvbench --rate -5
    run -2 --separate-stderr kvbench extra
    assert_stderr --partial "unexpected argument 'extra'"
    run -2 --separate-stderr kvbench --set "$(printf '%064d' 0)"
    assert_stderr --partial 'longer than 63 bytes'
}

# bench_policies PID: "NAME POLICY" for each thread of a running kvbench
# (0 normal, 3 batch), sorted; empty until libzmq's I/O thread exists.
bench_policies() {
    local t out=""
    for t in /proc/"$1"/task/*; do
        out+="$(cat "$t/comm" 2>/dev/null) $(sed 's/.*) //' "$t/stat" 2>/dev/null | awk '{ print $39 }')"$'\n'
    done
    [[ "$out" == *ZMQbg/IO/0* ]] || return 1
    printf '%s' "$out" | LC_ALL=C sort
}

@test "--sched: the sending thread runs under SCHED_BATCH by default, libzmq's normal; bad values exit 2" {
    local policy want
    for policy in default batch normal; do
        local args=()
        [ "$policy" = default ] || args=(--sched "$policy")
        kvbench -w update -k 100 -c 1 -d 20 --rate 100 "${args[@]}" > /dev/null &
        local pid=$! got="" i
        for ((i = 0; i < 100; i++)); do # up to 10 s for the threads to start
            got=$(bench_policies "$pid") && break
            sleep 0.1
        done
        kill "$pid"
        wait "$pid" || true
        [ "$policy" = normal ] && want=0 || want=3
        assert_equal "$got" $'ZMQbg/IO/0 0\nZMQbg/Reaper 0\nkvbench '"$want"
    done
    run -2 --separate-stderr kvbench --sched fifo
    assert_stderr "kvbench: --sched 'fifo': expected batch or normal"
}
