#!/usr/bin/env bats
# kvnode's options: --ns specifications and their errors, -c config files,
# -l endpoints (in use, bad), the ready file, signals, -h and -V.

load helpers

# kvnode_fails STATUS ARGS...: kvnode with ARGS exits with STATUS at once
# (bounded by timeout(1) in case it starts serving instead) and writes no
# ready file.  Leaves $output and $stderr as `run` sets them.
kvnode_fails() {
    local want=$1
    shift
    run --separate-stderr timeout 10 kvnode "$@" --ready-file "$BATS_TEST_TMPDIR/never"
    assert_equal "$status" "$want"
    [ ! -e "$BATS_TEST_TMPDIR/never" ]
}

# node_gone PID: the process has exited.
node_gone() {
    ! _kv_alive "$1"
}

@test "kvnode -h prints the usage to stdout, exit 0; -V prints the version" {
    run -0 --separate-stderr kvnode -h
    assert_line --index 0 'usage: kvnode [-hV] [-c file] [-d dir] [-l endpoint] [--ns name[,key=value...]] [--join router] [--ready-file file] [--sched policy]'
    assert_output --partial 'keys: default-ttl, max-record-size, memory, max-bins'
    refute_stderr
    run -0 kvnode --help
    assert_line --index 0 --partial 'usage: kvnode'
    run -0 --separate-stderr kvnode -V
    assert_output 'kvnode 0.1.0'
    run -0 kvnode --version
    assert_output 'kvnode 0.1.0'
}

@test "kvnode with an unknown option or a stray argument: usage on stderr, exit 2" {
    kvnode_fails 2 -l 'tcp://127.0.0.1:*' --bogus
    assert_output ''
    assert_stderr --partial "unrecognized option '--bogus'"
    assert_stderr --partial 'usage: kvnode'
    kvnode_fails 2 -l 'tcp://127.0.0.1:*' extra
    assert_stderr --partial "kvnode: unexpected argument 'extra'"
    run -2 --separate-stderr timeout 10 kvnode -l
    assert_stderr --partial "option requires an argument -- 'l'"
}

@test "--ns errors exit 2 with a message that names the problem" {
    local cases=(
        "test,colour=red|--ns test,colour=red: namespace 'test': unknown namespace key 'colour' (keys: default-ttl, max-record-size, memory, max-bins, rf, mode, storage, commit-to-device, flush-ms, write-block, defrag-lwm, disk)"
        "test,memory=1K|--ns test,memory=1K: namespace 'test': memory '1K' must be a size of at least 1M"
        "test,memory=abc|namespace 'test': memory 'abc' must be a size of at least 1M"
        "test,memory=-5M|namespace 'test': memory '-5M' must be a size"
        "test,max-record-size=9M|namespace 'test': max-record-size '9M' must be a size from 64 to 8M"
        "test,max-record-size=10|namespace 'test': max-record-size '10' must be a size from 64 to 8M"
        "test,max-record-size=1Q|namespace 'test': max-record-size '1Q' must be a size"
        "test,max-bins=0|namespace 'test': max-bins '0' must be an integer from 1 to 32767"
        "test,max-bins=32768|namespace 'test': max-bins '32768' must be an integer from 1 to 32767"
        "test,default-ttl=xyz|namespace 'test': default-ttl 'xyz' is not a duration up to 10 years"
        "test,default-ttl=3651d|namespace 'test': default-ttl '3651d' is not a duration up to 10 years"
        "test,memory|namespace 'test': 'memory' is not key=value"
        "bad.name|namespace name 'bad.name' must be 1 to 31 letters, digits, '-' or '_'"
        "|namespace name '' must be 1 to 31 letters, digits, '-' or '_'"
        "abcdefghijklmnopqrstuvwxyz012345|namespace name 'abcdefghijklmnopqrstuvwxyz012345' must be 1 to 31"
    )
    local c
    for c in "${cases[@]}"; do
        kvnode_fails 2 -l 'tcp://127.0.0.1:*' --ns "${c%%|*}"
        assert_output ''
        assert_stderr --partial "kvnode: "
        assert_stderr --partial "${c#*|}"
    done
}

@test "--ns: a namespace defined twice is an error, exit 2" {
    kvnode_fails 2 -l 'tcp://127.0.0.1:*' --ns test --ns other --ns test,memory=2M
    assert_stderr "kvnode: --ns test,memory=2M: namespace 'test' is defined twice"
}

@test "--ns: more than 32 namespaces is an error, exit 2" {
    local args=() i
    for i in $(seq 1 33); do args+=(--ns "ns$i"); done
    kvnode_fails 2 -l 'tcp://127.0.0.1:*' "${args[@]}"
    assert_stderr --partial 'too many namespaces (limit 32)'
}

