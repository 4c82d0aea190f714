#!/usr/bin/env bats
# export NS [SET] and import NS: the JSON Lines round trip of every value
# type, and how import reports bad lines (--strict, --in-flight, the
# summary line, the exit status).

load helpers

setup() {
    start_node
}

# same_records A B: the JSON Lines files A and B hold the same records,
# compared by key (or digest) with "gen" dropped; TTLs may differ by 2 s.
same_records() {
    python3 - "$1" "$2" <<'EOF'
import json, sys

def load(path):
    out = {}
    for line in open(path, encoding="utf-8"):
        r = json.loads(line)
        r.pop("gen")
        ident = json.dumps([r.get("set"), r.get("key"), r.get("digest")], sort_keys=True)
        assert ident not in out, "duplicate record " + ident
        out[ident] = r
    return out

a, b = load(sys.argv[1]), load(sys.argv[2])
bad = sorted(set(a) ^ set(b))
for k in sorted(set(a) & set(b)):
    ra, rb = dict(a[k]), dict(b[k])
    ta, tb = ra.pop("ttl"), rb.pop("ttl")
    if ra != rb or (ta == -1) != (tb == -1) or abs(ta - tb) > 2:
        bad.append(k)
for k in bad:
    print("differs:", k, a.get(k), b.get(k))
sys.exit(1 if bad or not a else 0)
EOF
}

# keys_in FILE: the keys of the records in a JSON Lines file, sorted, one a line.
keys_in() {
    python3 -c '
import json, sys
print("\n".join(sorted(json.dumps(json.loads(l)["key"]) for l in open(sys.argv[1]))))' "$1"
}

@test "export, delete all, import, export again: every value type survives" {
    cat > "$BATS_TEST_TMPDIR/in.jsonl" <<'EOF'
{"set":"rt","key":"strings","bins":{"a":"plain","u":"h\u00e9llo \u4e16\u754c \ud83d\ude00","e":"","q":"quote \" and \\ and \n"}}
{"set":"rt","key":"ints","bins":{"z":0,"n":-42,"max":9223372036854775807,"min":-9223372036854775808}}
{"set":"rt","key":"floats","bins":{"one":1.0,"neg":-0.5,"tenth":0.1,"big":1e300,"nan":{"$float":"NaN"},"inf":{"$float":"Infinity"},"ninf":{"$float":"-Infinity"}}}
{"set":"rt","key":"bools","bins":{"t":true,"f":false}}
{"set":"rt","key":"lists","bins":{"l":[1,null,"x",[2.5,{"k":null}],[]],"e":[]}}
{"set":"rt","key":"bytes","bins":{"y":{"$bytes":"AAEC/w=="},"e":{"$bytes":""}}}
{"set":"rt","key":"maps","bins":{"m":{"a":{"b":{"c":[1,2,{"d":"e"}]}},"x":1},"e":{},"dollar":{"$map":[["$price",5]]},"two":{"$price":5,"other":1},"ik":{"$map":[[1,"a"],[-2,"b"]]}}}
{"set":"rt","key":42,"bins":{"v":"an int key"}}
{"set":"rt","key":-9223372036854775808,"bins":{"v":"the smallest int key"}}
{"set":"rt","key":{"$bytes":"AQID"},"bins":{"v":"a bytes key"}}
{"key":"noset","bins":{"v":"no set"}}
{"set":"rt","key":"ttl","ttl":1000,"bins":{"v":"expires"}}
EOF
    run -0 --separate-stderr kvquery import test < "$BATS_TEST_TMPDIR/in.jsonl"
    assert_stderr --regexp '^kvquery: import: 12 records imported, 0 failed, in [0-9.]+ s \([0-9]+ records/s\)$'
    kvquery --no-send-key put test rt keyless v=only-a-digest
    kvquery export test > "$BATS_TEST_TMPDIR/e1.jsonl"
    [ "$(wc -l < "$BATS_TEST_TMPDIR/e1.jsonl")" -eq 13 ]
    grep -q '"digest":"[0-9a-f]\{40\}"' "$BATS_TEST_TMPDIR/e1.jsonl"

    # delete all: a new node starts empty (keys like {"$bytes":...} and a
    # stored digest cannot be deleted from the command line)
    stop_node
    start_node
    run -0 kvquery scan test
    assert_output ''

    run -0 --separate-stderr kvquery import test < "$BATS_TEST_TMPDIR/e1.jsonl"
    assert_stderr --partial 'kvquery: import: 13 records imported, 0 failed'
    kvquery export test > "$BATS_TEST_TMPDIR/e2.jsonl"
    run -0 same_records "$BATS_TEST_TMPDIR/e1.jsonl" "$BATS_TEST_TMPDIR/e2.jsonl"
    # and the values are the ones put in, not just stable
    run -0 kvquery get test rt floats
    assert_output '{"ns":"test","set":"rt","key":"floats","gen":1,"ttl":-1,"bins":{"one":1.0,"neg":-0.5,"tenth":0.1,"big":1e+300,"nan":{"$float":"NaN"},"inf":{"$float":"Infinity"},"ninf":{"$float":"-Infinity"}}}'
    run -0 kvquery get test rt maps
    assert_output '{"ns":"test","set":"rt","key":"maps","gen":1,"ttl":-1,"bins":{"m":{"a":{"b":{"c":[1,2,{"d":"e"}]}},"x":1},"e":{},"dollar":{"$map":[["$price",5]]},"two":{"$price":5,"other":1},"ik":{"$map":[[1,"a"],[-2,"b"]]}}}'
    run -0 kvquery get test rt strings
    assert_output '{"ns":"test","set":"rt","key":"strings","gen":1,"ttl":-1,"bins":{"a":"plain","u":"héllo 世界 😀","e":"","q":"quote \" and \\ and \n"}}'
    run -0 kvquery --int-key get test rt -- -9223372036854775808
    assert_output --partial '"bins":{"v":"the smallest int key"}'
    run -0 kvquery get test rt ttl
    assert_output --regexp '"ttl":(99[0-9]|1000),'
}

