#!/usr/bin/env bats
# Migrations (kvroute orders them, kvrepl carries them out): a node that
# joins, leaves, dies or comes back under a write load; every acknowledged
# write stays, the replicas end identical, and reads during the migrations
# see every record that exists, with its value.

load helpers

KVCRASH=$KV_ROOT/build/tests/kvcrash
ROUTER_ARGS=()

# preload N: records pre/r0..r(N-1) with v=i, written through the router
# before the test's changes and never written again.
preload() {
    python3 -c "
import json
for i in range($1): print(json.dumps({'set': 'pre', 'key': 'r%d' % i, 'bins': {'v': i}}))" |
        kvquery -e "$ROUTER_EP" import test >/dev/null
}

# reader N: until $BATS_TEST_TMPDIR/stop exists (at most 400 rounds), read
# pre/r0..r(N-1) in one batch through the router; every failure or wrong
# value goes to $BATS_TEST_TMPDIR/bad; the rounds read to .../rounds.
reader() {
    local n=$1 round=0 keys=()
    local i
    for ((i = 0; i < n; i++)); do keys+=("r$i"); done
    while [ ! -e "$BATS_TEST_TMPDIR/stop" ] && [ "$round" -lt 400 ]; do
        if ! kvquery -e "$ROUTER_EP" --timeout 5000 batch test pre "${keys[@]}" >"$BATS_TEST_TMPDIR/read.out" \
            2>"$BATS_TEST_TMPDIR/read.err"; then
            echo "round $round: batch failed: $(head -c 400 "$BATS_TEST_TMPDIR/read.err")" >>"$BATS_TEST_TMPDIR/bad"
        fi
        python3 -c "
import json, sys
n = $n
seen = {}
for line in open('$BATS_TEST_TMPDIR/read.out'):
    r = json.loads(line)
    seen[r['key']] = r['bins']['v']
bad = [k for k in ('r%d' % i for i in range(n)) if seen.get(k) != int(k[1:])]
if bad:
    print('round $round: %d of %d wrong or missing, e.g. %s -> %r' % (len(bad), n, bad[0], seen.get(bad[0])))
" >>"$BATS_TEST_TMPDIR/bad"
        round=$((round + 1))
    done
    echo "$round" >"$BATS_TEST_TMPDIR/rounds"
}

# records_on EP: the live records of namespace test on node EP
records_on() { kvquery -e "$1" info test | python3 -c 'import json, sys; print(json.load(sys.stdin)["records"])'; }

# copies_are N EP...: the nodes hold N records between them
copies_are() {
    local n=$1 sum=0 ep
    shift
    for ep in "$@"; do sum=$((sum + $(records_on "$ep"))); done
    [ "$sum" -eq "$n" ]
}

# distinct: records in namespace test, through the router
distinct() { kvquery -e "$ROUTER_EP" scan test | wc -l; }

# load_start COUNT: a kvcrash write load through the router, in the background
load_start() {
    "$KVCRASH" -T -e "$ROUTER_EP" -k 2000 -p 16 -c "$1" -t 2000 -z 200 >"$BATS_TEST_TMPDIR/load.log" \
        2>"$BATS_TEST_TMPDIR/load.err" 3>&- &
    LOAD_PID=$!
    KV_NODE_PIDS+=("$LOAD_PID")
}

# acks_past N: the load has N acknowledged writes
acks_past() { [ "$(grep -c '^A' "$BATS_TEST_TMPDIR/load.log")" -ge "$1" ]; }

# replicas_ok EP...: every write the load had acknowledged is on 2 of the
# nodes EP... (each node's own copies), each copy the last acknowledged
# write or one sent after it; then, if no write was in doubt, the copies
# of every partition are identical (kvrepl verify --replicas).  The
# nodes drop the partitions they no longer hold within a sweep (~3 s).
replicas_ok() {
    wait_until 20 "$KV_ROOT/tests/tools/replicas_check.py" "$BATS_TEST_TMPDIR/load.log" 2 "$@"
    run "$KV_ROOT/tests/tools/replicas_check.py" "$BATS_TEST_TMPDIR/load.log" 2 "$@"
    echo "$output" | tail -1 >&3
    assert_success
    local doubt
    doubt=$(grep -c '^U' "$BATS_TEST_TMPDIR/load.log" || true)
    echo "writes in doubt: $doubt" >&3
    if [ "$doubt" -eq 0 ]; then
        run kvrepl verify --replicas "$ROUTER_EP" --ns test
        echo "$output"
        assert_success
    fi
}