@test "--ns: every key is applied, and sizes and durations take units" {
    start_node --ns a-b_31charsxxxxxxxxxxxxxxxxxxxx,default-ttl=2d,max-record-size=64K,memory=3M,max-bins=7
    run -0 kvquery info a-b_31charsxxxxxxxxxxxxxxxxxxxx
    assert_output '{"name":"a-b_31charsxxxxxxxxxxxxxxxxxxxx","storage":"memory","records":0,"memory_used":0,"memory_limit":3145728,"expired":0,"default_ttl":172800,"max_record_size":65536,"max_bins":7,"rf":2,"mode":"ap"}'
}

@test "--ns: the limits of each key are accepted" {
    start_node --ns test,max-record-size=8M,memory=1M,max-bins=32767,default-ttl=3650d --ns small,max-record-size=64,max-bins=1,rf=8,mode=ap
    run -0 kvquery info test
    assert_output '{"name":"test","storage":"memory","records":0,"memory_used":0,"memory_limit":1048576,"expired":0,"default_ttl":315360000,"max_record_size":8388608,"max_bins":32767,"rf":2,"mode":"ap"}'
    run -0 kvquery put test s k v=1
    assert_output '{"ns":"test","set":"s","key":"k","gen":1,"ttl":315360000}'
    run -0 kvquery info small
    assert_output --partial '"max_record_size":64,"max_bins":1,"rf":8,"mode":"ap"}'
}

@test "with no --ns, kvnode serves one namespace 'test'" {
    start_node
    run -0 kvquery info namespaces
    assert_output --regexp '^\{"namespaces":\[\{"name":"test",[^]]*\}\]\}$'
    grep -q 'namespaces: test)$' "$NODE_LOG"
}

@test "several namespaces are separate; an unknown one is no such namespace, exit 2" {
    start_node --ns users --ns cache
    kvquery put users s k v=in-users
    kvquery put cache s k v=in-cache
    run -0 kvquery get users s k v
    assert_output --partial '"bins":{"v":"in-users"}'
    run -0 kvquery get cache s k v
    assert_output --partial '"bins":{"v":"in-cache"}'
    run -2 --separate-stderr kvquery get test s k
    assert_output ''
    assert_stderr "kvquery: get test/s/k: no such namespace: no namespace 'test' on this node"
    run -2 --separate-stderr kvquery put test s k v=1
    assert_stderr "kvquery: put test/s/k: no such namespace: no namespace 'test' on this node"
    run -2 kvquery exists test s k
    run -2 kvquery operate test s k write:a=1
    run -2 kvquery scan test
    run -2 kvquery batch test s k
}