@test "a string key that is not UTF-8 survives export and import" {
    kvquery put test u $'\xff\xfe' v=1
    kvquery export test u > "$BATS_TEST_TMPDIR/e1.jsonl"
    stop_node
    start_node
    run -0 --separate-stderr kvquery import test < "$BATS_TEST_TMPDIR/e1.jsonl"
    run -0 kvquery get test u $'\xff\xfe' v
    assert_output --partial '"bins":{"v":"1"}'
}

@test "export NS SET exports only that set; the summary goes to stderr" {
    kvquery put test a k1 v=1
    kvquery put test a k2 v=2
    kvquery put test b k1 v=3
    run -0 --separate-stderr kvquery export test a
    assert_equal "${#lines[@]}" 2
    assert_line '{"ns":"test","set":"a","key":"k1","gen":1,"ttl":-1,"bins":{"v":"1"}}'
    assert_line '{"ns":"test","set":"a","key":"k2","gen":1,"ttl":-1,"bins":{"v":"2"}}'
    assert_stderr --regexp '^kvquery: export: 2 records in [0-9.]+ s$'
    run -0 --separate-stderr kvquery export test
    assert_equal "${#lines[@]}" 3
    assert_stderr --regexp '^kvquery: export: 3 records in [0-9.]+ s$'
}

@test "export of an empty namespace prints nothing and reports 0 records" {
    run -0 --separate-stderr kvquery export test
    assert_output ''
    assert_stderr --regexp '^kvquery: export: 0 records in [0-9.]+ s$'
}

@test "export writes JSON Lines only: --format table or raw is an error, exit 2" {
    kvquery put test a k v=1
    run -2 --separate-stderr kvquery --format table export test
    assert_output ''
    assert_stderr 'kvquery: export writes JSON Lines only; drop --format'
    run -2 kvquery --format raw export test a
}

@test "export of an unknown namespace: no such namespace, exit 2" {
    run -2 --separate-stderr kvquery export nope
    assert_stderr --partial 'kvquery: export nope: no such namespace'
}

