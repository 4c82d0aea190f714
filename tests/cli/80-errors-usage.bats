#!/usr/bin/env bats
# kvquery's usage errors, -h and -V, endpoint selection (-e and
# KV_ENDPOINT), connection and timeout failures, and write errors.

load helpers

@test "no command: usage on stderr, nothing on stdout, exit 2" {
    run -2 --separate-stderr kvquery
    assert_output ''
    assert_stderr --partial 'kvquery: no command given'
    assert_stderr --partial 'usage: kvquery [-hV] [-e endpoint]'
}

@test "an unknown command: exit 2, naming it" {
    run -2 --separate-stderr kvquery frob test
    assert_output ''
    assert_stderr --partial "kvquery: unknown command 'frob'"
    assert_stderr --partial 'usage: kvquery'
}

@test "each command with the wrong number of arguments: exit 2" {
    local cases=(
        "put test s k" "put test s" "get test s" "get" "exists test s" "exists test s k x"
        "delete test s" "delete test s k x" "touch test s" "touch test s k x" "operate test s k"
        "batch test" "scan" "scan test s x" "export" "export test s x" "import" "import test x"
        "info node x"
    )
    local c
    for c in "${cases[@]}"; do
        # shellcheck disable=SC2086 # word splitting wanted
        run -2 --separate-stderr kvquery $c
        assert_output ''
        assert_stderr --partial "kvquery: ${c%% *}: wrong number of arguments"
    done
}

@test "an option that does not apply to the command: exit 2, before any request" {
    local cases=(
        "get test s k --ttl 5" "get test s k --exists update" "get test s k --gen 1"
        "exists test s k --gen 1" "delete test s k --ttl 5" "delete test s k --exists update"
        "touch test s k --exists update" "batch test s k --ttl 5" "scan test --strict"
        "export test --ttl 5" "import test --gen 1" "info --exists update" "put test s k v=1 --strict"
    )
    local c
    for c in "${cases[@]}"; do
        # shellcheck disable=SC2086
        run -2 --separate-stderr kvquery -e "ipc://$BATS_TEST_TMPDIR/none.sock" $c
        assert_output ''
        assert_stderr --partial "kvquery: ${c%% *}: an option given does not apply to this command"
    done
}

@test "--in-flight applies to import only" {
    run -2 --separate-stderr kvquery -e "ipc://$BATS_TEST_TMPDIR/none.sock" get test s k --in-flight 5
    assert_stderr --partial 'kvquery: get: an option given does not apply to this command'
}

@test "-h and --help print the full usage to stdout, exit 0" {
    run -0 --separate-stderr kvquery -h
    refute_stderr
    assert_line --index 0 --regexp '^usage: kvquery \[-hV\] \[-e endpoint\] \[--direct\] \[--commit-master\] \[--format jsonl\|table\|raw\] \[--timeout ms\] \[--int-key\] .*command \[argument \.\.\.\]$'
    local cmd
    for cmd in put get exists delete touch operate batch scan export import info cluster; do
        assert_line --regexp "^       kvquery $cmd "
    done
    assert_output --partial 'Exit status: 0 success, 1 not found / generation mismatch / exists, 2 error.'
    local short=$output
    run -0 kvquery --help
    assert_output "$short"
    # -h wins even with a command
    run -0 kvquery get test s k -h
    assert_output "$short"
}

@test "-V and --version print kvquery 0.1.0" {
    run -0 --separate-stderr kvquery -V
    assert_output 'kvquery 0.1.0'
    refute_stderr
    run -0 kvquery --version
    assert_output 'kvquery 0.1.0'
}

@test "an unknown option: exit 2, the message names kvquery" {
    run -2 --separate-stderr kvquery --bogus info
    assert_output ''
    assert_stderr --regexp "^(.*/)?kvquery: unrecognized option '--bogus'"
    assert_stderr --partial 'usage: kvquery'
    # also when the option comes after the command word
    run -2 --separate-stderr kvquery get test s k --bogus
    assert_stderr --regexp "^(.*/)?kvquery: unrecognized option '--bogus'"
}

@test "'--' ends the options: what follows is an argument even if it starts with -" {
    start_node
    run -0 kvquery put test s k -- --x=5
    run -0 kvquery get test s k
    assert_output '{"ns":"test","set":"s","key":"k","gen":1,"ttl":-1,"bins":{"--x":"5"}}'
    run -0 kvquery put test s -- -dash v=1
    run -0 kvquery get test s -- -dash v
    assert_output '{"ns":"test","set":"s","key":"-dash","gen":1,"ttl":-1,"bins":{"v":"1"}}'
}

