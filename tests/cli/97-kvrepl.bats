#!/usr/bin/env bats
# kvrepl: dump and load (binary and JSON Lines) between nodes and
# clusters, the stream's checks (damage, truncation, header), verify and
# its repair, verify --replicas, and migrate.

load helpers

KVSTREAM=$KV_ROOT/tests/tools/kvstream.py

# records_on EP [NS]: the number of records of NS (default test) at node EP.
records_on() {
    kvquery -e "$1" info "${2:-test}" | sed -nE 's/.*"records":([0-9]+).*/\1/p'
}

# sorted_export EP [NS]: kvquery export of NS at EP, sorted, with the
# seconds left of records that expire written as T (they tick between
# two reads).
sorted_export() { kvquery -e "$1" export "${2:-test}" 2>/dev/null | ttl_t | sort; }
ttl_t() { sed -E 's/"ttl":[0-9]+,/"ttl":T,/'; }

# pid_of SET KEY: the partition of a string key (kvproto(7), DIGEST).
pid_of() { key_in "$1" "$2" 0 0 0 4096 | cut -d' ' -f2; }

# key_in SET PREFIX FIRST STEP LO HI: the first key PREFIX<FIRST + k*STEP>
# (PREFIX alone if STEP is 0) whose partition is in [LO, HI), and its
# partition (one python run).
key_in() {
    python3 -c 'import hashlib, itertools, sys
s, prefix, first, step, lo, hi = sys.argv[1].encode(), sys.argv[2], *map(int, sys.argv[3:])
for i in itertools.count(first, step) if step else [first]:
    k = prefix + (str(i) if step else "")
    d = hashlib.blake2b(bytes([len(s)]) + s + b"\x01" + k.encode(), digest_size=20).digest()
    p = (d[0] | d[1] << 8) & 0xFFF
    if lo <= p < hi:
        print(k, p)
        break' "$@"
}

# fill EP N: N records of every kind into namespace test at EP: string
# and integer keys, a record stored without its key, bins of every type,
# some with a TTL.
fill() {
    python3 -c 'import json, sys
for i in range(int(sys.argv[1])):
    r = {"set": "s" if i % 3 else "t", "key": ("k%d" % i) if i % 2 else i,
         "bins": {"i": i, "f": i + 0.5, "s": "x" * (i % 7), "b": {"$bytes": "AAEC"}, "l": [i, "a", None],
                  "m": {"k": i, "ok": True}, "nan": {"$float": "NaN"}}}
    if i % 5 == 0:
        r["ttl"] = 100000 + i
    print(json.dumps(r))' "$2" | kvquery -e "$1" import test
    kvquery -e "$1" --no-send-key put test s keyless v=1 >/dev/null
}

# two_nodes [kvnode args]: nodes A (file namespace, keeps tombstones) and
# B (in memory); their endpoints in A and B.
two_nodes() {
    start_node -d "$BATS_TEST_TMPDIR/a" "$@"
    A=$KV_ENDPOINT
    start_node "$@"
    B=$KV_ENDPOINT
}

@test "dump | load between two nodes: identical contents, checked by verify and by sorted exports" {
    two_nodes
    fill "$A" 300
    run bash -c "kvrepl dump --from $A | kvrepl load --to $B"
    assert_success
    assert_output --partial "kvrepl: dump: 301 records"
    assert_output --partial "kvrepl: load: 301 records read, 301 applied, 0 not applied"
    [ "$(records_on "$B")" = 301 ]
    run --separate-stderr kvrepl verify "$A" "$B"
    assert_success
    [ -z "$output" ]
    assert_stderr --partial "4096 partitions compared, 0 differ"
    diff <(sorted_export "$A") <(sorted_export "$B")
    # the copy is not the original: verify tells them apart once one changes
    kvquery -e "$B" put test s k1 i:int=-1 >/dev/null
    run --separate-stderr kvrepl verify "$A" "$B"
    assert_failure 1
    assert_output --regexp "^partition $(pid_of s k1) differs: A [0-9]+ records, B [0-9]+ records$"
    # loading the same stream again applies nothing
    kvrepl dump --from "$A" >"$BATS_TEST_TMPDIR/s.kvr"
    run kvrepl load --to "$B" <"$BATS_TEST_TMPDIR/s.kvr"
    assert_success
    assert_output --partial "301 records read, 0 applied, 301 not applied"
}

