#!/usr/bin/env bats
# kvroute and kvnode's cluster part: node ids, the partition table agreed
# by Paxos, heartbeats and failover, and the refusals of bad members.

load helpers

# one_table_per_version LOG...: every "installed table version V ... hash H"
# line of the node logs names one hash per version.
one_table_per_version() {
    grep -h 'installed table version' "$@" |
        sed -E 's/.*installed table version ([0-9]+) .*hash ([0-9a-f]+).*/\1 \2/' | sort -u |
        awk '{ n[$1]++ } END { bad = 0; for (v in n) if (n[v] > 1) { print "version " v ": " n[v] " tables"; bad = 1 } exit bad }'
}

@test "three nodes and kvroute agree on table version 1; partitions spread evenly" {
    start_nodes 3
    start_router --node "${NODES[0]}" --node "${NODES[1]}" --node "${NODES[2]}"
    wait_until 10 nodes_up "$ROUTER_EP" 3
    run cluster_json "$ROUTER_EP" 'd["version"], d["namespaces"], sum(n["masters"] for n in d["nodes"]), sum(n["replicas"] for n in d["nodes"])'
    assert_output "1 test rf=2 ap 4096 4096"
    # each node masters about a third, and holds about two thirds
    run cluster_json "$ROUTER_EP" 'all(1200 <= n["masters"] <= 1530 and 2500 <= n["masters"] + n["replicas"] <= 2960 for n in d["nodes"])'
    assert_output True
    # every node installed the same table
    for i in 0 1 2; do
        run kvquery -e "${NODES[$i]}" info node
        assert_success
    done
    wait_until 5 bash -c "[ \$(grep -l 'installed table version 1 ' $BATS_TEST_TMPDIR/node*.log | wc -l) = 3 ]"
    run one_table_per_version "$BATS_TEST_TMPDIR"/node*.log
    assert_success
    # the full table: 4096 rows of two distinct nodes of the cluster
    run bash -c "kvquery -e $ROUTER_EP info partitions | python3 -c 'import json, sys; d = json.load(sys.stdin); p = d[\"partitions\"]; print(len(p), all(len(r) == 2 and r[0] != r[1] for r in p), len({x for r in p for x in r}))'"
    assert_output "4096 True 3"
}

@test "a node's id is stable across restarts and its table is kept" {
    start_nodes 1
    local id
    id=$(kvquery info node | python3 -c 'import json, sys; print(json.load(sys.stdin)["node"]["id"])')
    [ "$(cat "$BATS_TEST_TMPDIR/n1/node.id")" = "$id" ]
    start_router --node "${NODES[0]}"
    wait_until 10 version_is "$ROUTER_EP" 1
    wait_until 5 grep -q 'installed table version 1 ' "$BATS_TEST_TMPDIR/node.log"
    stop_node "${NODE_PIDS[0]}"
    start_node -d "$BATS_TEST_TMPDIR/n1"
    run bash -c "kvquery info node | python3 -c 'import json, sys; print(json.load(sys.stdin)[\"node\"][\"id\"])'"
    assert_output "$id"
    # a damaged node.id is refused with the file named
    stop_node
    echo nonsense >"$BATS_TEST_TMPDIR/n1/node.id"
    run kvnode -l 'tcp://127.0.0.1:*' -d "$BATS_TEST_TMPDIR/n1"
    assert_failure 1
    assert_output --partial "n1/node.id: expected 16 hex digits"
}

@test "kill -9 of a node: a new table without it within the bound" {
    start_nodes 3
    start_router --node "${NODES[0]}" --node "${NODES[1]}" --node "${NODES[2]}"
    wait_until 10 nodes_up "$ROUTER_EP" 3
    kill -KILL "${NODE_PIDS[2]}"
    local t0=$(_kv_now_us)
    wait_until 5 version_past "$ROUTER_EP" 1
    local ms=$((($(_kv_now_us) - t0) / 1000))
    echo "new table after $ms ms" >&3
    [ "$ms" -lt 3000 ]
    run cluster_json "$ROUTER_EP" 'sorted(n["state"] for n in d["nodes"]), sum(n["masters"] for n in d["nodes"])'
    assert_output "['gone', 'up', 'up'] 4096"
}

