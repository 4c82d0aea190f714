#!/usr/bin/env bats
# Requests through kvroute, synchronous replication (rf=2, commit-all) and
# failover: kill -9 of a node under a write load loses no acknowledged write.

load helpers

KVCRASH=$KV_ROOT/build/tests/kvcrash
ROUTER_ARGS=()

# key_mastered_by EP: the first of k1..k60 (in set s, written through the
# router first) that the node at EP masters (the others answer WRONG_NODE).
key_mastered_by() {
    local k
    for k in $(seq 1 60); do
        kvquery -e "$ROUTER_EP" put test s "k$k" v=0 >/dev/null
        if kvquery -e "$1" exists test s "k$k" >/dev/null 2>&1; then
            echo "k$k"
            return 0
        fi
    done
    return 1
}
records_of() { kvquery -e "$1" info test | python3 -c 'import json, sys; print(json.load(sys.stdin)["records"])'; }

@test "10k keys through kvroute: each node masters a third and holds two thirds" {
    start_cluster 3
    run kvbench -e "$ROUTER_EP" -w insert -c 4 -p 16 -k 10000 --count 10000 --no-progress --json
    assert_success
    python3 -c 'import json, sys; r = json.loads(sys.argv[1]); assert r["ops"] == 10000 and not r["errors"], r' "$output"
    local total=0 i n
    for i in 0 1 2; do
        n=$(records_of "${NODES[$i]}")
        echo "node $i holds $n" >&3
        # two copies of 10000 keys spread over 3 nodes
        [ "$n" -ge 6000 ] && [ "$n" -le 7400 ]
        total=$((total + n))
    done
    [ "$total" -eq 20000 ]
    # a batch of 3000 keys through the router is split by master and put
    # back in key order; the same straight to the masters
    seq 0 2999 | kvquery -e "$ROUTER_EP" --int-key batch test bench >"$BATS_TEST_TMPDIR/b1"
    seq 0 2999 | kvquery -e "$ROUTER_EP" --direct --int-key batch test bench >"$BATS_TEST_TMPDIR/b2"
    run bash -c "python3 -c 'import json,sys; print([json.loads(l)[\"key\"] for l in open(sys.argv[1])] == list(range(3000)))' $BATS_TEST_TMPDIR/b1"
    assert_output True
    run cmp "$BATS_TEST_TMPDIR/b1" "$BATS_TEST_TMPDIR/b2"
    assert_success
}

@test "every operation through kvroute and with --direct gives the same results as one node" {
    # the same script against a lone node and against a 3-node cluster,
    # through the router and straight to the masters
    script() {
        local e=$1 direct=${2:-}
        kvquery() { command kvquery $direct "$@"; }
        kvquery -e "$e" put test users alice name=Alice age:int=30
        kvquery -e "$e" put test users alice name=Alice --exists create-only || echo "exit $?"
        kvquery -e "$e" get test users alice
        kvquery -e "$e" get test users alice name
        kvquery -e "$e" exists test users alice
        kvquery -e "$e" operate test users alice add:age=1 read:age
        kvquery -e "$e" touch test users alice --ttl 3600 | sed 's/"ttl":[0-9]*/"ttl":T/'
        kvquery -e "$e" put test users alice x=1 --gen 1 --gen-policy eq || echo "exit $?"
        kvquery -e "$e" delete test users alice
        kvquery -e "$e" get test users alice || echo "exit $?"
        kvquery -e "$e" --int-key put test nums 42 v:int=42
        kvquery -e "$e" --int-key get test nums 42
        kvquery -e "$e" put test users bob name=Bob
        kvquery -e "$e" put test users carol name=Carol
        kvquery -e "$e" batch test users bob nobody carol || echo "exit $?"
        kvquery -e "$e" scan test users | sort
        kvquery -e "$e" export test users 2>/dev/null | sort
        printf '%s\n' '{"key":"dave","bins":{"n":1}}' | kvquery -e "$e" import test 2>/dev/null
        kvquery -e "$e" get test "" dave
    }
    start_node
    local lone=$KV_ENDPOINT
    script "$lone" >"$BATS_TEST_TMPDIR/lone.out" 2>&1
    start_cluster 3
    script "$ROUTER_EP" >"$BATS_TEST_TMPDIR/cluster.out" 2>&1
    run diff "$BATS_TEST_TMPDIR/lone.out" "$BATS_TEST_TMPDIR/cluster.out"
    assert_success
    # again, straight to the masters (a fresh namespace state: delete first)
    for k in alice bob carol; do kvquery -e "$ROUTER_EP" delete test users "$k" >/dev/null 2>&1 || true; done
    kvquery -e "$ROUTER_EP" delete test "" dave >/dev/null
    kvquery -e "$ROUTER_EP" --int-key delete test nums 42 >/dev/null
    script "$ROUTER_EP" --direct >"$BATS_TEST_TMPDIR/direct.out" 2>&1
    run diff "$BATS_TEST_TMPDIR/lone.out" "$BATS_TEST_TMPDIR/direct.out"
    assert_success
    cat "$BATS_TEST_TMPDIR/cluster.out"
    run grep -c . "$BATS_TEST_TMPDIR/cluster.out"
    assert_output 25
}