@test "import with malformed lines: each names its line, the good lines all go in, exit 2" {
    local big
    big=$(head -c 1100000 /dev/zero | tr '\0' x)
    {
        echo '{"set":"im","key":"g1","bins":{"v":1}}'
        echo '{"set":"im","key":"g2","bins":{"v":2}}'
        echo '{not json'
        echo '{"set":"im","bins":{"v":3}}'
        echo '{"set":"im","key":"g3","bins":[1]}'
        echo '{"set":"im","key":"g4","bins":{"y":{"$bytes":"***"}}}'
        echo '{"set":"im","key":"g5","bins":{"abcdefghijklmnop":1}}'
        echo "{\"set\":\"im\",\"key\":\"g6\",\"bins\":{\"big\":\"$big\"}}"
        echo ''
        echo '{"set":"im","key":"g7","bins":{"v":7}}'
        echo '{"set":"im","key":"g8","bins":{}}'
        echo '{"set":"im","key":1.5,"bins":{"v":1}}'
        echo '{"set":"im","key":"g9","ttl":-5,"bins":{"v":1}}'
        echo '{"set":"im","key":"g10","bins":{"v":10}}'
    } > "$BATS_TEST_TMPDIR/bad.jsonl"
    run -2 --separate-stderr kvquery import test < "$BATS_TEST_TMPDIR/bad.jsonl"
    assert_output ''
    local expected=(
        "kvquery: import: line 3: bad JSON at column"
        'kvquery: import: line 4: a record needs "key" (or "digest")'
        'kvquery: import: line 5: "bins" must be a non-empty object'
        "kvquery: import: line 6: bin 'y': \$bytes needs a base64 string"
        "kvquery: import: line 7: bin name 'abcdefghijklmnop' must be 1 to 15 bytes"
        "kvquery: import: line 8: record too big: record is"
        'kvquery: import: line 11: "bins" must be a non-empty object'
        'kvquery: import: line 12: "key" must be a string, an integer, {"$bytes":BASE64} or {"$string":BASE64}'
        'kvquery: import: line 13: "ttl" must be an integer from -1 to 315360000'
    )
    local e
    for e in "${expected[@]}"; do
        assert_stderr --partial "$e"
    done
    # the summary is the last line
    assert_regex "${stderr##*$'\n'}" '^kvquery: import: 4 records imported, 9 failed, in [0-9.]+ s \([0-9]+ records/s\)$'
    run -0 bash -c 'kvquery export test im 2>/dev/null | sort'
    assert_output "$(printf '%s\n' \
        '{"ns":"test","set":"im","key":"g1","gen":1,"ttl":-1,"bins":{"v":1}}' \
        '{"ns":"test","set":"im","key":"g10","gen":1,"ttl":-1,"bins":{"v":10}}' \
        '{"ns":"test","set":"im","key":"g2","gen":1,"ttl":-1,"bins":{"v":2}}' \
        '{"ns":"test","set":"im","key":"g7","gen":1,"ttl":-1,"bins":{"v":7}}')"
}

@test "import --strict stops at the first bad line: later good lines are not imported" {
    printf '%s\n' '{"set":"st","key":"a","bins":{"v":1}}' '{bad' '{"set":"st","key":"b","bins":{"v":2}}' \
        > "$BATS_TEST_TMPDIR/in.jsonl"
    run -2 --separate-stderr kvquery import test --strict < "$BATS_TEST_TMPDIR/in.jsonl"
    assert_stderr --partial 'kvquery: import: line 2: bad JSON'
    assert_stderr --partial 'kvquery: import: 1 records imported, 1 failed'
    run -0 kvquery scan test st
    assert_output '{"ns":"test","set":"st","key":"a","gen":1,"ttl":-1,"bins":{"v":1}}'
}

@test "import --strict stops at a line the node refuses: no later line is imported" {
    # kvquery(1): --strict sends one line at a time unless --in-flight is
    # given, so nothing after the first failing line reaches the node.
    python3 -c '
print("{\"set\":\"st\",\"key\":\"first\",\"bins\":{\"v\":0}}")
print("{\"set\":\"st\",\"key\":\"big\",\"bins\":{\"v\":\"%s\"}}" % ("x" * 1100000))
for i in range(500):
    print("{\"set\":\"st\",\"key\":\"after%d\",\"bins\":{\"v\":1}}" % i)
' > "$BATS_TEST_TMPDIR/in.jsonl"
    run -2 --separate-stderr kvquery import test --strict < "$BATS_TEST_TMPDIR/in.jsonl"
    assert_stderr --partial 'kvquery: import: line 2: record too big'
    assert_stderr --partial 'kvquery: import: 1 records imported, 1 failed'
    run -0 kvquery scan test st
    assert_output '{"ns":"test","set":"st","key":"first","gen":1,"ttl":-1,"bins":{"v":0}}'
}