@test "dump --format jsonl writes exactly what kvquery export writes, also for one set" {
    start_node
    fill "$KV_ENDPOINT" 200
    kvrepl dump --from "$KV_ENDPOINT" --format jsonl >"$BATS_TEST_TMPDIR/d.jsonl"
    kvquery export test >"$BATS_TEST_TMPDIR/e.jsonl"
    [ "$(wc -l <"$BATS_TEST_TMPDIR/d.jsonl")" -eq 201 ]
    grep -q '"ttl":1000' "$BATS_TEST_TMPDIR/d.jsonl"
    diff <(ttl_t <"$BATS_TEST_TMPDIR/d.jsonl" | sort) <(ttl_t <"$BATS_TEST_TMPDIR/e.jsonl" | sort)
    kvrepl dump --from "$KV_ENDPOINT" --format jsonl --set t >"$BATS_TEST_TMPDIR/d.jsonl"
    kvquery export test t >"$BATS_TEST_TMPDIR/e.jsonl"
    [ "$(wc -l <"$BATS_TEST_TMPDIR/d.jsonl")" -eq 67 ]
    diff <(ttl_t <"$BATS_TEST_TMPDIR/d.jsonl" | sort) <(ttl_t <"$BATS_TEST_TMPDIR/e.jsonl" | sort)
}

@test "a binary dump | load keeps generation, last-update time and expiry; a JSON Lines load keeps the generation" {
    two_nodes
    kvquery -e "$A" put test s gen3 v=1 --ttl 5000 >/dev/null
    kvquery -e "$A" put test s gen3 v=2 --ttl 5000 >/dev/null
    kvquery -e "$A" put test s gen3 v=3 --ttl 5000 >/dev/null
    kvquery -e "$A" put test s forever v=1 >/dev/null
    kvrepl dump --from "$A" | kvrepl load --to "$B"
    run kvquery -e "$B" get test s gen3
    assert_output --regexp '"gen":3,"ttl":(49[0-9][0-9]|5000),"bins":\{"v":"3"\}'
    run kvquery -e "$B" get test s forever
    assert_output --partial '"gen":1,"ttl":-1,'
    # verify hashes lut and expiry too: equal means both came through
    run kvrepl verify "$A" "$B"
    assert_success
    # through JSON Lines the generation and TTL come, the update time is the load's
    start_node
    local C=$KV_ENDPOINT
    kvrepl dump --from "$A" --format jsonl | kvrepl load --to "$C" --format jsonl
    run kvquery -e "$C" get test s gen3
    assert_output --regexp '"gen":3,"ttl":(49[0-9][0-9]|5000),'
    run kvrepl verify "$A" "$C"
    assert_failure 1
    # a JSON line without "ns" needs --ns; a bad line is reported with its number
    printf '%s\n' '{"set":"s","key":"x","bins":{"v":1}}' 'nonsense' '{"ns":"test","key":"y","bins":{}}' >"$BATS_TEST_TMPDIR/bad.jsonl"
    run kvrepl load --to "$C" --format jsonl <"$BATS_TEST_TMPDIR/bad.jsonl"
    assert_failure 2
    assert_output --partial 'load: line 1: no "ns" of 1 to 31 bytes (give --ns)'
    assert_output --partial "load: line 2: bad JSON at column"
    assert_output --partial 'load: line 3: "bins" must be a non-empty object'
    assert_output --partial "3 lines read, 0 applied, 0 not applied (the copy there was as new or newer, or the record had expired), 3 failed"
}