@test "the ready file holds the endpoint bound; stdout says ready with the namespaces" {
    start_node --ns one --ns two
    [[ "$KV_ENDPOINT" =~ ^tcp://127\.0\.0\.1:[0-9]+$ ]]
    [[ "$KV_ENDPOINT" != *'*'* ]]
    run -0 cat "$NODE_LOG"
    assert_output --regexp "^kvnode: ready on $KV_ENDPOINT \(node [0-9a-f]{16}, namespaces: one,two\)$"
}

@test "-c FILE: listen and ns lines, comments and blank lines" {
    local sock="$BATS_TEST_TMPDIR/kv.sock"
    cat > "$BATS_TEST_TMPDIR/kvnode.conf" <<EOF
# kvnode configuration for a test
listen ipc://$sock   # a comment after a value

ns cache,default-ttl=1h,memory=2M
	ns test    
EOF
    start_node --no-default-listen -c "$BATS_TEST_TMPDIR/kvnode.conf"
    assert_equal "$KV_ENDPOINT" "ipc://$sock"
    [ -S "$sock" ]
    run -0 kvquery info namespaces
    assert_output --regexp '^\{"namespaces":\[\{"name":"cache",.*"memory_limit":2097152,.*"default_ttl":3600,.*\},\{"name":"test",.*\}\]\}$'
    run -0 kvquery put cache s k v=1
    assert_output '{"ns":"cache","set":"s","key":"k","gen":1,"ttl":3600}'
}

@test "-c FILE with -l and --ns: -l wins over the file's listen, --ns adds namespaces" {
    printf 'listen ipc://%s/unused.sock\nns fromfile\n' "$BATS_TEST_TMPDIR" > "$BATS_TEST_TMPDIR/kvnode.conf"
    start_node -c "$BATS_TEST_TMPDIR/kvnode.conf" -l 'tcp://127.0.0.1:*' --ns fromflag
    [[ "$KV_ENDPOINT" == tcp://127.0.0.1:* ]]
    [ ! -e "$BATS_TEST_TMPDIR/unused.sock" ]
    run -0 kvquery info namespaces
    assert_output --regexp '"name":"fromfile".*"name":"fromflag"'
}

@test "-c FILE: a namespace in the file and in --ns is defined twice, exit 2" {
    printf 'ns test\n' > "$BATS_TEST_TMPDIR/kvnode.conf"
    kvnode_fails 2 -l 'tcp://127.0.0.1:*' -c "$BATS_TEST_TMPDIR/kvnode.conf" --ns test
    assert_stderr "kvnode: --ns test: namespace 'test' is defined twice"
}

@test "-c FILE: a bad line names FILE:LINE and the problem, exit 2" {
    local conf="$BATS_TEST_TMPDIR/bad.conf"
    local cases=(
        $'# ok\n\ncolour red\n|3: unknown option \'colour\' (options: data, listen, ns, sched)'
        $'listen\n|1: expected \'listen VALUE\''
        $'sched fifo\n|1: sched \'fifo\' must be batch or normal'
        $'listen a b\n|1: expected \'listen VALUE\''
        $'ns\n|1: expected \'ns VALUE\''
        $'ns a\nns b,ttl=5\n|2: namespace \'b\': unknown namespace key \'ttl\' (keys: default-ttl, max-record-size, memory, max-bins, rf, mode, storage, commit-to-device, flush-ms, write-block, defrag-lwm, disk)'
        $'ns a\n# again\nns a\n|3: namespace \'a\' is defined twice'
        $'ns a,memory=1K\n|1: namespace \'a\': memory \'1K\' must be a size of at least 1M (e.g. 512M, 4G)'
        "# $(printf '%*s' 5000 '' | tr ' ' x)"$'\n|1: line longer than 4094 bytes'
    )
    local c
    for c in "${cases[@]}"; do
        printf '%s' "${c%%|*}" > "$conf"
        kvnode_fails 2 -l 'tcp://127.0.0.1:*' -c "$conf"
        assert_stderr "kvnode: $conf:${c#*|}"
    done
}

# sched_policies PID: each of the process's threads, a line each, as
# "NAME POLICY" with the policy as /proc/PID/task/TID/stat gives it (its
# 41st field: 0 normal, 3 batch, 5 idle), sorted: the request loop and
# the flushers are "kvnode", libzmq's are "ZMQbg/IO/0" and "ZMQbg/Reaper".
sched_policies() {
    local t
    for t in /proc/"$1"/task/*; do
        echo "$(cat "$t/comm") $(sed 's/.*) //' "$t/stat" | awk '{ print $39 }')"
    done | LC_ALL=C sort
}

@test "--sched: the loop and the flusher run under SCHED_BATCH by default, libzmq's threads normal" {
    start_node -d "$BATS_TEST_TMPDIR/data"
    run -0 kvquery info node
    assert_output --partial '"sched":"batch"'
    run -0 sched_policies "$NODE_PID"
    assert_output $'ZMQbg/IO/0 0\nZMQbg/Reaper 0\nkvnode 3\nkvnode 3'
    stop_node
    start_node --sched normal -d "$BATS_TEST_TMPDIR/data"
    run -0 kvquery info node
    assert_output --partial '"sched":"normal"'
    run -0 sched_policies "$NODE_PID"
    assert_output $'ZMQbg/IO/0 0\nZMQbg/Reaper 0\nkvnode 0\nkvnode 0'
}

@test "--sched: started unprivileged under SCHED_IDLE, kvnode says it cannot leave it and serves" {
    # without CAP_SYS_NICE (dropped from the bounding set, so root too),
    # RLIMIT_NICE 0 keeps a thread under SCHED_IDLE; libzmq used to abort
    # when asked to move its own threads out of it.  setpriv(1) and chrt(1)
    # are util-linux's, in every Debian system.
    local bin
    bin=$(command -v kvnode)
    kvnode() { exec setpriv --bounding-set -sys_nice chrt -i 0 "$bin" "$@"; }
    start_node -d "$BATS_TEST_TMPDIR/data"
    unset -f kvnode
    run -0 kvquery put test s k v=1
    run -0 kvquery info node
    assert_output --partial '"sched":"other"'
    run -0 sched_policies "$NODE_PID"
    assert_output $'ZMQbg/IO/0 5\nZMQbg/Reaper 5\nkvnode 5\nkvnode 5'
    run -0 cat "$NODE_LOG"
    assert_line "kvnode: cannot set the scheduling policy to batch: Operation not permitted; kvnode runs under its current policy"
}

@test "--sched wins over the file's sched line; a bad policy is a usage error, exit 2" {
    printf 'sched normal\n' > "$BATS_TEST_TMPDIR/kvnode.conf"
    start_node -c "$BATS_TEST_TMPDIR/kvnode.conf"
    run -0 kvquery info node
    assert_output --partial '"sched":"normal"'
    stop_node
    start_node -c "$BATS_TEST_TMPDIR/kvnode.conf" --sched batch
    run -0 kvquery info node
    assert_output --partial '"sched":"batch"'
    kvnode_fails 2 -l 'tcp://127.0.0.1:*' --sched rr
    assert_stderr "kvnode: --sched 'rr': expected batch or normal"
    kvnode_fails 2 -l 'tcp://127.0.0.1:*' --sched ''
    assert_stderr "kvnode: --sched '': expected batch or normal"
}

@test "-c with a file that does not exist: cannot open, exit 2" {
    kvnode_fails 2 -l 'tcp://127.0.0.1:*' -c "$BATS_TEST_TMPDIR/nope.conf"
    assert_stderr "kvnode: cannot open $BATS_TEST_TMPDIR/nope.conf: No such file or directory"
}

@test "-l to a TCP endpoint already in use fails with a clear message, exit 1" {
    start_node
    kvnode_fails 1 -l "$KV_ENDPOINT"
    assert_stderr "kvnode: cannot listen on $KV_ENDPOINT: Address already in use"
    # the first node is unharmed
    run -0 kvquery info node
}

@test "-l to an ipc endpoint another kvnode serves fails, exit 1; the first keeps serving" {
    local sock="ipc://$BATS_TEST_TMPDIR/kv.sock"
    start_node -l "$sock"
    local first_id
    first_id=$(kvquery info node | json_field 'r["node"]["id"]')
    # the second node, started by hand so that it is stopped in teardown if it runs
    kvnode -l "$sock" --ready-file "$BATS_TEST_TMPDIR/ready.second" >"$BATS_TEST_TMPDIR/second.log" 2>&1 3>&- </dev/null &
    local second=$!
    KV_NODE_PIDS+=("$second")
    KV_NODE_LOGS+=("$BATS_TEST_TMPDIR/second.log")
    settled() { node_gone "$second" || [ -s "$BATS_TEST_TMPDIR/ready.second" ]; }
    wait_until 10 settled
    run -0 kvquery -e "$sock" info node
    assert_output --partial "\"id\":$first_id"
    if _kv_alive "$second"; then
        fail "a second kvnode took over $sock"
    fi
    local st=0
    wait "$second" || st=$?
    _kv_forget "$second"
    assert_equal "$st" 1
    run -0 cat "$BATS_TEST_TMPDIR/second.log"
    assert_output --partial "cannot listen on $sock"
}

@test "-l with a bad endpoint: cannot listen, exit 1" {
    kvnode_fails 1 -l bogus://x
    assert_stderr 'kvnode: cannot listen on bogus://x: Protocol not supported'
    kvnode_fails 1 -l 'tcp://256.1.1.1:*'
    assert_stderr --partial 'kvnode: cannot listen on tcp://256.1.1.1:*'
}

@test "--ready-file in a directory that does not exist: exit 1 with the reason" {
    run --separate-stderr timeout 10 kvnode -l 'tcp://127.0.0.1:*' --ready-file "$BATS_TEST_TMPDIR/no/such/dir/ready"
    assert_equal "$status" 1
    assert_stderr --partial "kvnode: cannot write ready file $BATS_TEST_TMPDIR/no/such/dir/ready"
}

@test "SIGTERM: kvnode exits 0 and removes its ready file" {
    start_node
    kvquery put test s k v=1
    [ -e "$NODE_READY" ]
    stop_node
    assert_equal "$NODE_STATUS" 0
    [ ! -e "$NODE_READY" ]
    [ ! -e "$NODE_READY.tmp" ]
    run -0 tail -n 1 "$NODE_LOG"
    assert_output 'kvnode: shutting down'
}

@test "SIGINT: kvnode exits 0 and removes its ready file" {
    start_node
    kill -INT "$NODE_PID"
    wait_until 5 node_gone "$NODE_PID"
    local st=0
    wait "$NODE_PID" || st=$?
    _kv_forget "$NODE_PID"
    assert_equal "$st" 0
    [ ! -e "$NODE_READY" ]
}

@test "after kvnode stops, its endpoint refuses connections: exit 2, quickly" {
    start_node
    local ep=$KV_ENDPOINT
    stop_node
    run -2 --separate-stderr timeout 5 kvquery -e "$ep" info node
    assert_stderr "kvquery: info node: cannot connect to $ep: connection refused"
}