@test "a write is on both copies before it is acknowledged" {
    start_cluster 2
    local k
    for k in $(seq 1 50); do kvquery -e "$ROUTER_EP" put test s "k$k" v="$k" >/dev/null; done
    # rf=2 on two nodes: each holds every record
    [ "$(records_of "${NODES[0]}")" -eq 50 ]
    [ "$(records_of "${NODES[1]}")" -eq 50 ]
    # a key the first node masters
    local mine
    mine=$(key_mastered_by "${NODES[0]}")
    # a replica that does not answer makes the write IN_DOUBT, never OK
    kill -STOP "${NODE_PIDS[1]}"
    # but --commit-master answers once the master has it
    local t0=$(_kv_now_us)
    run kvquery -e "$ROUTER_EP" --commit-master put test s "$mine" v=cm
    assert_success
    [ $(($(_kv_now_us) - t0)) -lt 900000 ]
    local i out
    for i in $(seq 1 20); do
        out=$(kvquery -e "$ROUTER_EP" --timeout 3000 put test s "p$i" v=1 2>&1) && continue
        [[ $out == *"in doubt"* ]] && break
    done
    kill -CONT "${NODE_PIDS[1]}"
    [[ $out == *"in doubt: write in doubt: a replica did not answer within 1000 ms"* ]]
}

@test "kill -9 of a node under a write load: every acknowledged write survives" {
    [ -x "$KVCRASH" ] || skip "no $KVCRASH (make build/tests/kvcrash)"
    start_cluster 3
    "$KVCRASH" -T -e "$ROUTER_EP" -k 2000 -p 16 -c 40000 -t 1000 -z 200 >"$BATS_TEST_TMPDIR/load.log" \
        2>"$BATS_TEST_TMPDIR/load.err" 3>&- &
    local load=$!
    wait_until 10 bash -c "[ \$(grep -c '^A' $BATS_TEST_TMPDIR/load.log) -ge 5000 ]"
    local killed_ms=$(($(_kv_now_us) / 1000))
    kill -KILL "${NODE_PIDS[2]}"
    wait_until 5 version_past "$ROUTER_EP" 1
    local st=0
    wait "$load" || st=$?
    cat "$BATS_TEST_TMPDIR/load.err" >&3
    [ "$st" -eq 0 ]
    # the clients' error window: the longest pause between acknowledgements
    awk '$1 == "A" { print $4 }' "$BATS_TEST_TMPDIR/load.log" | sort -n |
        awk -v k="$killed_ms" 'NR > 1 && $1 - p > m { m = $1 - p } { p = $1 } END { print "longest pause between acks: " m " ms" }' >&3
    run "$KVCRASH" --verify -e "$ROUTER_EP" -k 2000 -z 200 "$BATS_TEST_TMPDIR/load.log"
    echo "$output"
    assert_success
    assert_output --partial " 0 bad"
}