@test "load --ns puts the records into another namespace" {
    start_node --ns test --ns other
    fill "$KV_ENDPOINT" 50
    run bash -c "kvrepl dump --from $KV_ENDPOINT | kvrepl load --to $KV_ENDPOINT --ns other"
    assert_success
    [ "$(records_on "$KV_ENDPOINT" other)" = 51 ]
    diff <(sorted_export "$KV_ENDPOINT" | sed 's/"ns":"test"/"ns":"other"/') <(sorted_export "$KV_ENDPOINT" other)
}

@test "tombstones: a newer delete removes an older record; an older copy or delete leaves a newer record" {
    two_nodes
    for k in k1 k2 k3 k4; do kvquery -e "$A" put test s "$k" v=a >/dev/null; done
    kvrepl dump --from "$A" | kvrepl load --to "$B"
    # on A: k1 deleted; on B: k2 written again (newer than A's), k3 written
    # again after A's delete of it
    kvquery -e "$A" delete test s k1
    kvquery -e "$A" delete test s k3
    kvquery -e "$B" put test s k2 v=b >/dev/null
    kvquery -e "$B" put test s k3 v=b >/dev/null
    # without --tombstones the delete does not travel
    run bash -c "kvrepl dump --from $A | kvrepl load --to $B"
    assert_success
    run kvquery -e "$B" get test s k1
    assert_success
    run bash -c "kvrepl dump --from $A --tombstones | kvrepl load --to $B"
    assert_success
    assert_output --partial "dump: 2 records, 2 tombstones"
    assert_output --partial "4 records read, 1 applied, 3 not applied"
    gone test s k1 -e "$B"
    run kvquery -e "$B" get test s k2
    assert_output --partial '"gen":2,"ttl":-1,"bins":{"v":"b"}'
    run kvquery -e "$B" get test s k3
    assert_output --partial '"bins":{"v":"b"}'
    run kvquery -e "$B" get test s k4
    assert_output --partial '"bins":{"v":"a"}'
    # a tombstone in a hand-made stream, newer than a record: deletes it
    local lut=$(($(date +%s) * 1000 + 60000))
    python3 "$KVSTREAM" "rec:{\"set\":\"s\",\"key\":\"k4\",\"gen\":1,\"lut\":$lut,\"del\":true}" >"$BATS_TEST_TMPDIR/t.kvr"
    run kvrepl load --to "$B" <"$BATS_TEST_TMPDIR/t.kvr"
    assert_success
    assert_output --partial "1 records read, 1 applied"
    gone test s k4 -e "$B"
}

