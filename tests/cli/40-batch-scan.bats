#!/usr/bin/env bats
# batch (keys as arguments or on stdin) and scan (a namespace or one set),
# including a scan of 100,000 records.

load helpers

setup() {
    start_node
}

@test "batch with keys as arguments prints every record found, in order" {
    kvquery put test b k1 v=1
    kvquery put test b k2 v=2
    run -0 --separate-stderr kvquery batch test b k2 k1
    assert_output "$(printf '%s\n' \
        '{"ns":"test","set":"b","key":"k2","gen":1,"ttl":-1,"bins":{"v":"2"}}' \
        '{"ns":"test","set":"b","key":"k1","gen":1,"ttl":-1,"bins":{"v":"1"}}')"
    refute_stderr
}

@test "batch with keys on stdin, one a line; blank lines and CRs are ignored" {
    kvquery put test b k1 v=1
    kvquery put test b k2 v=2
    run -0 --separate-stderr kvquery batch test b < <(printf 'k1\n\nk2\r\n')
    assert_output "$(printf '%s\n' \
        '{"ns":"test","set":"b","key":"k1","gen":1,"ttl":-1,"bins":{"v":"1"}}' \
        '{"ns":"test","set":"b","key":"k2","gen":1,"ttl":-1,"bins":{"v":"2"}}')"
    refute_stderr
}

@test "batch with missing keys: one message each on stderr, the found ones printed, exit 1" {
    kvquery put test b k1 v=1
    kvquery put test b k3 v=3
    run -1 --separate-stderr kvquery batch test b k1 nope k3 gone
    assert_output "$(printf '%s\n' \
        '{"ns":"test","set":"b","key":"k1","gen":1,"ttl":-1,"bins":{"v":"1"}}' \
        '{"ns":"test","set":"b","key":"k3","gen":1,"ttl":-1,"bins":{"v":"3"}}')"
    assert_stderr "$(printf '%s\n' 'kvquery: batch test/b/nope: not found' 'kvquery: batch test/b/gone: not found')"
}

@test "batch with no key on stdin prints nothing, exit 0" {
    run -0 --separate-stderr kvquery batch test b < /dev/null
    assert_output ''
    refute_stderr
}

@test "batch --int-key from stdin; a bad key fails before any request, exit 2" {
    kvquery --int-key put test ib 1 v=one
    kvquery --int-key put test ib 2 v=two
    run -0 kvquery --int-key batch test ib < <(printf '2\n1\n')
    assert_output "$(printf '%s\n' \
        '{"ns":"test","set":"ib","key":2,"gen":1,"ttl":-1,"bins":{"v":"two"}}' \
        '{"ns":"test","set":"ib","key":1,"gen":1,"ttl":-1,"bins":{"v":"one"}}')"
    run -2 --separate-stderr kvquery --int-key batch test ib 1 x
    assert_output ''
    assert_stderr "kvquery: batch test/ib: key 'x' is not a 64-bit integer (--int-key)"
}

@test "batch of 3000 keys from stdin (several requests) finds every one" {
    seq 1 3000 | python3 -c '
import sys
for line in sys.stdin:
    print("{\"set\":\"many\",\"key\":\"k%s\",\"bins\":{\"i\":%s}}" % (line.strip(), line.strip()))
' | kvquery import test
    seq 1 3000 | sed 's/^/k/' > "$BATS_TEST_TMPDIR/keys"
    run -0 bash -c 'kvquery batch test many < "$1" | wc -l' _ "$BATS_TEST_TMPDIR/keys"
    assert_output 3000
}

@test "batch --format table: one header, one row per record" {
    kvquery put test b k1 v=1
    kvquery put test b k2 v=2
    run -0 kvquery --format table batch test b k1 k2
    assert_equal "${#lines[@]}" 3
    assert_line --index 0 --regexp '^SET +KEY +GEN +TTL +BINS$'
    assert_line --index 1 --regexp '^b +k1 +1 +-1  \{"v":"1"\}$'
    assert_line --index 2 --regexp '^b +k2 +1 +-1  \{"v":"2"\}$'
}

@test "batch on an unknown namespace: no such namespace, exit 2" {
    run -2 --separate-stderr kvquery batch nope b k1
    assert_stderr --partial 'kvquery: batch nope/b: no such namespace'
}

