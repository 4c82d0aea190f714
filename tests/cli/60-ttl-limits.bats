#!/usr/bin/env bats
# TTLs (--ttl on put, touch and operate; a namespace's default-ttl) and the
# namespace limits: max-record-size, max-bins and memory.

load helpers

@test "put --ttl 1: the record expires from get, exists and scan; others stay" {
    start_node
    run -0 kvquery put test t short v=1 --ttl 1
    assert_output '{"ns":"test","set":"t","key":"short","gen":1,"ttl":1}'
    kvquery put test t forever v=1
    wait_until 5 gone test t short
    run -1 --separate-stderr kvquery get test t short
    assert_stderr 'kvquery: get test/t/short: not found'
    run -1 kvquery exists test t short
    assert_output '{"ns":"test","set":"t","key":"short","exists":false}'
    run -0 kvquery scan test t
    assert_output '{"ns":"test","set":"t","key":"forever","gen":1,"ttl":-1,"bins":{"v":"1"}}'
    run -1 kvquery touch test t short
    run -1 kvquery delete test t short
}

@test "--ttl 1 lives at least a second: it is still there in the next second" {
    start_node
    # write within one wall-clock second s (retry, bounded, if the write
    # straddles a second), wait until the clock reads s + 1 and read at once
    for _ in $(seq 20); do
        s0=$(date +%s)
        kvquery put test t edge v=1 --ttl 1
        s1=$(date +%s)
        [ "$s0" = "$s1" ] && break
    done
    [ "$s0" = "$s1" ]
    wait_until 3 clock_past "$s1"
    run -0 kvquery get test t edge
    assert_output --regexp '^\{"ns":"test","set":"t","key":"edge","gen":1,"ttl":1,'
}

@test "touch --ttl 1 makes a record that never expired expire" {
    start_node
    kvquery put test t k v=1
    run -0 kvquery touch test t k --ttl 1
    assert_output '{"ns":"test","set":"t","key":"k","gen":2,"ttl":1}'
    wait_until 5 gone test t k
    run -0 kvquery scan test
    assert_output ''
}

@test "--ttl -1 never expires; --ttl N counts down; --ttl -2 keeps the TTL" {
    start_node
    run -0 kvquery put test t k v=1 --ttl -1
    assert_output '{"ns":"test","set":"t","key":"k","gen":1,"ttl":-1}'
    run -0 kvquery put test t k v=2 --ttl 100
    assert_output '{"ns":"test","set":"t","key":"k","gen":2,"ttl":100}'
    run -0 kvquery put test t k v=3 --ttl -2
    assert_output --regexp '^\{"ns":"test","set":"t","key":"k","gen":3,"ttl":(9[6-9]|100)\}$'
    run -0 kvquery touch test t k --ttl -2
    assert_output --regexp '"gen":4,"ttl":(9[6-9]|100)\}$'
    run -0 kvquery operate test t k write:w=1 --ttl -2
    assert_output --regexp '"gen":5,"ttl":(9[6-9]|100),'
    run -0 kvquery get test t k
    assert_output --regexp '"ttl":(9[6-9]|100),"bins":\{"v":"3","w":"1"\}\}$'
    run -0 kvquery touch test t k --ttl -1
    assert_output '{"ns":"test","set":"t","key":"k","gen":6,"ttl":-1}'
}

@test "bad --ttl values are usage errors, exit 2; --ttl does not apply to get" {
    start_node
    local bad
    for bad in x -3 315360001 1.5 ''; do
        run -2 --separate-stderr kvquery put test t k v=1 --ttl "$bad"
        assert_stderr --partial "kvquery: --ttl '$bad': expected seconds, 0 (namespace default), -1 (never) or -2 (keep)"
    done
    run -0 kvquery put test t k v=1 --ttl 315360000
    assert_output --partial '"ttl":315360000}'
    run -2 --separate-stderr kvquery get test t k --ttl 5
    assert_stderr --partial 'kvquery: get: an option given does not apply to this command'
}

@test "namespace default-ttl=1: records without --ttl expire; --ttl -1 and --ttl 0 behave" {
    start_node --ns test,default-ttl=1
    run -0 kvquery put test t k v=1
    assert_output '{"ns":"test","set":"t","key":"k","gen":1,"ttl":1}'
    run -0 kvquery put test t zero v=1 --ttl 0
    assert_output '{"ns":"test","set":"t","key":"zero","gen":1,"ttl":1}'
    run -0 kvquery put test t never v=1 --ttl -1
    assert_output '{"ns":"test","set":"t","key":"never","gen":1,"ttl":-1}'
    wait_until 5 gone test t k
    wait_until 5 gone test t zero
    run -1 kvquery exists test t k
    run -0 kvquery scan test
    assert_output '{"ns":"test","set":"t","key":"never","gen":1,"ttl":-1,"bins":{"v":"1"}}'
}