@test "a truncated stream stops the load with the offset; the records before it stay" {
    start_node
    fill "$KV_ENDPOINT" 200
    kvrepl dump --from "$KV_ENDPOINT" >"$BATS_TEST_TMPDIR/s.kvr"
    local size
    size=$(stat -c %s "$BATS_TEST_TMPDIR/s.kvr")
    # cut inside the last record frame: 200 of the 201 records are whole
    head -c $((size - 40)) "$BATS_TEST_TMPDIR/s.kvr" >"$BATS_TEST_TMPDIR/cut.kvr"
    start_node
    run kvrepl load --to "$KV_ENDPOINT" <"$BATS_TEST_TMPDIR/cut.kvr"
    assert_failure 2
    assert_output --regexp "kvrepl: load: at byte [0-9]+ \(record 201\): the stream ends inside a frame \([0-9]+ of [0-9]+ bytes\): it is truncated"
    assert_output --partial "kvrepl: load: stopped: 200 records read, 200 applied"
    [ "$(records_on "$KV_ENDPOINT")" = 200 ]
    # cut between frames, before the end frame (found by walking the frames)
    local end
    end=$(python3 -c 'import struct, sys
b = open(sys.argv[1], "rb").read(); at = 8
while b[at + 4] != ord("E"):
    at += 9 + struct.unpack_from("<I", b, at)[0]
print(at)' "$BATS_TEST_TMPDIR/s.kvr")
    head -c "$end" "$BATS_TEST_TMPDIR/s.kvr" >"$BATS_TEST_TMPDIR/cut.kvr"
    run kvrepl load --to "$KV_ENDPOINT" <"$BATS_TEST_TMPDIR/cut.kvr"
    assert_failure 2
    assert_output --partial "at byte $end: the stream ends after record 201 without its end frame: it is truncated"
    assert_output --partial "stopped: 201 records read, 1 applied, 200 not applied"
}

@test "one damaged byte in the middle of a stream: the load stops at its frame, naming offset and record" {
    start_node
    fill "$KV_ENDPOINT" 300
    kvrepl dump --from "$KV_ENDPOINT" >"$BATS_TEST_TMPDIR/s.kvr"
    local size at
    size=$(stat -c %s "$BATS_TEST_TMPDIR/s.kvr")
    at=$((size / 2))
    python3 -c 'import sys
p, at = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read()); b[at] ^= 0x40; open(p, "wb").write(b)' "$BATS_TEST_TMPDIR/s.kvr" "$at"
    start_node
    run kvrepl load --to "$KV_ENDPOINT" <"$BATS_TEST_TMPDIR/s.kvr"
    assert_failure 2
    assert_output --regexp "kvrepl: load: at byte [0-9]+ \(record [0-9]+\): (bad checksum|a frame of [0-9]+ bytes, over the limit)"
    local off rec
    off=$(sed -nE 's/.*at byte ([0-9]+) \(record ([0-9]+)\).*/\1/p' <<<"$output")
    rec=$(sed -nE 's/.*at byte ([0-9]+) \(record ([0-9]+)\).*/\2/p' <<<"$output")
    # the frame named holds the damaged byte, and every record before it is loaded
    [ "$off" -le "$at" ] && [ "$((at - off))" -lt 2000 ]
    [ "$rec" -gt 100 ] && [ "$rec" -lt 250 ]
    [ "$(records_on "$KV_ENDPOINT")" = $((rec - 1)) ]
    assert_output --partial "stopped: $((rec - 1)) records read, $((rec - 1)) applied"
}

@test "a bad header, an unknown version, a frame over the limit, bad MessagePack, a missing field: clear errors" {
    start_node
    load_err() { # load_err MESSAGE: stdin refused with MESSAGE, exit 2
        run kvrepl load --to "$KV_ENDPOINT"
        assert_failure 2
        assert_output --partial "$1"
    }
    load_err "kvrepl: load: the stream is empty (no header)" </dev/null
    printf 'KVRE' | load_err "the stream ends inside its 8-byte header, after 4 bytes"
    echo '{"ns":"test"}' | load_err 'at byte 0: not a kvrepl stream (it does not start with "KVREPL"; a JSON Lines stream needs --format jsonl)'
    python3 "$KVSTREAM" --version 2 | load_err "at byte 6: stream format version 2 is not supported (this kvrepl reads version 1)"
    { python3 "$KVSTREAM" --no-end; printf '\377\377\377\177R\0\0\0\0'; } |
        load_err "(record 1): a frame of 2147483647 bytes, over the limit of 16777216 bytes"
    python3 "$KVSTREAM" raw:R:c1 | load_err "(record 1): bad record: not a MessagePack map"
    python3 "$KVSTREAM" raw:R:81a36e73 | load_err "(record 1): bad record: malformed MessagePack"
    python3 "$KVSTREAM" 'rec:{"key":"a","lut":5,"bins":{"v":1}}' raw:R:82a26e73a474657374a3676e6501 |
        load_err "(record 2): bad record: missing field 'digest'"
    python3 "$KVSTREAM" 'rec:{"key":"a","lut":5,"bins":{"v":1}}' 'rec:{"key":"b","digest":"00000000000000000000000000000000000000ff","lut":5,"bins":{"v":1}}' |
        load_err "(record 2): bad record: the set and key do not give the digest"
    python3 "$KVSTREAM" --end-counts 5 0 'rec:{"key":"a","lut":5,"bins":{"v":1}}' |
        load_err "the end frame counts 5 records and 0 tombstones, but the stream holds 1 and 0"
    { python3 "$KVSTREAM"; echo extra; } | load_err "data after the end frame"
    python3 "$KVSTREAM" raw:X:80 | load_err "a frame of unknown type 0x58"
    # a good hand-made stream loads: the format is the page's
    python3 "$KVSTREAM" 'rec:{"set":"s","key":"a","gen":7,"lut":1000,"bins":{"v":"hand"}}' |
        kvrepl load --to "$KV_ENDPOINT"
    run kvquery get test s a
    assert_output '{"ns":"test","set":"s","key":"a","gen":7,"ttl":-1,"bins":{"v":"hand"}}'
}