@test "scan of a namespace returns every record of every set" {
    kvquery put test a k1 v=1
    kvquery put test b k2 v=2
    kvquery put test '' k3 v=3
    run -0 --separate-stderr bash -c 'kvquery scan test | sort'
    assert_output "$(printf '%s\n' \
        '{"ns":"test","set":"","key":"k3","gen":1,"ttl":-1,"bins":{"v":"3"}}' \
        '{"ns":"test","set":"a","key":"k1","gen":1,"ttl":-1,"bins":{"v":"1"}}' \
        '{"ns":"test","set":"b","key":"k2","gen":1,"ttl":-1,"bins":{"v":"2"}}')"
    refute_stderr
}

@test "scan of a set returns only that set's records" {
    for i in 1 2 3; do kvquery put test a "k$i" v=$i; done
    for i in 1 2; do kvquery put test b "k$i" v=$i; done
    run -0 bash -c 'kvquery scan test b | sort'
    assert_output "$(printf '%s\n' \
        '{"ns":"test","set":"b","key":"k1","gen":1,"ttl":-1,"bins":{"v":"1"}}' \
        '{"ns":"test","set":"b","key":"k2","gen":1,"ttl":-1,"bins":{"v":"2"}}')"
}

@test "scan of an empty namespace or set prints nothing, exit 0" {
    run -0 --separate-stderr kvquery scan test
    assert_output ''
    refute_stderr
    kvquery put test a k v=1
    run -0 kvquery scan test nosuchset
    assert_output ''
}

@test "scan of an unknown namespace: no such namespace, exit 2" {
    run -2 --separate-stderr kvquery scan nope
    assert_output ''
    assert_stderr "kvquery: scan nope: no such namespace: no namespace 'nope' on this node"
}

@test "scan --format raw and table" {
    kvquery put test a k v=1 n:int=2
    run -0 kvquery --format raw scan test a
    assert_output "$(printf '%s\n' 1 2)"
    run -0 kvquery --format table scan test a
    assert_line --index 0 --regexp '^SET +KEY +GEN +TTL +BINS$'
    assert_line --index 1 --regexp '^a +k +1 +-1  \{"v":"1","n":2\}$'
}

@test "scan of 100,000 records: each appears exactly once, also with a set filter" {
    python3 -c '
import sys
w = sys.stdout.write
for i in range(100000):
    w("{\"set\":\"%s\",\"key\":\"k%d\",\"bins\":{\"i\":%d}}\n" % ("even" if i % 2 == 0 else "odd", i, i))
' | kvquery import test 2> "$BATS_TEST_TMPDIR/import.err"
    kvquery scan test > "$BATS_TEST_TMPDIR/all"
    run -0 wc -l < "$BATS_TEST_TMPDIR/all"
    assert_output 100000
    grep -o '"key":"k[0-9]*"' "$BATS_TEST_TMPDIR/all" | sort > "$BATS_TEST_TMPDIR/keys"
    run -0 uniq -d "$BATS_TEST_TMPDIR/keys"
    assert_output ''
    run -0 wc -l < "$BATS_TEST_TMPDIR/keys"
    assert_output 100000
    # a set filter skips the other set's records but still walks them all
    kvquery scan test odd > "$BATS_TEST_TMPDIR/odd"
    run -0 wc -l < "$BATS_TEST_TMPDIR/odd"
    assert_output 50000
    run -0 grep -c '^{"ns":"test","set":"odd","key":"k[0-9]*[13579]",' "$BATS_TEST_TMPDIR/odd"
    assert_output 50000
}

@test "scan to a full disk fails with a write error, exit 2" {
    seq 1 5000 | sed 's/.*/{"set":"f","key":"k&","bins":{"i":&}}/' | kvquery import test
    run -2 --separate-stderr bash -c 'kvquery scan test > /dev/full'
    assert_stderr --regexp 'cannot write standard output: No space left on device'
}

@test "batch to a full disk fails with a write error, exit 2" {
    seq 1 5000 | sed 's/.*/{"set":"f","key":"k&","bins":{"i":&}}/' | kvquery import test
    run -2 --separate-stderr bash -c 'seq 1 5000 | sed "s/^/k/" | kvquery batch test f > /dev/full'
    assert_stderr --regexp 'cannot write standard output: No space left on device'
}