@test "import --strict with --in-flight N: at most N-1 lines sent after the failing one are imported" {
    python3 -c '
print("{\"set\":\"st\",\"key\":\"big\",\"bins\":{\"v\":\"%s\"}}" % ("x" * 1100000))
for i in range(500):
    print("{\"set\":\"st\",\"key\":\"after%d\",\"bins\":{\"v\":1}}" % i)
' > "$BATS_TEST_TMPDIR/in.jsonl"
    run -2 --separate-stderr kvquery import test --strict --in-flight 16 < "$BATS_TEST_TMPDIR/in.jsonl"
    assert_stderr --partial 'kvquery: import: line 1: record too big'
    local summary=${stderr##*$'\n'} imported
    imported=$(echo "$summary" | sed -n 's/^kvquery: import: \([0-9]*\) records imported, 1 failed.*/\1/p')
    [ -n "$imported" ] || fail "unexpected summary: $summary"
    [ "$imported" -le 15 ] || fail "--strict imported $imported lines after the failure"
    run -0 bash -c 'kvquery scan test st | wc -l'
    assert_output "$imported"
    run -1 kvquery get test st after499
}

@test "import --strict --in-flight 1 stops at a line the node refuses" {
    python3 -c '
print("{\"set\":\"st\",\"key\":\"ok\",\"bins\":{\"v\":1}}")
print("{\"set\":\"st\",\"key\":\"big\",\"bins\":{\"v\":\"%s\"}}" % ("x" * 1100000))
print("{\"set\":\"st\",\"key\":\"after\",\"bins\":{\"v\":1}}")
' > "$BATS_TEST_TMPDIR/in.jsonl"
    run -2 --separate-stderr kvquery import test --strict --in-flight 1 < "$BATS_TEST_TMPDIR/in.jsonl"
    assert_stderr --partial 'kvquery: import: line 2: record too big'
    assert_stderr --partial 'kvquery: import: 1 records imported, 1 failed'
    run -0 kvquery scan test st
    assert_output '{"ns":"test","set":"st","key":"ok","gen":1,"ttl":-1,"bins":{"v":1}}'
}

@test "import --in-flight 1 imports every line" {
    seq 1 200 | sed 's/.*/{"set":"f","key":"k&","bins":{"i":&}}/' > "$BATS_TEST_TMPDIR/in.jsonl"
    run -0 --separate-stderr kvquery import test --in-flight 1 < "$BATS_TEST_TMPDIR/in.jsonl"
    assert_stderr --partial 'kvquery: import: 200 records imported, 0 failed'
    run -0 bash -c 'kvquery scan test f | wc -l'
    assert_output 200
    run -0 kvquery get test f k137 i
    assert_output --partial '"bins":{"i":137}'
}

@test "import --in-flight out of range is a usage error, exit 2" {
    run -2 --separate-stderr kvquery import test --in-flight 0 < /dev/null
    assert_stderr --partial "kvquery: --in-flight '0': expected 1 to 10000"
    run -2 kvquery import test --in-flight 10001 < /dev/null
    run -2 kvquery import test --in-flight x < /dev/null
}

@test "import replaces whole records by default; --exists changes that" {
    kvquery put test ie a old=1 keep=1
    echo '{"set":"ie","key":"a","bins":{"new":2}}' > "$BATS_TEST_TMPDIR/in.jsonl"
    run -0 kvquery import test < "$BATS_TEST_TMPDIR/in.jsonl"
    run -0 kvquery get test ie a
    assert_output --partial '"bins":{"new":2}}'
    echo '{"set":"ie","key":"a","bins":{"more":3}}' > "$BATS_TEST_TMPDIR/in.jsonl"
    run -0 kvquery import test --exists update < "$BATS_TEST_TMPDIR/in.jsonl"
    run -0 kvquery get test ie a
    assert_output --partial '"bins":{"new":2,"more":3}}'
    # only negative answers: exit 1 (kvquery(1) EXIT STATUS)
    run -1 --separate-stderr kvquery import test --exists create-only < "$BATS_TEST_TMPDIR/in.jsonl"
    assert_stderr --partial 'kvquery: import: line 1: record exists'
    assert_stderr --partial '0 records imported, 1 failed'
    echo '{"set":"ie","key":"nobody","bins":{"v":1}}' > "$BATS_TEST_TMPDIR/in2.jsonl"
    run -1 --separate-stderr kvquery import test --exists update-only < "$BATS_TEST_TMPDIR/in2.jsonl"
    assert_stderr --partial 'kvquery: import: line 1: not found'
    # a negative answer and an error: exit 2
    cat "$BATS_TEST_TMPDIR/in.jsonl" > "$BATS_TEST_TMPDIR/in3.jsonl"
    echo '{bad' >> "$BATS_TEST_TMPDIR/in3.jsonl"
    run -2 --separate-stderr kvquery import test --exists create-only < "$BATS_TEST_TMPDIR/in3.jsonl"
    assert_stderr --partial '0 records imported, 2 failed'
}

@test "import keeps each line's ttl; --ttl overrides it" {
    printf '%s\n' '{"set":"t","key":"a","ttl":500,"bins":{"v":1}}' '{"set":"t","key":"b","bins":{"v":1}}' \
        '{"set":"t","key":"c","ttl":0,"bins":{"v":1}}' '{"set":"t","key":"d","ttl":-1,"bins":{"v":1}}' \
        > "$BATS_TEST_TMPDIR/in.jsonl"
    kvquery import test < "$BATS_TEST_TMPDIR/in.jsonl"
    run -0 kvquery exists test t a
    assert_output --regexp '"ttl":(49[5-9]|500),'
    # no ttl, and ttl 0, mean the namespace default: here, never expire
    run -0 kvquery exists test t b
    assert_output --partial '"ttl":-1,'
    run -0 kvquery exists test t c
    assert_output --partial '"ttl":-1,'
    run -0 kvquery exists test t d
    assert_output --partial '"ttl":-1,'
    kvquery import test --ttl 100 < "$BATS_TEST_TMPDIR/in.jsonl"
    run -0 kvquery exists test t a
    assert_output --regexp '"ttl":(9[5-9]|100),'
    run -0 kvquery exists test t b
    assert_output --regexp '"ttl":(9[5-9]|100),'
}

@test "import into an unknown namespace: every line fails, exit 2" {
    printf '%s\n' '{"set":"s","key":"a","bins":{"v":1}}' '{"set":"s","key":"b","bins":{"v":1}}' \
        > "$BATS_TEST_TMPDIR/in.jsonl"
    run -2 --separate-stderr kvquery import nope < "$BATS_TEST_TMPDIR/in.jsonl"
    assert_stderr --partial "kvquery: import: line 1: no such namespace: no namespace 'nope' on this node"
    assert_stderr --partial "kvquery: import: line 2: no such namespace"
    assert_stderr --partial '0 records imported, 2 failed'
}

@test "import of an empty input: 0 records, exit 0" {
    run -0 --separate-stderr kvquery import test < /dev/null
    assert_output ''
    assert_stderr --regexp '^kvquery: import: 0 records imported, 0 failed, in [0-9.]+ s \([0-9]+ records/s\)$'
}

@test "import of a record larger than a message may be: record too big, the rest still imported" {
    python3 -c '
print("{\"set\":\"h\",\"key\":\"huge\",\"bins\":{\"v\":\"%s\"}}" % ("x" * 10000000))
print("{\"set\":\"h\",\"key\":\"after\",\"bins\":{\"v\":1}}")
' > "$BATS_TEST_TMPDIR/in.jsonl"
    run -2 --separate-stderr kvquery import test < "$BATS_TEST_TMPDIR/in.jsonl"
    assert_stderr --partial 'kvquery: import: line 1: record too big'
    run -0 kvquery get test h after
    assert_output --partial '"bins":{"v":1}'
}

@test "a record nested as deep as put allows does not stop the export of the namespace" {
    kvquery put test a k1 v=1
    kvquery put test a k2 v=2
    # 24 levels, the most a bin value may have: accepted by put and by get
    local deep
    deep=$(printf '%*s' 24 '' | tr ' ' '[')$(printf '%*s' 24 '' | tr ' ' ']')
    run -0 kvquery put test b deep "j:json=$deep"
    run -0 kvquery get test b deep
    run -0 --separate-stderr kvquery export test
    assert_equal "${#lines[@]}" 3
}

@test "export to a full disk fails with a write error, exit 2" {
    seq 1 5000 | sed 's/.*/{"set":"f","key":"k&","bins":{"i":&}}/' | kvquery import test
    run -2 --separate-stderr bash -c 'kvquery export test > /dev/full'
    assert_stderr --regexp 'cannot write standard output: No space left on device'
}

@test "import checks keys, digests and sets line by line" {
    local k1025 s64
    k1025=$(printf '%*s' 1025 '' | tr ' ' k)
    s64=$(printf '%*s' 64 '' | tr ' ' s)
    {
        echo "{\"set\":\"l\",\"key\":\"$k1025\",\"bins\":{\"v\":1}}"
        echo "{\"set\":\"$s64\",\"key\":\"a\",\"bins\":{\"v\":1}}"
        echo '{"set":5,"key":"a","bins":{"v":1}}'
        echo '{"set":"l","digest":"abc","bins":{"v":1}}'
        echo '{"set":"l","key":{"$bytes":"***"},"bins":{"v":1}}'
        echo "{\"set\":\"l\",\"key\":\"${k1025%k}\",\"bins\":{\"v\":\"longest key\"}}"
        echo '{"set":"l","digest":"00112233445566778899aabbccddeeff00112233","bins":{"v":"by digest"}}'
    } > "$BATS_TEST_TMPDIR/in.jsonl"
    run -2 --separate-stderr kvquery import test < "$BATS_TEST_TMPDIR/in.jsonl"
    assert_stderr --partial 'kvquery: import: line 1: key is longer than 1024 bytes'
    assert_stderr --partial 'kvquery: import: line 2: set name is longer than 63 bytes'
    assert_stderr --partial 'kvquery: import: line 3: "set" must be a string'
    assert_stderr --partial 'kvquery: import: line 4: "digest" must be 40 hex digits'
    assert_stderr --partial 'kvquery: import: line 5: "key": $bytes needs a base64 string'
    assert_stderr --partial 'kvquery: import: 2 records imported, 5 failed'
    run -0 kvquery get test l "${k1025%k}" v
    assert_output --partial '"bins":{"v":"longest key"}'
    run -0 kvquery scan test l
    assert_line '{"ns":"test","set":"l","digest":"00112233445566778899aabbccddeeff00112233","gen":1,"ttl":-1,"bins":{"v":"by digest"}}'
}

@test "import stores each line's key; with --no-send-key only the digest" {
    printf '%s\n' '{"set":"k","key":"with","bins":{"v":1}}' > "$BATS_TEST_TMPDIR/a.jsonl"
    printf '%s\n' '{"set":"k","key":"without","bins":{"v":2}}' > "$BATS_TEST_TMPDIR/b.jsonl"
    kvquery import test < "$BATS_TEST_TMPDIR/a.jsonl"
    kvquery --no-send-key import test < "$BATS_TEST_TMPDIR/b.jsonl"
    run -0 bash -c 'kvquery scan test k | sort'
    assert_line --index 0 --regexp '^\{"ns":"test","set":"k","digest":"[0-9a-f]{40}","gen":1,"ttl":-1,"bins":\{"v":2\}\}$'
    assert_line --index 1 '{"ns":"test","set":"k","key":"with","gen":1,"ttl":-1,"bins":{"v":1}}'
    # the record is still found by its key
    run -0 kvquery get test k without v
    assert_output '{"ns":"test","set":"k","key":"without","gen":1,"ttl":-1,"bins":{"v":2}}'
}

@test "a record whose only bin starts with '\$' survives export and import" {
    run -0 kvquery put test dollar k1 '$price:int=5'
    kvquery export test dollar > "$BATS_TEST_TMPDIR/before"
    assert_equal "$(cat "$BATS_TEST_TMPDIR/before")" '{"ns":"test","set":"dollar","key":"k1","gen":1,"ttl":-1,"bins":{"$map":[["$price",5]]}}'
    run -0 kvquery delete test dollar k1
    run -0 kvquery import test < "$BATS_TEST_TMPDIR/before"
    run -0 kvquery get test dollar k1 '$price'
    assert_output '{"ns":"test","set":"dollar","key":"k1","gen":1,"ttl":-1,"bins":{"$map":[["$price",5]]}}'
}

@test "a record whose only bin starts with '\$' and nests 24 levels survives export and import" {
    local deep
    deep=$(printf '%*s' 24 '' | tr ' ' '[')$(printf '%*s' 24 '' | tr ' ' ']')
    run -0 kvquery put test dollar k2 "\$d:json=$deep"
    kvquery export test dollar > "$BATS_TEST_TMPDIR/before"
    run -0 kvquery delete test dollar k2
    run -0 kvquery import test < "$BATS_TEST_TMPDIR/before"
    kvquery export test dollar > "$BATS_TEST_TMPDIR/after"
    diff "$BATS_TEST_TMPDIR/before" "$BATS_TEST_TMPDIR/after"
}