# load_check: the load ended well, and every acknowledged write is there
load_check() {
    local st=0
    wait "$LOAD_PID" || st=$?
    cat "$BATS_TEST_TMPDIR/load.err" >&3
    [ "$st" -eq 0 ]
    run "$KVCRASH" --verify -e "$ROUTER_EP" -k 2000 -z 200 "$BATS_TEST_TMPDIR/load.log"
    echo "$output"
    assert_success
    assert_output --partial " 0 bad"
}

@test "a 4th node joins under a write load: it is filled, every write is on both copies, each node holds half, no read missed" {
    [ -x "$KVCRASH" ] || skip "no $KVCRASH (make build/tests/kvcrash)"
    start_cluster 3
    preload 2000
    load_start 30000
    reader 2000 3>&- &
    local reader_pid=$!
    KV_NODE_PIDS+=("$reader_pid")
    wait_until 10 acks_past 2000
    start_node -d "$BATS_TEST_TMPDIR/n4" --join "$ROUTER_EP"
    local n4=$KV_ENDPOINT
    wait_until 60 settled "$ROUTER_EP" "['up', 'up', 'up', 'up']" 1
    grep 'kvroute: migration done' "$ROUTER_LOG" | tail -1 >&3
    load_check
    touch "$BATS_TEST_TMPDIR/stop"
    wait "$reader_pid"
    echo "reader: $(cat "$BATS_TEST_TMPDIR/rounds") rounds of 2000 reads" >&3
    [ "$(cat "$BATS_TEST_TMPDIR/rounds")" -ge 1 ]
    [ ! -s "$BATS_TEST_TMPDIR/bad" ] || { cat "$BATS_TEST_TMPDIR/bad"; false; }
    replicas_ok "${NODES[@]}" "$n4"
    # the others drop the partitions they no longer hold: 2 copies in all,
    # about half of the records on each node
    local n
    n=$(distinct)
    wait_until 20 copies_are $((2 * n)) "${NODES[@]}" "$n4"
    local ep held
    for ep in "${NODES[@]}" "$n4"; do
        held=$(records_on "$ep")
        echo "$ep holds $held of $n" >&3
        [ "$held" -gt $((n * 40 / 100)) ] && [ "$held" -lt $((n * 60 / 100)) ]
    done
}

@test "a node removed, then one killed, under a write load: rf is restored each time and no acknowledged write is lost" {
    [ -x "$KVCRASH" ] || skip "no $KVCRASH (make build/tests/kvcrash)"
    start_cluster 4
    load_start 40000
    wait_until 10 acks_past 2000
    local id v
    id=$(cluster_json "$ROUTER_EP" 'd["nodes"][3]["id"]')
    kvquery -e "$ROUTER_EP" cluster remove "$id" >/dev/null
    # it serves (leaving) until its partitions are copied, then leaves
    wait_until 60 settled "$ROUTER_EP" "['up', 'up', 'up', 'removed']" 1
    v=$(cluster_json "$ROUTER_EP" 'd["version"]')
    kill -KILL "${NODE_PIDS[2]}"
    wait_until 60 settled "$ROUTER_EP" "['up', 'up', 'gone', 'removed']" "$v"
    load_check
    replicas_ok "${NODES[0]}" "${NODES[1]}"
    # two nodes, rf 2: each holds every record
    local n
    n=$(distinct)
    wait_until 20 copies_are "$n" "${NODES[0]}"
    wait_until 20 copies_are "$n" "${NODES[1]}"
}

@test "a node killed and restarted under a write load catches up: the replicas verify identical" {
    [ -x "$KVCRASH" ] || skip "no $KVCRASH (make build/tests/kvcrash)"
    start_cluster 3
    load_start 40000
    wait_until 10 acks_past 2000
    kill -KILL "${NODE_PIDS[2]}"
    wait_until 10 version_past "$ROUTER_EP" 1
    local acks
    acks=$(grep -c '^A' "$BATS_TEST_TMPDIR/load.log")
    wait_until 20 acks_past $((acks + 3000))
    local v
    v=$(cluster_json "$ROUTER_EP" 'd["version"]')
    start_node -d "$BATS_TEST_TMPDIR/n3" -l "${NODES[2]}" --join "$ROUTER_EP"
    wait_until 60 settled "$ROUTER_EP" "['up', 'up', 'up']" "$v"
    load_check
    replicas_ok "${NODES[@]}"
    local n
    n=$(distinct)
    wait_until 20 copies_are $((2 * n)) "${NODES[@]}"
}