@test "verify finds the differing partitions and --repair gives each side the newer copies" {
    two_nodes
    fill "$A" 100
    kvrepl dump --from "$A" | kvrepl load --to "$B"
    kvquery -e "$A" put test s only-a v=a >/dev/null
    kvquery -e "$B" put test s k3 i:int=333 >/dev/null
    kvquery -e "$A" delete test s k5
    run --separate-stderr kvrepl verify "$A" "$B"
    assert_failure 1
    local want=("$(pid_of s only-a)" "$(pid_of s k3)" "$(pid_of s k5)")
    [ "${#lines[@]}" -eq 3 ]
    for p in "${want[@]}"; do [[ $output == *"partition $p differs: "* ]]; done
    assert_stderr --partial "4096 partitions compared, 3 differ"
    # --partitions limits the comparison
    run kvrepl verify "$A" "$B" --partitions "$(pid_of s only-a)"
    assert_failure 1
    local other=0
    while [[ " ${want[*]} " == *" $other "* ]]; do other=$((other + 1)); done
    run kvrepl verify "$A" "$B" --partitions "$other"
    assert_success
    run --separate-stderr kvrepl verify "$A" "$B" --repair
    assert_success
    assert_stderr --partial "repaired 3 partitions: 1 copies sent to A, 2 to B; 0 still differ"
    run kvrepl verify "$A" "$B"
    assert_success
    run kvquery -e "$B" get test s only-a
    assert_success
    run kvquery -e "$A" get test s k3
    assert_output --partial '"i":333'
    gone test s k5 -e "$B"
}

@test "dump | load from one kvroute cluster into another; verify compares the clusters" {
    start_cluster 2
    local R1=$ROUTER_EP N1=("${NODES[@]}")
    start_cluster 2
    local R2=$ROUTER_EP
    fill "$R1" 300
    run bash -c "kvrepl dump --from $R1 --tombstones | kvrepl load --to $R2"
    assert_success
    assert_output --partial "load: 301 records read, 301 applied"
    run kvrepl verify "$R1" "$R2"
    assert_success
    diff <(sorted_export "$R1") <(sorted_export "$R2")
    # through the router every write went to both nodes (rf 2)
    [ "$(records_on "${NODES[0]}")" = 301 ] && [ "$(records_on "${NODES[1]}")" = 301 ]
    run kvrepl verify --replicas "$R2"
    assert_success
    # a node against its cluster: the same records
    run kvrepl verify "${N1[0]}" "$R1"
    assert_success
}