@test "two routers with different node sets never get two tables chosen for one version" {
    start_nodes 4
    # both start at once, each knowing three of the four nodes
    start_router --node "${NODES[0]}" --node "${NODES[1]}" --node "${NODES[2]}"
    local a=$ROUTER_EP
    start_router --node "${NODES[1]}" --node "${NODES[2]}" --node "${NODES[3]}"
    local b=$ROUTER_EP
    wait_until 15 members "$a" 4
    wait_until 15 members "$b" 4
    wait_until 5 bash -c "[ \"\$(kvquery -e $a info cluster | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"version\"])')\" = \"\$(kvquery -e $b info cluster | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"version\"])')\" ]"
    # then a failure makes both propose the next version at once
    kill -KILL "${NODE_PIDS[1]}"
    wait_until 10 members "$a" 3
    wait_until 10 members "$b" 3
    run one_table_per_version "$BATS_TEST_TMPDIR"/node*.log
    assert_success
    # and the checker itself catches two tables with one version
    printf 'kvnode: installed table version 9 (cluster 1, 2 nodes, hash aaaa)\nkvnode: installed table version 9 (cluster 1, 2 nodes, hash bbbb)\n' >"$BATS_TEST_TMPDIR/fake.log"
    run one_table_per_version "$BATS_TEST_TMPDIR/fake.log"
    assert_failure
    assert_output "version 9: 2 tables"
    # every live node ends with the routers' table
    local v
    v=$(cluster_json "$a" 'd["version"]')
    for i in 0 2 3; do
        wait_until 5 grep -q "installed table version $v " "$BATS_TEST_TMPDIR/node.$i.log" "$BATS_TEST_TMPDIR/node.log"
    done
}

@test "bad members are refused with a reason and the cluster keeps serving" {
    start_nodes 2
    start_router --node "${NODES[0]}" --node "${NODES[1]}"
    wait_until 10 nodes_up "$ROUTER_EP" 2
    # a node whose namespaces differ (rf=3) joins by itself
    start_node -d "$BATS_TEST_TMPDIR/bad" --ns test,rf=3 --join "$ROUTER_EP"
    wait_until 5 bash -c "kvquery -e $ROUTER_EP info cluster | grep -q 'namespaces differ'"
    run cluster_json "$ROUTER_EP" '[n["why"] for n in d["nodes"] if n["state"] == "refused"][0]'
    assert_output "its namespaces differ from the cluster's: it has 'test rf=3 ap', the cluster has 'test rf=2 ap'"
    # a router where a node should be
    local other=$ROUTER_EP
    start_router
    run kvquery -e "$other" cluster add "$ROUTER_EP"
    assert_success
    wait_until 5 bash -c "kvquery -e $other info cluster | grep -q 'unknown cluster command'"
    # something that is not kvstore at all (a TCP server that talks HTTP)
    python3 -c '
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept(); c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n"); c.close()
' >"$BATS_TEST_TMPDIR/http.port" 3>&- &
    local http=$!
    wait_until 5 test -s "$BATS_TEST_TMPDIR/http.port"
    run kvquery -e "$other" cluster add "tcp://127.0.0.1:$(cat "$BATS_TEST_TMPDIR/http.port")"
    assert_success
    wait_until 5 bash -c "grep -q 'no answer within 2000 ms (is it a running kvnode?)' $BATS_TEST_TMPDIR/router.*.log"
    kill "$http"
    wait "$http" 2>/dev/null || true
    # an unknown node id, and a malformed one
    run kvquery -e "$other" cluster remove 0123456789abcdef
    assert_failure 2
    assert_output --partial "no node 0123456789abcdef in this cluster"
    run kvquery -e "$other" cluster remove xyz
    assert_failure 2
    assert_output --partial "'xyz' is not a node id"
    # the cluster still has its two nodes and table
    run cluster_json "$other" 'd["version"], sum(n["masters"] for n in d["nodes"] if n["state"] == "up")'
    assert_output "1 4096"
    run kvquery -e "$other" put test s k v=1
    assert_success
}

@test "a node of another cluster is refused" {
    start_nodes 2
    start_router --node "${NODES[0]}"
    local a=$ROUTER_EP
    wait_until 10 version_is "$a" 1
    start_router --node "${NODES[1]}"
    local b=$ROUTER_EP
    wait_until 10 version_is "$b" 1
    run kvquery -e "$a" cluster add "${NODES[1]}"
    assert_success
    wait_until 5 bash -c "kvquery -e $a info cluster | grep -q 'it belongs to cluster'"
    run cluster_json "$a" 'd["version"], len(d["nodes"])'
    assert_output "1 2"
}