@test "KV_ENDPOINT chooses the server; -e wins over it" {
    start_node
    local live=$KV_ENDPOINT dead
    dead=$(kv_free_endpoint)
    run -0 env KV_ENDPOINT="$live" kvquery info node
    assert_output --partial "\"endpoint\":\"$live\""
    run -0 env KV_ENDPOINT="$dead" kvquery -e "$live" info node
    assert_output --partial "\"endpoint\":\"$live\""
    run -0 env KV_ENDPOINT="$dead" kvquery --endpoint "$live" info node
    run -2 --separate-stderr env KV_ENDPOINT="$live" kvquery -e "$dead" info node
    assert_stderr "kvquery: info node: cannot connect to $dead: connection refused"
}

@test "connection refused: a clear message and exit 2, quickly, for every command" {
    local dead
    dead=$(kv_free_endpoint)
    local cases=(
        "get test s k|get test/s/k" "put test s k v=1|put test/s/k" "exists test s k|exists test/s/k"
        "delete test s k|delete test/s/k" "touch test s k|touch test/s/k"
        "operate test s k read:a|operate test/s/k" "batch test s k|batch test/s"
        "scan test|scan test" "export test s|export test/s" "info|info"
    )
    local c t0 t1
    for c in "${cases[@]}"; do
        t0=$(_kv_now_us)
        # shellcheck disable=SC2086
        run -2 --separate-stderr timeout 10 kvquery -e "$dead" ${c%%|*}
        t1=$(_kv_now_us)
        assert_output ''
        assert_stderr "kvquery: ${c#*|}: cannot connect to $dead: connection refused"
        [ $((t1 - t0)) -lt 2000000 ] || fail "'${c%%|*}' took $(((t1 - t0) / 1000)) ms to report a refused connection"
    done
}

@test "import to a refused endpoint: exit 2, says so, nothing counted as imported" {
    local dead
    dead=$(kv_free_endpoint)
    run -2 --separate-stderr timeout 10 kvquery -e "$dead" import test < <(echo '{"key":"a","bins":{"v":1}}')
    assert_stderr --partial "cannot connect to $dead: connection refused"
    assert_stderr --partial 'kvquery: import: 0 records imported'
}

@test "-e with a malformed endpoint: exit 2, naming it" {
    run -2 --separate-stderr kvquery -e nonsense info
    assert_output ''
    assert_stderr "kvquery: bad endpoint 'nonsense': Invalid argument"
}

@test "--timeout with a bad value is a usage error, exit 2" {
    local bad
    for bad in 0 -1 abc 3600001 ''; do
        run -2 --separate-stderr kvquery --timeout "$bad" info
        assert_output ''
        assert_stderr --partial "kvquery: --timeout '$bad': expected milliseconds from 1 to 3600000"
    done
}

@test "--timeout: a node that does not answer gives a timeout error, exit 2, on time" {
    start_node
    kill -STOP "$NODE_PID"
    local t0 t1
    t0=$(_kv_now_us)
    run -2 --separate-stderr kvquery --timeout 300 get test s k
    t1=$(_kv_now_us)
    kill -CONT "$NODE_PID"
    assert_stderr "kvquery: get test/s/k: timeout: no reply from $KV_ENDPOINT within 300 ms"
    [ $((t1 - t0)) -ge 300000 ] || fail "gave up after $(((t1 - t0) / 1000)) ms, before the 300 ms timeout"
    [ $((t1 - t0)) -lt 3000000 ] || fail "took $(((t1 - t0) / 1000)) ms for a 300 ms timeout"
    # the node answers again once resumed
    run -0 kvquery put test s k v=1
}

@test "a write error on stdout is reported, exit 2" {
    start_node
    kvquery put test s k v=1
    run -2 --separate-stderr bash -c 'kvquery get test s k > /dev/full'
    assert_stderr --regexp 'cannot write standard output: No space left on device'
}

@test "exit statuses: 0 success, 1 negative answers, 2 errors" {
    start_node
    run -0 kvquery put test s k v=1
    run -1 kvquery get test s nope
    run -1 kvquery put test s k --gen 5 v=2
    run -1 kvquery put test s k --exists create-only v=2
    run -2 kvquery put test s k v:int=x
    run -2 kvquery get nope s k
    run -2 kvquery operate test s k add:v=1
}
