#!/usr/bin/env bats
# info: the whole report, node, namespaces, stats, one namespace, and an
# unknown word.

load helpers

setup() {
    start_node --ns test,max-bins=9,memory=2M --ns cache,default-ttl=1h
}

# keys_of: the top-level keys of the JSON object on stdin, sorted.
keys_of() {
    python3 -c 'import json, sys; print(" ".join(sorted(json.load(sys.stdin))))'
}

@test "info with no word reports node, namespaces and stats" {
    run -0 --separate-stderr kvquery info
    refute_stderr
    assert_equal "$(echo "$output" | keys_of)" "namespaces node stats"
}

@test "info node: id, version, the endpoint served, the uptime and the threads' policy" {
    run -0 kvquery info node
    assert_output --regexp '^\{"node":\{"id":"[0-9a-f]{16}","version":"0\.1\.0","endpoint":"'"$KV_ENDPOINT"'","uptime_s":[0-9]+,"sched":"(batch|normal)"\}\}$'
}

@test "info namespaces lists each namespace with its settings and usage" {
    kvquery put test s k v=1
    run -0 kvquery info namespaces
    assert_output --regexp '^\{"namespaces":\[\{"name":"test","storage":"memory","records":1,"memory_used":[1-9][0-9]*,"memory_limit":2097152,"expired":0,"default_ttl":0,"max_record_size":1048576,"max_bins":9,"rf":2,"mode":"ap"\},\{"name":"cache","storage":"memory","records":0,"memory_used":0,"memory_limit":4294967296,"expired":0,"default_ttl":3600,"max_record_size":1048576,"max_bins":256,"rf":2,"mode":"ap"\}\]\}$'
}

@test "info NAMESPACE reports that namespace alone" {
    run -0 kvquery info cache
    assert_output '{"name":"cache","storage":"memory","records":0,"memory_used":0,"memory_limit":4294967296,"expired":0,"default_ttl":3600,"max_record_size":1048576,"max_bins":256,"rf":2,"mode":"ap"}'
}

@test "info stats counts ops and errors by name" {
    kvquery put test s k v=1
    kvquery get test s k
    run -1 kvquery get test s missing
    run -0 kvquery info stats
    assert_output --regexp '^\{"stats":\{"ops":\{.*"get":2.*\},"errors":\{"NOT_FOUND":1\},"bad_frames":0\}\}$'
    assert_output --partial '"put":1'
}

@test "info with an unknown word: bad request naming the choices, exit 2" {
    run -2 --separate-stderr kvquery info bogus
    assert_output ''
    assert_stderr "kvquery: info bogus: bad request: unknown info 'bogus' (node, namespaces, stats or a namespace name)"
}

@test "info takes at most one word" {
    run -2 --separate-stderr kvquery info node stats
    assert_stderr --partial 'kvquery: info: wrong number of arguments'
}

@test "info --format table flattens the report into name/value lines" {
    run -0 kvquery --format table info node
    assert_line --index 0 --regexp '^node\.id +[0-9a-f]{16}$'
    assert_line --index 1 --regexp '^node\.version +0\.1\.0$'
    run -0 kvquery --format table info namespaces
    assert_line --regexp '^namespaces\.cache\.default_ttl +3600$'
}
