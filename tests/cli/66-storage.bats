#!/usr/bin/env bats
# The file storage engine (kvnode -d DIR, storage=file; kvnode(1) STORAGE):
# what survives a restart and a crash, deletes and expiry, flushing,
# defragmentation under an update load, a second node on the same
# directory, a full disk and a full index, damaged files (at start-up and
# while serving), configuration errors, and the info fields of kvproto(7).
# The slow kill -9 and soak tests are in tests/fault (make fault).

load helpers

setup() {
    DATA=$BATS_TEST_TMPDIR/data
}

# kvnode_fails STATUS ARGS...: kvnode with ARGS exits with STATUS at once
# (bounded by timeout(1) in case it starts serving instead) and writes no
# ready file.  Leaves $output and $stderr as `run` sets them.
kvnode_fails() {
    local want=$1
    shift
    run --separate-stderr timeout 10 kvnode -l 'tcp://127.0.0.1:*' "$@" --ready-file "$BATS_TEST_TMPDIR/never"
    assert_equal "$status" "$want"
    [ ! -e "$BATS_TEST_TMPDIR/never" ]
}

# value_of SET KEY BIN: the bin's value, raw.
value_of() {
    kvquery --format raw get test "$1" "$2" "$3"
}

# matches_model MODEL [SET]: the records of `kvquery export test SET` are
# exactly those of MODEL (JSON Lines of {"key": ..., "bins": ...});
# prints the differences.
matches_model() {
    kvquery export test "${2:-s}" 2>/dev/null | python3 -c '
import json, sys
want, got = {}, {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    want[r["key"]] = r["bins"]
for line in sys.stdin:
    r = json.loads(line)
    got[r["key"]] = r["bins"]
bad = 0
for k in sorted(set(want) | set(got), key=str):
    if want.get(k) != got.get(k):
        bad += 1
        if bad <= 10:
            print("key %s: expected %.60s, found %.60s" % (k, want.get(k), got.get(k)))
print("%d keys expected, %d found, %d differ" % (len(want), len(got), bad))
sys.exit(1 if bad else 0)
' "$1"
}

# damage_reported LOG: LOG has kvnode's report of damaged records, in the
# form of kvnode(1) STORAGE.
damage_reported() {
    grep -Eq "^kvnode: namespace 'test': [1-9][0-9]* damaged records? \([0-9]+ bytes\) in block [0-9]+ discarded$" "$1"
}

# marker_offset FILE TEXT: the byte offset of the last copy of TEXT in
# FILE (bins are stored as written, so a long distinctive string value
# shows where its record lies); fails if it is not there.
marker_offset() {
    python3 -c '
import sys
data = open(sys.argv[1], "rb").read()
off = data.rfind(sys.argv[2].encode())
if off < 0:
    sys.exit("marker not found in " + sys.argv[1])
print(off)
' "$1" "$2"
}

@test "records in -d DIR survive a clean restart: every bin type, keys, gen and ttl" {
    local args=(-d "$DATA")
    start_node "${args[@]}"
    kvquery put test s all i:int=-9223372036854775808 big:int=9223372036854775807 f:float=3.25 \
        nan:float=nan inf:float=-inf s=héllo empty= b:bytes=AAEC/w== nb:bytes= t:bool=true no:bool=false \
        l:json='[1,"a",[2.5,null],{"x":true}]' m:json='{"x":1,"y":[true,null],"z":{"w":"v"}}' \
        nul:json='{"$string":"YQBi"}' mk:json='{"$map":[[1,"one"],[2,"two"]]}'
    kvquery put test s all extra=1
    kvquery put test s all extra=2
    kvquery --int-key put test s 42 v:int=42
    kvquery --no-send-key put test s nokey v=hidden
    kvquery put test t ttl v=1 --ttl 1000
    kvquery export test s | sort >"$BATS_TEST_TMPDIR/before"
    run -0 kvquery get test s all
    assert_output --partial '"gen":3,"ttl":-1,'
    local all=$output
    [ "$(wc -l <"$BATS_TEST_TMPDIR/before")" -eq 3 ]
    [ -f "$DATA/test.dat" ]

    restart_node "${args[@]}"
    run -0 kvquery get test s all
    assert_output "$all"
    assert_output --partial '"bins":{"i":-9223372036854775808,"big":9223372036854775807,"f":3.25,"nan":{"$float":"NaN"},"inf":{"$float":"-Infinity"},"s":"héllo","empty":"","b":{"$bytes":"AAEC/w=="},"nb":{"$bytes":""},"t":true,"no":false,"l":[1,"a",[2.5,null],{"x":true}],"m":{"x":1,"y":[true,null],"z":{"w":"v"}},"nul":{"$string":"YQBi"},"mk":{"$map":[[1,"one"],[2,"two"]]},"extra":"2"}'
    kvquery export test s | sort >"$BATS_TEST_TMPDIR/after"
    diff "$BATS_TEST_TMPDIR/before" "$BATS_TEST_TMPDIR/after"
    run -0 kvquery get test t ttl
    assert_output --regexp '^\{"ns":"test","set":"t","key":"ttl","gen":1,"ttl":(9[89][0-9]|1000),'
    # the generation goes on from where it was
    run -0 kvquery put test s all extra=3
    assert_output '{"ns":"test","set":"s","key":"all","gen":4,"ttl":-1}'
    run -0 ns_info test storage
    assert_output '"file"'
    run -0 ns_info test records
    assert_output 4
}

@test "-d DIR alone: namespace test is kept in DIR/test.dat, which is created" {
    [ ! -e "$DATA" ]
    start_node -d "$DATA"
    grep -q 'namespaces: test)$' "$NODE_LOG"
    run -0 kvquery info namespaces
    assert_output --regexp '^\{"namespaces":\[\{"name":"test","storage":"file",[^]]*\}\]\}$'
    [ -d "$DATA" ]
    [ -f "$DATA/test.dat" ]
    kvquery put test s k v=kept
    restart_node -d "$DATA"
    run -0 value_of s k v
    assert_output kept
}

@test "--ns x,storage=memory with -d stays in memory: gone after a restart, no x.dat" {
    local args=(-d "$DATA" --ns test --ns x,storage=memory)
    start_node "${args[@]}"
    run -0 ns_info x storage
    assert_output '"memory"'
    run -0 ns_info test storage
    assert_output '"file"'
    kvquery put test s k v=on-disk
    kvquery put x s k v=in-memory
    restart_node "${args[@]}"
    run -0 value_of s k v
    assert_output on-disk
    run -1 kvquery get x s k
    run -0 ns_info x records
    assert_output 0
    [ ! -e "$DATA/x.dat" ]
}

@test "-c FILE: a data line keeps the namespaces in that directory; -d overrides it" {
    local conf=$BATS_TEST_TMPDIR/kvnode.conf
    printf 'data %s\nns test\n' "$DATA" >"$conf"
    start_node -c "$conf"
    kvquery put test s k v=in-conf-dir
    run -0 ns_info test storage
    assert_output '"file"'
    stop_node
    [ -f "$DATA/test.dat" ]
    start_node -c "$conf" -d "$BATS_TEST_TMPDIR/other"
    [ -f "$BATS_TEST_TMPDIR/other/test.dat" ]
    run -1 kvquery get test s k
    stop_node
    start_node -c "$conf"
    run -0 value_of s k v
    assert_output in-conf-dir
}

@test "deletes, expiries and re-creations are kept over a restart" {
    local args=(-d "$DATA")
    start_node "${args[@]}"
    local n
    for n in 1 2 3 4 5; do kvquery put test s "k$n" v="$n"; done
    kvquery delete test s k2
    kvquery delete test s k4
    kvquery put test s again v=old
    kvquery delete test s again
    kvquery put test s again v=new
    kvquery put test s short v=1 --ttl 1
    wait_until 5 gone test s short
    restart_node "${args[@]}"
    for n in 1 3 5; do
        run -0 value_of s "k$n" v
        assert_output "$n"
    done
    run -1 kvquery get test s k2
    run -1 kvquery get test s k4
    run -1 kvquery get test s short
    run -0 kvquery get test s again
    assert_output '{"ns":"test","set":"s","key":"again","gen":1,"ttl":-1,"bins":{"v":"new"}}'
    run -0 ns_info test records
    assert_output 4
    # and once more: nothing comes back on a second restart
    restart_node "${args[@]}"
    run -1 kvquery get test s k2
    run -1 kvquery get test s short
    run -0 value_of s again v
    assert_output new
    run -0 kvquery scan test s
    assert_equal "$(echo "$output" | wc -l)" 4
}

@test "a record that expires while kvnode is down stays gone" {
    local args=(-d "$DATA")
    start_node "${args[@]}"
    local s
    s=$(date +%s)
    kvquery put test s short v=1 --ttl 1
    kvquery put test s long v=1
    stop_node
    # written during second s or later with a TTL of 1: expired by s + 3
    wait_until 5 clock_past $((s + 2))
    start_node "${args[@]}"
    run -1 kvquery get test s short
    run -0 value_of s long v
    assert_output 1
    run -0 kvquery scan test s
    assert_output --partial '"key":"long"'
    refute_output --partial '"key":"short"'
}

@test "3000 imported records of every type export the same after a restart" {
    local args=(-d "$DATA" --ns test,write-block=64K)
    start_node "${args[@]}"
    python3 -c '
import json
for i in range(3000):
    print(json.dumps({"set": "s", "key": i if i % 2 else "k%d" % i, "bins": {
        "n": i, "f": i / 7, "s": "v%d" % i * (i % 13), "b": {"$bytes": "AAEC"},
        "l": [i, "x", [True, None]], "m": {"a": i, "b": {"c": "d"}}}}))
' | kvquery import test
    kvquery export test | sort >"$BATS_TEST_TMPDIR/before"
    [ "$(wc -l <"$BATS_TEST_TMPDIR/before")" -eq 3000 ]
    restart_node "${args[@]}"
    kvquery export test | sort >"$BATS_TEST_TMPDIR/after"
    diff "$BATS_TEST_TMPDIR/before" "$BATS_TEST_TMPDIR/after"
    run -0 ns_info test records
    assert_output 3000
    grep -Eq "^kvnode: namespace 'test': loaded 3000 records" "$NODE_LOG"
}

@test "commit-to-device=true: acknowledged writes, deletes and re-creations survive kill -9" {
    local args=(-d "$DATA" --ns test,commit-to-device=true,write-block=64K)
    start_node "${args[@]}"
    local n
    for n in $(seq 1 20); do kvquery put test s "k$n" v="$n"; done
    kvquery delete test s k3
    kvquery put test s k5 v=updated
    kvquery delete test s k7
    kvquery put test s k7 v=recreated
    kill9_node
    [ "$NODE_STATUS" -eq 137 ]
    start_node "${args[@]}"
    run -1 kvquery get test s k3
    run -0 value_of s k5 v
    assert_output updated
    run -0 kvquery get test s k7
    assert_output '{"ns":"test","set":"s","key":"k7","gen":1,"ttl":-1,"bins":{"v":"recreated"}}'
    for n in 1 2 4 6 8 20; do
        run -0 value_of s "k$n" v
        assert_output "$n"
    done
    run -0 ns_info test records
    assert_output 19
}

@test "commit-to-device=false, flush-ms=50: a write is on disk after a flush and survives kill -9" {
    local args=(-d "$DATA" --ns test,flush-ms=50,write-block=64K)
    start_node "${args[@]}"
    run -0 ns_info test commit_to_device
    assert_output false
    run -0 ns_info test flush_ms
    assert_output 50
    local f0 marker
    f0=$(ns_info test flushes)
    marker=flushed-$RANDOM$RANDOM-$(date +%s%N)
    kvquery put test s k "v=$marker"
    flushed_since() { [ "$(ns_info test flushes)" -gt "$1" ]; }
    wait_until 5 flushed_since "$f0"
    # the flush wrote the record into the file (whether or not an idle
    # flush was counted first)
    wait_until 5 grep -qaF "$marker" "$DATA/test.dat"
    kill9_node
    start_node "${args[@]}"
    run -0 value_of s k v
    assert_output "$marker"
}

@test "commit-to-device=false: a full write block is flushed at once; kill -9 loses only a tail of the writes" {
    # flush-ms is a minute, so only filled blocks are flushed before the kill
    local args=(-d "$DATA" --ns test,flush-ms=60000,write-block=64K)
    start_node "${args[@]}"
    local f0
    f0=$(ns_info test flushes)
    # 200 records of about 1 KB, written in order: about three blocks
    python3 -c '
import json
for i in range(200):
    print(json.dumps({"set": "s", "key": i, "bins": {"i": i, "p": "%04d" % i * 250}}))
' | kvquery import --in-flight 1 test
    flushed_twice() { [ "$(ns_info test flushes)" -ge $(($1 + 2)) ]; }
    wait_until 10 flushed_twice "$f0" || fail "no flush of the full blocks: $(kvquery info test)"
    kill9_node
    start_node "${args[@]}"
    # what survived is a prefix of the writes (nothing older than a lost
    # write is lost) and holds at least the first full block
    run -0 python3 -c '
import json, subprocess, sys
out = subprocess.run(["kvquery", "export", "test", "s"], capture_output=True, text=True, check=True).stdout
keys = sorted(json.loads(l)["key"] for l in out.splitlines())
for l in out.splitlines():
    r = json.loads(l)
    assert r["bins"] == {"i": r["key"], "p": "%04d" % r["key"] * 250}, r
print(len(keys), "records survived")
sys.exit(0 if keys == list(range(len(keys))) and len(keys) >= 40 else 1)
'
}

@test "defragmentation: writing 10 times the disk limit stays under it; contents match a model over a restart" {
    local args=(-d "$DATA" --ns test,write-block=64K,disk=2M)
    start_node "${args[@]}"
    local dir=$BATS_TEST_TMPDIR/plan
    mkdir "$dir"
    # 55 rounds over 250 keys of 1.2 to 2.4 KB (about 24 MB in all); every
    # 5th round deletes 7 keys, which come back 3 rounds later
    python3 - "$dir" <<'EOF'
import hashlib, json, os, sys
d = sys.argv[1]
model, deleted = {}, {}
for r in range(55):
    with open(os.path.join(d, "%03d.jsonl" % r), "w") as f:
        for k in range(250):
            key = "k%d" % k
            if key in deleted and r - deleted[key] < 3:
                continue
            deleted.pop(key, None)
            h = hashlib.sha256(("%s:%d" % (key, r)).encode()).hexdigest()
            bins = {"r": r, "p": (h * 40)[: 1200 + int(h[:4], 16) % 1200]}
            model[key] = bins
            f.write(json.dumps({"set": "s", "key": key, "bins": bins}) + "\n")
    with open(os.path.join(d, "%03d.del" % r), "w") as f:
        if r % 5 == 4:
            for k in range(r % 7, 250, 40):
                key = "k%d" % k
                if key in model:
                    del model[key]
                    deleted[key] = r
                    f.write(key + "\n")
with open(os.path.join(d, "model.jsonl"), "w") as f:
    for key, bins in model.items():
        f.write(json.dumps({"key": key, "bins": bins}) + "\n")
EOF
    local f k limit used
    limit=$(ns_info test disk_limit)
    [ "$limit" -eq 2097152 ]
    for f in "$dir"/*.jsonl; do
        [ "$f" != "$dir/model.jsonl" ] || continue
        run -0 --separate-stderr kvquery import test <"$f"
        assert_stderr --partial ' 0 failed'
        while read -r k; do
            kvquery delete test s "$k"
        done <"${f%.jsonl}.del"
        used=$(ns_info test disk_used)
        [ "$used" -le "$limit" ] || fail "disk_used $used > disk_limit $limit after $f"
    done
    run -0 kvquery info test
    echo "$output"
    local info=$output
    [ "$(echo "$info" | json_field 'r["defrag_blocks"]')" -gt 0 ]
    [ "$(echo "$info" | json_field 'r["defrag_records"]')" -gt 0 ]
    [ "$(echo "$info" | json_field 'r["write_bytes"]')" -ge $((10 * limit)) ]
    [ "$(echo "$info" | json_field 'r["disk_used"]')" -le "$limit" ]
    [ "$(echo "$info" | json_field 'r["blocks_total"]')" -eq 32 ]
    run matches_model "$dir/model.jsonl"
    assert_success
    restart_node "${args[@]}"
    run matches_model "$dir/model.jsonl"
    assert_success
    run -0 ns_info test disk_used
    [ "$output" -le "$limit" ]
    ! damage_reported "$NODE_LOG"
}

@test "a second kvnode on the same data directory is refused, exit 1; the first keeps serving" {
    start_node -d "$DATA"
    kvquery put test s k v=1
    local first=$NODE_PID
    kvnode_fails 1 -d "$DATA"
    assert_stderr --partial "data directory $DATA is in use by another kvnode (pid $first)"
    # another namespace list or a memory-only namespace does not get round it
    kvnode_fails 1 -d "$DATA" --ns other
    assert_stderr --partial "data directory $DATA is in use by another kvnode"
    kill -0 "$first"
    run -0 value_of s k v
    assert_output 1
    kvquery put test s k2 v=2
    restart_node -d "$DATA"
    run -0 value_of s k2 v
    assert_output 2
}

@test "-d DIR that cannot be used: a missing parent, or a file; exit 1 naming it" {
    kvnode_fails 1 -d "$BATS_TEST_TMPDIR/no/such/dir"
    assert_stderr --partial "$BATS_TEST_TMPDIR/no/such/dir"
    [ ! -e "$BATS_TEST_TMPDIR/no" ]
    touch "$BATS_TEST_TMPDIR/plainfile"
    kvnode_fails 1 -d "$BATS_TEST_TMPDIR/plainfile"
    assert_stderr --partial "$BATS_TEST_TMPDIR/plainfile"
}

@test "namespace full: a put fails with namespace full, exit 2; gets and deletes go on; writes resume after deletes" {
    local args=(-d "$DATA" --ns test,write-block=64K,disk=1M)
    start_node "${args[@]}"
    # 400 records of 4 KB: about 1.6 MB into 1 MB
    python3 -c '
import json
for i in range(400):
    print(json.dumps({"set": "s", "key": "k%d" % i, "bins": {"i": i, "p": "%04d" % i * 1000}}))
' >"$BATS_TEST_TMPDIR/fill.jsonl"
    run -2 --separate-stderr kvquery import test <"$BATS_TEST_TMPDIR/fill.jsonl"
    assert_stderr --regexp 'kvquery: import: line [0-9]+: namespace full'
    local imported failed
    imported=$(echo "$stderr" | sed -n 's/^kvquery: import: \([0-9]*\) records imported, \([0-9]*\) failed.*/\1/p')
    failed=$(echo "$stderr" | sed -n 's/^kvquery: import: \([0-9]*\) records imported, \([0-9]*\) failed.*/\2/p')
    echo "imported $imported, failed $failed"
    [ "$imported" -ge 100 ]
    [ "$failed" -ge 1 ]
    [ $((imported + failed)) -eq 400 ]
    local big
    big=$(head -c 4000 /dev/zero | tr '\0' x)
    run -2 --separate-stderr kvquery put test s extra "p=$big"
    assert_output ''
    assert_stderr --regexp '^kvquery: put test/s/extra: namespace full'
    run -1 kvquery get test s extra
    # the records written are all there, and readable
    run -0 ns_info test records
    assert_output "$imported"
    run -0 --separate-stderr kvquery export test s
    assert_equal "$(echo "$output" | wc -l)" "$imported"
    local first
    first=$(echo "$output" | head -1 | json_field 'r["key"]' | tr -d '"')
    run -0 kvquery get test s "$first" i
    run -0 ns_info test disk_used
    [ "$output" -le 1048576 ]
    # a full namespace restarts
    restart_node "${args[@]}"
    run -0 ns_info test records
    assert_output "$imported"
    # deletes go on, and free space for writes again
    local keys k
    keys=$(kvquery export test s | python3 -c 'import json, sys; [print(json.loads(l)["key"]) for l in sys.stdin]')
    for k in $keys; do
        kvquery delete test s "$k"
    done
    run -0 ns_info test records
    assert_output 0
    put_works() { kvquery put test s extra "p=$big"; }
    wait_until 20 put_works
    run -0 kvquery get test s extra i
}

@test "memory limits a file namespace's index: past it, writes fail with namespace full" {
    start_node -d "$DATA" --ns test,memory=1M,write-block=1M
    # an index entry is about 50 bytes: 1M holds about 20000 records
    python3 -c '
import json
for i in range(40000):
    print(json.dumps({"set": "s", "key": i, "bins": {"v": i}}))
' >"$BATS_TEST_TMPDIR/many.jsonl"
    run -2 --separate-stderr kvquery import test <"$BATS_TEST_TMPDIR/many.jsonl"
    assert_stderr --partial 'namespace full'
    local records used
    records=$(ns_info test records)
    used=$(ns_info test memory_used)
    echo "records $records, memory_used $used"
    [ "$records" -ge 10000 ]
    [ "$records" -lt 40000 ]
    [ "$used" -le 1048576 ]
    run -0 kvquery --int-key get test s 0 v
}

@test "a torn tail (the file cut in the last record) after kill -9: restart reports it and serves the rest" {
    local args=(-d "$DATA" --ns test,commit-to-device=true,write-block=64K)
    start_node "${args[@]}"
    local n marker
    for n in $(seq 1 10); do kvquery put test s "k$n" v="$n"; done
    marker=$(head -c 2000 /dev/zero | tr '\0' Z)
    kvquery put test s last "m=$marker"
    kill9_node
    local off
    off=$(marker_offset "$DATA/test.dat" "$marker")
    truncate -s $((off + 1000)) "$DATA/test.dat"
    start_node "${args[@]}"
    damage_reported "$NODE_LOG"
    for n in $(seq 1 10); do
        run -0 value_of s "k$n" v
        assert_output "$n"
    done
    run -1 kvquery get test s last
    # the node goes on writing, and the damage is not found again
    kvquery put test s after v=1
    restart_node "${args[@]}"
    ! damage_reported "$NODE_LOG"
    run -0 value_of s after v
    assert_output 1
    run -0 value_of s k10 v
    assert_output 10
}

@test "garbage in the middle of the last record: restart reports it and serves every earlier record" {
    local args=(-d "$DATA" --ns test,commit-to-device=true,write-block=64K)
    start_node "${args[@]}"
    local n marker
    for n in $(seq 1 10); do kvquery put test s "k$n" v="$n"; done
    marker=$(head -c 2000 /dev/zero | tr '\0' Y)
    kvquery put test s last "m=$marker"
    stop_node
    local off
    off=$(marker_offset "$DATA/test.dat" "$marker")
    head -c 100 /dev/urandom | dd of="$DATA/test.dat" bs=1 seek=$((off + 900)) conv=notrunc status=none
    start_node "${args[@]}"
    damage_reported "$NODE_LOG"
    for n in $(seq 1 10); do
        run -0 value_of s "k$n" v
        assert_output "$n"
    done
    run -1 kvquery get test s last
    run -0 ns_info test records
    assert_output 10
    restart_node "${args[@]}"
    ! damage_reported "$NODE_LOG"
}

@test "garbage in a record followed by others in its block: only that record is lost" {
    local args=(-d "$DATA" --ns test,commit-to-device=true,write-block=64K)
    start_node "${args[@]}"
    local n marker
    for n in $(seq 1 10); do kvquery put test s "k$n" v="$n"; done
    marker=$(head -c 2000 /dev/zero | tr '\0' X)
    kvquery put test s victim "m=$marker"
    for n in $(seq 11 20); do kvquery put test s "k$n" v="$n"; done
    kill9_node
    local off
    off=$(marker_offset "$DATA/test.dat" "$marker")
    head -c 100 /dev/urandom | dd of="$DATA/test.dat" bs=1 seek=$((off + 900)) conv=notrunc status=none
    start_node "${args[@]}"
    damage_reported "$NODE_LOG"
    for n in $(seq 1 20); do
        run -0 value_of s "k$n" v
        assert_output "$n"
    done
    run -1 kvquery get test s victim
    run -0 ns_info test records
    assert_output 20
}

@test "updates that shrink or grow a large record, and deletes of one, are not refused" {
    local args=(-d "$DATA" --ns test,write-block=64K)
    start_node "${args[@]}"
    local big
    big=$(head -c 30000 /dev/zero | tr '\0' x)
    run -0 kvquery put test s a "v=$big"
    run kvquery put test s a v=small
    assert_output '{"ns":"test","set":"s","key":"a","gen":2,"ttl":-1}'
    run kvquery put test s a "v=$big"
    assert_output '{"ns":"test","set":"s","key":"a","gen":3,"ttl":-1}'
    run kvquery operate test s a write:v=tiny
    assert_output '{"ns":"test","set":"s","key":"a","gen":4,"ttl":-1,"bins":{}}'
    run -0 kvquery put test s b "v=$big"
    run kvquery delete test s b
    assert_success
    assert_output ''
    restart_node "${args[@]}"
    run -0 value_of s a v
    assert_output tiny
    run -1 kvquery get test s b
}

@test "a record damaged on disk while kvnode runs: get fails with server error, read_errors counts it" {
    local args=(-d "$DATA" --ns test,commit-to-device=true,write-block=64K)
    start_node "${args[@]}"
    local marker
    marker=$(head -c 2000 /dev/zero | tr '\0' W)
    kvquery put test s victim "m=$marker"
    kvquery put test s k1 v=1
    # 500 KB more, so the victim's block is long written and closed
    python3 -c '
import json
for i in range(500):
    print(json.dumps({"set": "s", "key": i, "bins": {"p": "%04d" % i * 250}}))
' | kvquery import test
    local off
    off=$(marker_offset "$DATA/test.dat" "$marker")
    head -c 100 /dev/urandom | dd of="$DATA/test.dat" bs=1 seek=$((off + 900)) conv=notrunc status=none
    # kvproto(7): SERVER is "an internal failure, such as a damaged stored
    # record"
    run --separate-stderr kvquery get test s victim
    echo "get: exit $status: $stderr"
    assert_equal "$status" 2
    assert_stderr --partial 'kvquery: get test/s/victim: server error'
    run -0 ns_info test read_errors
    [ "$output" -ge 1 ]
    run -0 value_of s k1 v
    assert_output 1
    # the node goes on; at the next start the record is discarded
    restart_node "${args[@]}"
    damage_reported "$NODE_LOG"
    run -1 kvquery get test s victim
    run -0 ns_info test records
    assert_output 501
}

@test "storage configuration errors exit 2 with a message naming the key and value" {
    # SPEC|KEY|VALUE: the message names the key and the value as given
    # (or, for a size, in bytes), after the prefix every --ns error has
    local cases=(
        "test,storage=bogus|storage|bogus"
        "test,write-block=100K|write-block|100K"
        "test,write-block=32K|write-block|32K"
        "test,write-block=16M|write-block|16M"
        "test,write-block=abc|write-block|abc"
        "test,defrag-lwm=0|defrag-lwm|0"
        "test,defrag-lwm=100|defrag-lwm|100"
        "test,defrag-lwm=x|defrag-lwm|x"
        "test,flush-ms=0|flush-ms|0"
        "test,flush-ms=60001|flush-ms|60001"
        "test,write-block=64K,disk=512K|disk|512K|524288"
        "test,disk=64M|disk|64M|67108864"
        "test,commit-to-device=maybe|commit-to-device|maybe"
        "test,write-block=64K,max-record-size=128K|max-record-size|128K|131072"
    )
    local c spec key value bytes bad=()
    for c in "${cases[@]}"; do
        IFS='|' read -r spec key value bytes <<<"$c"
        run --separate-stderr timeout 10 kvnode -l 'tcp://127.0.0.1:*' -d "$DATA" --ns "$spec" \
            --ready-file "$BATS_TEST_TMPDIR/never"
        if [ "$status" -ne 2 ] || [ -n "$output" ] || [ -e "$BATS_TEST_TMPDIR/never" ]; then
            bad+=("--ns $spec: exit $status, stdout '$output'")
        elif [[ $stderr != "kvnode: --ns $spec: namespace 'test': "* ]] || [[ $stderr != *"$key"* ]] ||
            { [[ $stderr != *"'$value'"* ]] && { [ -z "$bytes" ] || [[ $stderr != *"$bytes"* ]]; }; }; then
            bad+=("--ns $spec: $stderr")
        fi
    done
    [ ${#bad[@]} -eq 0 ] || fail "$(printf '%s\n' "wrong exit or message for ${#bad[@]} of ${#cases[@]}:" "${bad[@]}")"
    # the text of kvnode(1) DIAGNOSTICS
    kvnode_fails 2 --ns x,storage=file
    assert_output ''
    assert_stderr "kvnode: --ns x,storage=file: namespace 'x': storage=file needs a data directory (-d DIR)"
    # the limits themselves are accepted
    start_node -d "$DATA" --ns test,write-block=64K,disk=1M,defrag-lwm=1,flush-ms=60000,commit-to-device=true
    run -0 kvquery info test
    assert_output --partial '"write_block":65536,'
    assert_output --partial '"disk_limit":1048576,'
    assert_output --partial '"defrag_lwm":1,'
    assert_output --partial '"flush_ms":60000,'
    assert_output --partial '"commit_to_device":true,'
    stop_node
    start_node -d "$BATS_TEST_TMPDIR/d2" --ns test,write-block=8M,disk=128M,defrag-lwm=99,flush-ms=1
    run -0 kvquery info test
    assert_output --partial '"write_block":8388608,'
    assert_output --partial '"defrag_lwm":99,'
    assert_output --partial '"flush_ms":1,'
}

@test "restarting with another write-block is refused with a clear error; the data is kept" {
    start_node -d "$DATA" --ns test,write-block=64K
    kvquery put test s k v=1
    stop_node
    run --separate-stderr timeout 10 kvnode -l 'tcp://127.0.0.1:*' -d "$DATA" --ns test,write-block=128K \
        --ready-file "$BATS_TEST_TMPDIR/never"
    echo "status $status"
    # kvnode(1) does not say whether this is exit 1 (the data cannot be
    # used) or 2 (a --ns error); it must fail, and say why
    [ "$status" -eq 1 ] || [ "$status" -eq 2 ]
    [ ! -e "$BATS_TEST_TMPDIR/never" ]
    assert_stderr --partial 'write-block'
    assert_stderr --regexp '64K|65536'
    start_node -d "$DATA" --ns test,write-block=64K
    run -0 value_of s k v
    assert_output 1
}

@test "info on a file namespace has the fields of kvproto(7), with consistent values" {
    start_node -d "$DATA" --ns test,write-block=64K,disk=2M,defrag-lwm=30,flush-ms=50,commit-to-device=true \
        --ns mem,storage=memory
    local n
    for n in $(seq 1 20); do kvquery put test s "k$n" v="$n"; done
    kvquery delete test s k1
    run -0 kvquery info test
    echo "$output"
    local info=$output
    run -0 python3 -c '
import json, sys
r = json.loads(sys.argv[1])
want = ["name", "storage", "records", "memory_used", "memory_limit", "expired", "default_ttl",
        "max_record_size", "max_bins", "rf", "mode", "commit_to_device", "flush_ms", "tombstones", "disk_used",
        "disk_limit", "live_fraction", "write_block", "blocks_total", "blocks_used", "blocks_free",
        "blocks_written", "defrag_lwm", "defrag_queue", "defrag_blocks", "defrag_records",
        "defrag_bytes", "write_bytes", "flushes", "flush_last_us", "flush_avg_us", "flush_max_us",
        "read_errors"]
missing = [k for k in want if k not in r]
extra = [k for k in r if k not in want]
assert not missing and not extra, "missing %s, unknown %s" % (missing, extra)
def num(k):
    assert isinstance(r[k], (int, float)) and not isinstance(r[k], bool) and r[k] >= 0, (k, r[k])
    return r[k]
for k in want[2:]:
    if k not in ("commit_to_device", "mode"):
        num(k)
assert r["name"] == "test" and r["storage"] == "file", r
assert r["commit_to_device"] is True and r["flush_ms"] == 50, r
assert r["records"] == 19 and r["tombstones"] >= 1, r
assert r["write_block"] == 65536 and r["disk_limit"] == 2097152, r
assert r["blocks_total"] == 32 and r["blocks_used"] + r["blocks_free"] == 32, r
assert 1 <= r["blocks_used"] and r["disk_used"] == r["blocks_used"] * 65536, r
assert 0 < r["live_fraction"] <= 1, r
assert r["defrag_lwm"] == 30, r
assert 0 < r["memory_used"] <= r["memory_limit"], r
assert r["max_record_size"] <= 65536, r
assert r["write_bytes"] > 0 and r["read_errors"] == 0, r
# commit-to-device: at least one fdatasync, and their latency is measured
assert r["flushes"] >= 1 and r["flush_max_us"] >= r["flush_avg_us"], r
assert r["flush_max_us"] >= r["flush_last_us"], r
print("ok")
' "$info"
    assert_output ok
    # a memory namespace on the same node keeps the fields it had
    run -0 kvquery info mem
    assert_output '{"name":"mem","storage":"memory","records":0,"memory_used":0,"memory_limit":4294967296,"expired":0,"default_ttl":0,"max_record_size":1048576,"max_bins":256,"rf":2,"mode":"ap"}'
    # --format table shows them too
    run -0 kvquery --format table info test
    assert_line --regexp '^disk_used +[0-9]+$'
}