@test "a killed node that restarts serves nothing until it is filled, then masters its share with every write" {
    start_cluster 3
    local k
    for k in $(seq 1 30); do kvquery -e "$ROUTER_EP" put test s "k$k" v="$k" >/dev/null; done
    kill -KILL "${NODE_PIDS[2]}"
    # the others re-create the copies it held, and the table settles without it
    wait_until 20 settled "$ROUTER_EP" "['up', 'up', 'gone']" 1
    for k in $(seq 31 60); do kvquery -e "$ROUTER_EP" put test s "k$k" v="$k" >/dev/null; done
    for k in $(seq 1 10); do kvquery -e "$ROUTER_EP" delete test s "k$k" >/dev/null; done
    # it restarts with its data directory: its table ranks it, so it serves
    # nothing until the router installs a newer table
    start_node -d "$BATS_TEST_TMPDIR/n3" -l "${NODES[2]}"
    grep -q 'serves no partition until a router installs a newer table' "$NODE_LOG"
    run kvquery -e "${NODES[2]}" get test s k11
    assert_failure
    assert_output --partial "wrong node"
    # (the version before the add: the fills may be done, and the settled
    # table chosen, before a version read after it)
    local v
    v=$(cluster_json "$ROUTER_EP" 'd["version"]')
    run kvquery -e "$ROUTER_EP" cluster add "${NODES[2]}"
    assert_success
    # it is filled (its stale copies replaced, the deleted records gone) and ranked
    wait_until 20 settled "$ROUTER_EP" "['up', 'up', 'up']" "$v"
    run cluster_json "$ROUTER_EP" '[n["masters"] > 1000 for n in d["nodes"]], sum(n["masters"] for n in d["nodes"])'
    assert_output "[True, True, True] 4096"
    run kvrepl verify --replicas "$ROUTER_EP" --ns test
    assert_success
    for k in $(seq 1 10); do
        run kvquery -e "$ROUTER_EP" get test s "k$k"
        assert_failure 1
    done
    for k in $(seq 11 60); do
        run kvquery -e "$ROUTER_EP" get test s "k$k"
        assert_success
        assert_output --partial "\"v\":\"$k\""
    done
}

@test "with filling members: writes are not in doubt; the last ranked member gone leaves its partitions UNAVAILABLE" {
    # one ranked node (rf=2, so nothing to replicate to), then two join,
    # filling; their migrations fail (a kvrepl that always fails), so they
    # stay filling
    start_node -d "$BATS_TEST_TMPDIR/n1"
    local first=$KV_ENDPOINT first_pid=$NODE_PID
    start_router --node "$first" --kvrepl /bin/false
    wait_until 10 version_is "$ROUTER_EP" 1
    start_node -d "$BATS_TEST_TMPDIR/n2"
    local second=$KV_ENDPOINT
    start_node -d "$BATS_TEST_TMPDIR/n3"
    local third=$KV_ENDPOINT
    kvquery -e "$ROUTER_EP" cluster add "$second" >/dev/null
    kvquery -e "$ROUTER_EP" cluster add "$third" >/dev/null
    wait_until 10 members_are "$ROUTER_EP" "['up', 'filling', 'filling']"
    wait_until 10 grep -q 'migration FAILED' "$ROUTER_LOG"
    local v
    v=$(cluster_json "$ROUTER_EP" 'd["version"]')
    run cluster_json "$ROUTER_EP" '[n["state"] for n in d["nodes"]], sum(n["masters"] for n in d["nodes"]), sum(n["replicas"] for n in d["nodes"])'
    assert_output "['up', 'filling', 'filling'] 4096 0"
    run bash -c "kvquery -e $ROUTER_EP info partitions | python3 -c 'import json,sys; p=json.load(sys.stdin)[\"partitions\"]; print(len(p), {len(r) for r in p})'"
    assert_output "4096 {1}"
    local k
    for k in $(seq 1 20); do
        run kvquery -e "$ROUTER_EP" put test s "k$k" v=1
        assert_success
    done
    # the only ranked node dies: the table keeps it (the filling two do not
    # have its data), so its partitions are UNAVAILABLE, not served empty
    kill -KILL "$first_pid"
    wait_until 10 bash -c "kvquery -e $ROUTER_EP info cluster | grep -q '\"state\":\"gone\"'"
    run kvquery -e "$ROUTER_EP" get test s k1
    assert_failure 2
    assert_output --partial "partition unavailable"
    assert_output --partial "is gone (table version $v)"
    run cluster_json "$ROUTER_EP" 'd["version"], [n["state"] for n in d["nodes"]]'
    assert_output "$v ['gone', 'filling', 'filling']"
}