@test "verify --replicas finds a replica that differs from its master, and --repair mends it" {
    start_cluster 2
    kvquery -e "$ROUTER_EP" put test s r1 v=1 >/dev/null
    kvquery -e "$ROUTER_EP" put test s r2 v=1 >/dev/null
    run kvrepl verify --replicas "$ROUTER_EP"
    assert_success
    # a newer copy of r1 merged straight into the replica of its partition
    local p replica
    p=$(pid_of s r1)
    replica=$(kvquery -e "$ROUTER_EP" info partitions | python3 -c 'import json, sys
d = json.load(sys.stdin); print(d["partitions"][int(sys.argv[1])][1])' "$p")
    local ep
    ep=$(cluster_json "$ROUTER_EP" "[n['endpoint'] for n in d['nodes'] if n['id'] == '$replica'][0]")
    python3 "$KVSTREAM" "rec:{\"set\":\"s\",\"key\":\"r1\",\"gen\":9,\"lut\":1000,\"bins\":{\"v\":\"replica\"}}" |
        kvrepl load --to "$ep"
    run --separate-stderr kvrepl verify --replicas "$ROUTER_EP"
    assert_failure 1
    assert_output --regexp "^partition $p differs: master [0-9a-f]{16} 1 records, replica $replica 1 records$"
    run --separate-stderr kvrepl verify --replicas "$ROUTER_EP" --repair
    assert_success
    assert_stderr --partial "repaired 1 partitions; 0 still differ"
    run kvquery -e "$ROUTER_EP" get test s r1
    assert_output --partial '"gen":9,"ttl":-1,"bins":{"v":"replica"}'
    run kvrepl verify --replicas "$ROUTER_EP" --partitions "$p"
    assert_success
}

@test "migrate fills an empty node with the listed partitions, drops a stale copy and keeps a newer one" {
    two_nodes
    local SRC=$A DST=$B
    fill "$SRC" 400
    # keys of partitions 0-1023: one DST holds stale (SRC does not have
    # it), one both hold with DST's newer
    local stale newer
    stale=$(key_in s x 1000 1 0 1024 | cut -d' ' -f1)
    newer=$(key_in s k 1 2 0 1024 | cut -d' ' -f1)
    [ -n "$stale" ] && [ -n "${newer#k}" ] && [ "${newer#k}" -lt 400 ]
    kvquery -e "$DST" put test s "$stale" v=stale >/dev/null
    kvquery -e "$DST" put test s "$newer" v=dst >/dev/null
    kvquery -e "$DST" put test s "$newer" v=dst >/dev/null
    run --separate-stderr kvrepl migrate --from "$SRC" --to "$DST" --ns test --partitions 0-1023
    assert_success
    [ "${#lines[@]}" -eq 1024 ]
    [ "${lines[0]%% *}" = done ] && [[ ${lines[1023]} =~ ^done\ 1023\ [0-9]+\ [0-9]+$ ]]
    assert_stderr --regexp "migrate: 1024 of 1024 partitions done, [0-9]+ records sent \([0-9]+ to --to, 1 to --from, 1 dropped from --to; 0 by passes after the first\)"
    run kvrepl verify "$SRC" "$DST" --partitions 0-1023
    assert_success
    gone test s "$stale" -e "$DST"
    run kvquery -e "$SRC" get test s "$newer"
    assert_output --partial '"v":"dst"'
    # nothing outside the list came
    [ "$(kvquery -e "$DST" scan test | wc -l)" -lt 150 ]
    run kvrepl verify "$SRC" "$DST" --partitions 1024-4095
    assert_failure 1
    # again: nothing left to send
    run --separate-stderr kvrepl migrate --from "$SRC" --to "$DST" --ns test --partitions 0-1023
    assert_success
    assert_stderr --partial "1024 of 1024 partitions done, 0 records sent"
}

@test "migrate keeps a copy only DST holds that is newer than SRC's scan (a replica write)" {
    two_nodes
    # a copy on DST alone, last updated after SRC's scan will start
    local lut=$(($(date +%s) * 1000 + 3600000)) p
    p=$(pid_of s late)
    python3 "$KVSTREAM" "rec:{\"set\":\"s\",\"key\":\"late\",\"lut\":$lut,\"bins\":{\"v\":1}}" | kvrepl load --to "$B"
    run --separate-stderr kvrepl migrate --from "$A" --to "$B" --ns test --partitions "$p"
    assert_success
    assert_output "done $p 0 0"
    run kvquery -e "$B" get test s late
    assert_success
}

@test "migrate names the partition when a node refuses, and stops; the chunks before it are done" {
    start_node -d "$BATS_TEST_TMPDIR/a"
    local SRC=$KV_ENDPOINT
    start_node --ns test,max-bins=1
    local DST=$KV_ENDPOINT
    local k p
    # a partition of the second chunk of 256 partitions (the first is done
    # once passed twice)
    read -r k p < <(key_in s k 0 1 257 400)
    kvquery -e "$SRC" put test s "$k" v=1 w=2 >/dev/null
    kvquery -e "$SRC" put test s one v=1 >/dev/null
    run --separate-stderr kvrepl migrate --from "$SRC" --to "$DST" --ns test --partitions "0-$p"
    assert_failure 2
    [ "${#lines[@]}" -eq 256 ]
    assert_stderr --partial "kvrepl: migrate: partition $p: the merge of"
    assert_stderr --partial "was refused: too many bins"
    assert_stderr --partial "256 of $((p + 1)) partitions done"
}

# has_records EP: node EP holds records of namespace test.
has_records() { [ "$(records_on "$1")" -gt 0 ]; }

# migrate_deleting SRC DST: 300 records of partitions 0-255 (one chunk)
# into SRC, migrated slowly to DST (3 s) while 20 of them are deleted on
# SRC (after the first pass read them, before it ends); the summary in
# $BATS_TEST_TMPDIR/m.err.
migrate_deleting() {
    python3 -c 'import hashlib, itertools, json
n = 0
for i in itertools.count():
    d = hashlib.blake2b(b"\x01s\x01" + b"k%d" % i, digest_size=20).digest()
    if (d[0] | d[1] << 8) & 0xFFF < 256:
        print(json.dumps({"set": "s", "key": "k%d" % i, "bins": {"v": i}}))
        n += 1
        if n == 300:
            break' >"$BATS_TEST_TMPDIR/in.jsonl"
    kvquery -e "$1" import test <"$BATS_TEST_TMPDIR/in.jsonl"
    kvrepl migrate --from "$1" --to "$2" --ns test --partitions 0-255 --rate 100 \
        >"$BATS_TEST_TMPDIR/m.out" 2>"$BATS_TEST_TMPDIR/m.err" 3>&- &
    local mpid=$! k st=0
    wait_until 10 has_records "$2"
    local keys
    keys=($(head -20 "$BATS_TEST_TMPDIR/in.jsonl" | python3 -c 'import json, sys; print(" ".join(json.loads(l)["key"] for l in sys.stdin))'))
    for k in "${keys[@]}"; do kvquery -e "$1" delete test s "$k"; done
    kill -0 "$mpid" || { echo "the migration ended before the deletes: too slow a machine for this test"; false; }
    wait "$mpid" || st=$?
    cat "$BATS_TEST_TMPDIR/m.err"
    [ "$st" -eq 0 ]
    [ "$(wc -l <"$BATS_TEST_TMPDIR/m.out")" -eq 256 ]
    for k in "${keys[@]}"; do gone test s "$k" -e "$2"; done
    run kvrepl verify "$1" "$2"
    assert_success
    [ "$(records_on "$2")" = 280 ]
}

@test "migrate passes a chunk again: records deleted on SRC while it ran are deleted (tombstone) or dropped from DST" {
    two_nodes
    # A keeps tombstones: the second pass sends them
    migrate_deleting "$A" "$B"
    grep -Eq "records sent \([0-9]+ to --to, 0 to --from, 0 dropped from --to; 20 by passes after the first\)" \
        "$BATS_TEST_TMPDIR/m.err"
    # B, in memory, keeps none: the second pass drops the stale copies
    start_node
    migrate_deleting "$B" "$KV_ENDPOINT"
    grep -Eq "records sent \([0-9]+ to --to, 0 to --from, 20 dropped from --to; 20 by passes after the first\)" \
        "$BATS_TEST_TMPDIR/m.err"
}

@test "usage errors say what is wrong, exit 2; help matches each command; unreachable endpoints are named" {
    run kvrepl
    assert_failure 2
    assert_output --partial "kvrepl: no command given"
    run kvrepl frobnicate
    assert_failure 2
    assert_output --partial "unknown command 'frobnicate' (dump, load, verify, migrate or ship)"
    run kvrepl dump
    assert_failure 2
    assert_output --partial "dump: --from is required"
    run kvrepl dump --from tcp://127.0.0.1:1 --to tcp://127.0.0.1:2
    assert_failure 2
    assert_output --partial "dump: --to does not apply to dump"
    run kvrepl dump --from tcp://127.0.0.1:1 --partitions 5-3
    assert_failure 2
    assert_output --partial "--partitions '5-3': '5-3' is an empty range (its end is before its start)"
    run kvrepl dump --from tcp://127.0.0.1:1 --partitions 4096
    assert_output --partial "'4096' is not a partition id (0 to 4095)"
    run kvrepl dump --from tcp://127.0.0.1:1 --format xml
    assert_output --partial "--format 'xml': expected binary or jsonl"
    run kvrepl dump --from tcp://127.0.0.1:1 --tombstones --format jsonl
    assert_output --partial "--tombstones needs --format binary"
    run kvrepl dump --from tcp://127.0.0.1:1 --tombstones --set s
    assert_output --partial "--tombstones cannot go with --set"
    run kvrepl verify tcp://127.0.0.1:1
    assert_failure 2
    assert_output --partial "verify: expected two endpoints A and B, or --replicas ROUTER"
    run kvrepl migrate --from tcp://127.0.0.1:1 --to tcp://127.0.0.1:2 --ns test
    assert_output --partial "migrate: --partitions is required"
    run kvrepl load --to tcp://127.0.0.1:1 -t 0
    assert_output --partial "--timeout '0': expected milliseconds from 1 to 3600000"
    run kvrepl load --to tcp://127.0.0.1:1 --in-flight 0
    assert_output --partial "--in-flight '0': expected 1 to 10000"
    run kvrepl migrate --from a --to b --ns test --partitions 1 --rate -5
    assert_output --partial "--rate '-5'"
    run kvrepl dump --from tcp://127.0.0.1:1 --ns this-namespace-name-is-far-too-long
    assert_output --partial "a namespace name is 1 to 31 bytes"
    # each command's --help shows its lines of the SYNOPSIS
    local cmd
    for cmd in dump load verify migrate; do
        run kvrepl "$cmd" --help
        assert_success
        [ "$(kvrepl --help | grep -c "kvrepl $cmd ")" -ge 1 ]
        [[ ${lines[0]} == "usage: kvrepl $cmd "* ]]
        grep -qF "${lines[0]#usage: }" <(kvrepl --help)
    done
    # an endpoint nobody serves
    local ep
    ep=$(kv_free_endpoint)
    run kvrepl dump --from "$ep" -t 2000
    assert_failure 2
    assert_output --partial "kvrepl: dump: --from $ep: cannot connect to $ep: connection refused"
    run kvrepl verify "$ep" "$ep"
    assert_failure 2
    assert_output --partial "verify: A $ep: cannot connect"
    run kvrepl migrate --from "$ep" --to "$ep" --ns test --partitions 0
    assert_failure 2
}

@test "migrate and dump refuse what they cannot use: a router for migrate, an old stream for jsonl" {
    start_cluster 1
    run kvrepl migrate --from "$ROUTER_EP" --to "${NODES[0]}" --ns test --partitions 0
    assert_failure 2
    assert_output --partial "migrate: --from $ROUTER_EP is a kvroute; migrate moves partitions between two kvnodes"
    run kvrepl verify --replicas "${NODES[0]}"
    assert_failure 2
    assert_output --partial "is a kvnode; it needs a kvroute"
    kvrepl dump --from "${NODES[0]}" >"$BATS_TEST_TMPDIR/s.kvr"
    run kvrepl load --to "${NODES[0]}" --format jsonl <"$BATS_TEST_TMPDIR/s.kvr"
    assert_failure 2
    assert_output --partial "load: line 1: bad JSON"
}