@test "default-ttl takes a unit: 1h is 3600 s" {
    start_node --ns test,default-ttl=1h
    run -0 kvquery put test t k v=1
    assert_output '{"ns":"test","set":"t","key":"k","gen":1,"ttl":3600}'
}

@test "expired records are reclaimed: info counts them and records drop to 0" {
    start_node
    for i in 1 2 3; do kvquery put test t "k$i" v=1 --ttl 1; done
    wait_until 5 gone test t k1
    # the sweeper reclaims the ones nobody reads (a full sweep takes ~10 s)
    count_is() { kvquery info test | grep -q "\"records\":$1,"; }
    wait_until 20 count_is 0
    run -0 kvquery info test
    assert_output --partial '"expired":3,'
}

@test "max-record-size=1K: a put of 2000 bytes is record too big, exit 2, the record is unchanged" {
    start_node --ns test,max-record-size=1K
    kvquery put test s k v=small
    local big
    big=$(head -c 2000 /dev/zero | tr '\0' x)
    run -2 --separate-stderr kvquery put test s k "v=$big"
    assert_output ''
    assert_stderr --regexp '^kvquery: put test/s/k: record too big: record is [0-9]+ bytes, limit is 1024$'
    run -0 kvquery get test s k
    assert_output '{"ns":"test","set":"s","key":"k","gen":1,"ttl":-1,"bins":{"v":"small"}}'
    # a new record that big is not created either
    run -2 kvquery put test s other "v=$big"
    run -1 kvquery exists test s other
}

@test "max-record-size=1K: an append that would grow past it fails, record unchanged" {
    start_node --ns test,max-record-size=1K
    local half
    half=$(head -c 600 /dev/zero | tr '\0' x)
    kvquery put test s k "v=$half"
    run -2 --separate-stderr kvquery operate test s k "append:v=$half"
    assert_stderr --partial 'kvquery: operate test/s/k: record too big'
    run -0 kvquery exists test s k
    assert_output --partial '"gen":1,'
}

@test "max-bins=2: a third bin is too many bins, exit 2, whether by put, merge or operate" {
    start_node --ns test,max-bins=2
    run -2 --separate-stderr kvquery put test s new a=1 b=2 c=3
    assert_stderr --partial 'kvquery: put test/s/new: too many bins'
    run -1 kvquery exists test s new
    kvquery put test s k a=1 b=2
    run -2 --separate-stderr kvquery put test s k c=3
    assert_stderr 'kvquery: put test/s/k: too many bins: record would have 3 bins, limit is 2'
    run -2 --separate-stderr kvquery operate test s k write:c=3
    assert_stderr --partial 'kvquery: operate test/s/k: too many bins'
    run -0 kvquery get test s k
    assert_output '{"ns":"test","set":"s","key":"k","gen":1,"ttl":-1,"bins":{"a":"1","b":"2"}}'
    # replacing is fine: the record still has two bins
    run -0 kvquery put test s k --exists replace c=3 d=4
}

@test "memory=1M: puts fail with namespace full; reads and deletes still work, and free room" {
    start_node --ns test,memory=1M
    python3 -c '
import sys
for i in range(20000):
    sys.stdout.write("{\"set\":\"fill\",\"key\":%d,\"bins\":{\"v\":\"%s\"}}\n" % (i, "x" * 100))
' > "$BATS_TEST_TMPDIR/fill.jsonl"
    run -2 --separate-stderr kvquery import test < "$BATS_TEST_TMPDIR/fill.jsonl"
    assert_stderr --regexp "line [0-9]+: namespace full: namespace 'test' is at its memory limit \([0-9]+ of 1048576 bytes used\)"
    local summary=${stderr##*$'\n'} imported
    imported=$(echo "$summary" | sed -n 's/^kvquery: import: \([0-9]*\) records imported, \([0-9]*\) failed.*/\1/p')
    [ "$imported" -gt 1000 ] || fail "only $imported records fitted in 1M"
    [ "$imported" -lt 20000 ] || fail "all 20000 records fitted in 1M"
    assert_regex "$summary" "^kvquery: import: $imported records imported, $((20000 - imported)) failed"
    run -0 kvquery info test
    assert_output --partial "\"records\":$imported,"

    # a put fails too, with exit 2
    run -2 --separate-stderr kvquery --int-key put test fill 99999 "v=$(head -c 100 /dev/zero | tr '\0' x)"
    assert_stderr --partial 'kvquery: put test/fill/99999: namespace full'
    # reads, scans and deletes work
    run -0 kvquery --int-key get test fill 0
    assert_output --partial '"key":0,'
    run -0 bash -c 'kvquery scan test fill | wc -l'
    assert_output "$imported"
    run -0 kvquery --int-key delete test fill 0
    run -0 kvquery --int-key delete test fill 1
    # and the room they leave takes a record of the same size
    run -0 kvquery --int-key put test fill 99999 "v=$(head -c 100 /dev/zero | tr '\0' x)"
}