@test "cluster remove takes a node out of the table; add brings it back" {
    start_nodes 3
    start_router --node "${NODES[0]}" --node "${NODES[1]}" --node "${NODES[2]}"
    wait_until 10 nodes_up "$ROUTER_EP" 3
    local id
    id=$(cluster_json "$ROUTER_EP" 'd["nodes"][2]["id"]')
    kvquery -e "$ROUTER_EP" put test s k1 v=1 >/dev/null
    run kvquery -e "$ROUTER_EP" cluster remove "$id"
    assert_success
    assert_output "{\"removed\":\"$id\"}"
    # it leaves once its partitions are copied to the others: the settled
    # table has only them, with every partition and every record
    wait_until 20 settled "$ROUTER_EP" "['up', 'up', 'removed']" 1
    run cluster_json "$ROUTER_EP" 'd["version"], sum(n["masters"] for n in d["nodes"]), [n["masters"] for n in d["nodes"]][2]'
    assert_output "3 4096 0"
    run kvquery -e "$ROUTER_EP" get test s k1
    assert_success
    # back, it joins filling, is filled, and masters its share again
    run kvquery -e "$ROUTER_EP" cluster add "${NODES[2]}"
    assert_success
    wait_until 20 settled "$ROUTER_EP" "['up', 'up', 'up']" 3
    run cluster_json "$ROUTER_EP" '[n["masters"] > 1000 for n in d["nodes"]], sum(n["masters"] for n in d["nodes"])'
    assert_output "[True, True, True] 4096"
}

@test "a node outside its partition's master answers WRONG_NODE with its table version" {
    start_nodes 2
    start_router --node "${NODES[0]}" --node "${NODES[1]}"
    wait_until 10 nodes_up "$ROUTER_EP" 2
    wait_until 5 bash -c "grep -q 'installed table version 1 ' $BATS_TEST_TMPDIR/node.log && grep -q 'installed table version 1 ' $BATS_TEST_TMPDIR/node.1.log"
    # of 20 keys, each node masters some and refuses the others
    local ok=0 wrong=0 k
    for k in $(seq 1 20); do
        if kvquery -e "${NODES[0]}" put test s "k$k" v=1 >/dev/null 2>"$BATS_TEST_TMPDIR/err"; then
            ok=$((ok + 1))
        else
            grep -q 'wrong node.*table version 1' "$BATS_TEST_TMPDIR/err"
            wrong=$((wrong + 1))
        fi
    done
    [ "$ok" -gt 0 ] && [ "$wrong" -gt 0 ]
}

@test "kvroute and kvnode refuse bad cluster options" {
    run kvroute --hb-interval 5
    assert_failure 2
    assert_output --partial "hb-interval '5': expected milliseconds from 10 to 60000"
    run kvroute --hb-misses x
    assert_failure 2
    assert_output --partial "hb-misses 'x'"
    printf 'node\n' >"$BATS_TEST_TMPDIR/r.conf"
    run kvroute -c "$BATS_TEST_TMPDIR/r.conf"
    assert_failure 2
    assert_output --partial "r.conf:1: expected 'NAME VALUE'"
    run kvnode --ns test,mode=sc
    assert_failure 2
    assert_output --partial "mode 'sc' (strong consistency) is not supported yet"
    run kvnode --ns test,rf=0
    assert_failure 2
    assert_output --partial "rf '0' must be an integer from 1 to 8"
}

@test "a removal made at one router holds at another (the node remembers it)" {
    start_nodes 3
    start_router --node "${NODES[0]}" --node "${NODES[1]}" --node "${NODES[2]}"
    local a=$ROUTER_EP
    wait_until 10 nodes_up "$a" 3
    start_router --node "${NODES[0]}" --node "${NODES[1]}" --node "${NODES[2]}"
    local b=$ROUTER_EP
    wait_until 10 nodes_up "$b" 3
    local id
    id=$(cluster_json "$a" '[n["id"] for n in d["nodes"] if n["endpoint"] == "'"${NODES[2]}"'"][0]')
    run kvquery -e "$a" cluster remove "$id"
    assert_success
    wait_until 5 nodes_up "$a" 2
    wait_until 5 nodes_up "$b" 2
    wait_until 20 settled "$a" "['up', 'up', 'removed']" 1
    # for 2 s (about 13 heartbeats), neither router puts it back
    local end=$(($(_kv_now_us) + 2000000)) v
    v=$(cluster_json "$a" 'd["version"]')
    while [ "$(_kv_now_us)" -lt "$end" ]; do
        [ "$(cluster_json "$b" '[n["state"] for n in d["nodes"] if n["id"] == "'"$id"'"][0]')" = removed ]
        [ "$(cluster_json "$a" 'd["version"]')" = "$v" ]
    done
    # cluster add at the other router brings it back: filled, then ranked
    run kvquery -e "$b" cluster add "${NODES[2]}"
    assert_success
    wait_until 20 bash -c "kvquery -e $a info cluster | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"settled\"] and [n[\"state\"] for n in d[\"nodes\"] if n[\"id\"] == \"$id\"] == [\"up\"]'"
}