@test "a paused master's queued write cannot overwrite what the new master acknowledged" {
    start_cluster 3
    kvquery -e "$ROUTER_EP" put test s probe v=0 >/dev/null
    # a key the first node masters
    local mine
    mine=$(key_mastered_by "${NODES[0]}")
    kill -STOP "${NODE_PIDS[0]}"
    # a write that waits in the paused master's queue
    kvquery -e "$ROUTER_EP" --timeout 20000 put test s "$mine" v=fromA >"$BATS_TEST_TMPDIR/a.out" 2>&1 3>&- &
    local late=$!
    wait_until 10 version_past "$ROUTER_EP" 1
    run kvquery -e "$ROUTER_EP" put test s "$mine" v=fromB
    assert_success
    kill -CONT "${NODE_PIDS[0]}"
    wait "$late" || true
    cat "$BATS_TEST_TMPDIR/a.out"
    # the paused master's write was not acknowledged, and did not win
    run grep -c '"gen"' "$BATS_TEST_TMPDIR/a.out"
    assert_output 0
    run kvquery -e "$ROUTER_EP" get test s "$mine"
    assert_success
    assert_output --partial '"v":"fromB"'
}

@test "after a whole-cluster restart the members are resumed, not demoted, and every record is served" {
    # all three come back before the router gives up on any (30 missed
    # heartbeats, 4.5 s): a restart of the whole cluster, not failures
    ROUTER_ARGS=(--hb-misses 30)
    start_cluster 3 --ns test,commit-to-device=true
    local k
    for k in $(seq 1 100); do kvquery -e "$ROUTER_EP" put test s "k$k" v="$k" >/dev/null; done
    local i eps=("${NODES[@]}")
    # all three at once
    kill -KILL "${NODE_PIDS[0]}" "${NODE_PIDS[1]}" "${NODE_PIDS[2]}"
    for i in 0 1 2; do stop_node "${NODE_PIDS[$i]}"; done
    for i in 0 1 2; do
        start_node -d "$BATS_TEST_TMPDIR/n$((i + 1))" -l "${eps[$i]}" --ns test,commit-to-device=true --join "$ROUTER_EP"
        grep -q 'serves no partition until' "$NODE_LOG"
    done
    wait_until 15 bash -c "grep -q 'every ranked member restarted' $ROUTER_LOG"
    wait_until 10 nodes_up "$ROUTER_EP" 3
    run cluster_json "$ROUTER_EP" '[n["state"] for n in d["nodes"]]'
    assert_output "['up', 'up', 'up']"
    for k in $(seq 1 100); do
        run kvquery -e "$ROUTER_EP" get test s "k$k"
        assert_success
    done
}

@test "a whole-cluster restart, one node at a time: no table leaves out the data, every record is served" {
    start_cluster 3 --ns test,commit-to-device=true
    local k i eps=("${NODES[@]}")
    for k in $(seq 1 100); do kvquery -e "$ROUTER_EP" put test s "k$k" v="$k" >/dev/null; done
    kill -KILL "${NODE_PIDS[0]}" "${NODE_PIDS[1]}" "${NODE_PIDS[2]}"
    for i in 0 1 2; do stop_node "${NODE_PIDS[$i]}"; done
    # the first one back, alone, after the router gave up on all three
    wait_until 10 bash -c "[ \$(kvquery -e $ROUTER_EP info cluster | grep -o '\"state\":\"gone\"' | wc -l) = 3 ]"
    start_node -d "$BATS_TEST_TMPDIR/n1" -l "${eps[0]}" --ns test,commit-to-device=true --join "$ROUTER_EP"
    wait_until 10 bash -c "kvquery -e $ROUTER_EP info cluster | grep -q '\"state\":\"up\"'"
    # it holds a copy of only two thirds of the partitions: it is not
    # resumed, and the table keeps the two others (their partitions wait)
    run kvquery -e "$ROUTER_EP" get test s k1
    [ "$status" -ne 0 ] || [[ $output == *'"v":"1"'* ]]
    run cluster_json "$ROUTER_EP" 'd["version"]'
    assert_output 1
    # the second one back: the two hold every partition, they are resumed
    start_node -d "$BATS_TEST_TMPDIR/n2" -l "${eps[1]}" --ns test,commit-to-device=true --join "$ROUTER_EP"
    wait_until 10 bash -c "grep -q 'resuming the 2 back' $ROUTER_LOG"
    # the last one comes back (the others went on without it), is filled
    # and ranked again
    start_node -d "$BATS_TEST_TMPDIR/n3" -l "${eps[2]}" --ns test,commit-to-device=true --join "$ROUTER_EP"
    wait_until 20 settled "$ROUTER_EP" "['up', 'up', 'up']"
    for k in $(seq 1 100); do
        run kvquery -e "$ROUTER_EP" get test s "k$k"
        assert_success
        assert_output --partial "\"v\":\"$k\""
    done
}
