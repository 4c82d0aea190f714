#!/usr/bin/env bats
# put, get, exists, delete and touch: keys, named bins, the JSON fields of
# the output, the three output formats and their exit statuses.

load helpers

setup() {
    start_node
}

@test "put prints the record's metadata; get prints ns, set, key, gen, ttl and bins" {
    run -0 --separate-stderr kvquery put test users alice name=Alice city=Oslo
    assert_output '{"ns":"test","set":"users","key":"alice","gen":1,"ttl":-1}'
    refute_stderr
    run -0 --separate-stderr kvquery get test users alice
    assert_output '{"ns":"test","set":"users","key":"alice","gen":1,"ttl":-1,"bins":{"name":"Alice","city":"Oslo"}}'
    refute_stderr
}

@test "a second put bumps the generation and merges bins" {
    kvquery put test users alice name=Alice
    run -0 kvquery put test users alice age=30
    assert_output '{"ns":"test","set":"users","key":"alice","gen":2,"ttl":-1}'
    run -0 kvquery get test users alice
    assert_output '{"ns":"test","set":"users","key":"alice","gen":2,"ttl":-1,"bins":{"name":"Alice","age":"30"}}'
}

@test "get of named bins returns only those; an unknown bin name is left out" {
    kvquery put test users alice name=Alice city=Oslo age:int=30
    run -0 kvquery get test users alice age name
    assert_output '{"ns":"test","set":"users","key":"alice","gen":1,"ttl":-1,"bins":{"age":30,"name":"Alice"}}'
    run -0 kvquery get test users alice nosuchbin
    assert_output '{"ns":"test","set":"users","key":"alice","gen":1,"ttl":-1,"bins":{}}'
}

@test "get of a missing record: not found on stderr, nothing on stdout, exit 1" {
    run -1 --separate-stderr kvquery get test users nobody
    assert_output ''
    assert_stderr 'kvquery: get test/users/nobody: not found'
}

@test "sets are separate: the same key in another set is another record" {
    kvquery put test a k v=in-a
    run -1 kvquery get test b k
    run -0 kvquery get test a k v
    assert_output '{"ns":"test","set":"a","key":"k","gen":1,"ttl":-1,"bins":{"v":"in-a"}}'
}

@test "the empty set name and the empty key are valid" {
    run -0 kvquery put test '' '' v=1
    assert_output '{"ns":"test","set":"","key":"","gen":1,"ttl":-1}'
    run -0 kvquery get test '' ''
    assert_output '{"ns":"test","set":"","key":"","gen":1,"ttl":-1,"bins":{"v":"1"}}'
}

@test "exists: found prints gen, ttl and exists:true, exit 0" {
    kvquery put test users alice name=Alice
    run -0 --separate-stderr kvquery exists test users alice
    assert_output '{"ns":"test","set":"users","key":"alice","gen":1,"ttl":-1,"exists":true}'
    refute_stderr
}

@test "exists: missing prints exists:false, exit 1, nothing on stderr" {
    run -1 --separate-stderr kvquery exists test users nobody
    assert_output '{"ns":"test","set":"users","key":"nobody","exists":false}'
    refute_stderr
}

@test "exists --format raw prints true or false" {
    kvquery put test users alice name=Alice
    run -0 kvquery --format raw exists test users alice
    assert_output 'true'
    run -1 kvquery --format raw exists test users nobody
    assert_output 'false'
}

@test "delete removes the record silently; deleting again is not found, exit 1" {
    kvquery put test users alice name=Alice
    run -0 --separate-stderr kvquery delete test users alice
    assert_output ''
    refute_stderr
    run -1 kvquery get test users alice
    run -1 --separate-stderr kvquery delete test users alice
    assert_stderr 'kvquery: delete test/users/alice: not found'
}

@test "touch bumps the generation and keeps the bins; a missing record is not found" {
    kvquery put test users alice name=Alice
    run -0 kvquery touch test users alice
    assert_output '{"ns":"test","set":"users","key":"alice","gen":2,"ttl":-1}'
    run -0 kvquery get test users alice
    assert_output '{"ns":"test","set":"users","key":"alice","gen":2,"ttl":-1,"bins":{"name":"Alice"}}'
    run -1 --separate-stderr kvquery touch test users nobody
    assert_stderr 'kvquery: touch test/users/nobody: not found'
}

@test "--int-key: the key is a number in the output and differs from the string key" {
    run -0 kvquery --int-key put test nums 42 v=int
    assert_output '{"ns":"test","set":"nums","key":42,"gen":1,"ttl":-1}'
    run -0 kvquery --int-key get test nums 42
    assert_output '{"ns":"test","set":"nums","key":42,"gen":1,"ttl":-1,"bins":{"v":"int"}}'
    run -1 kvquery get test nums 42
    kvquery put test nums 42 v=str
    run -0 kvquery --int-key get test nums 42 v
    assert_output '{"ns":"test","set":"nums","key":42,"gen":1,"ttl":-1,"bins":{"v":"int"}}'
    run -0 kvquery get test nums 42 v
    assert_output '{"ns":"test","set":"nums","key":"42","gen":1,"ttl":-1,"bins":{"v":"str"}}'
}

@test "--int-key works for exists, touch and delete, and takes the int64 extremes" {
    kvquery --int-key put test nums 9223372036854775807 v=max
    kvquery --int-key put test nums -- -9223372036854775808 v=min
    run -0 kvquery --int-key exists test nums 9223372036854775807
    assert_output '{"ns":"test","set":"nums","key":9223372036854775807,"gen":1,"ttl":-1,"exists":true}'
    run -0 kvquery --int-key touch test nums -- -9223372036854775808
    assert_output '{"ns":"test","set":"nums","key":-9223372036854775808,"gen":2,"ttl":-1}'
    run -0 kvquery --int-key delete test nums 9223372036854775807
    run -1 kvquery --int-key exists test nums 9223372036854775807
}

@test "--int-key with a key that is not a 64-bit integer: exit 2" {
    run -2 --separate-stderr kvquery --int-key get test nums abc
    assert_output ''
    assert_stderr "kvquery: get test/nums/abc: key 'abc' is not a 64-bit integer (--int-key)"
    run -2 --separate-stderr kvquery --int-key put test nums 9223372036854775808 v=1
    assert_stderr --partial "key '9223372036854775808' is not a 64-bit integer"
    run -2 kvquery --int-key put test nums 4.2 v=1
}

@test "a negative key needs '--' before it; without it, it is an unknown option" {
    run -2 kvquery --int-key put test nums -5 v=1
    run -0 kvquery --int-key put test nums -- -5 v=1
    assert_output '{"ns":"test","set":"nums","key":-5,"gen":1,"ttl":-1}'
    run -0 kvquery --int-key get test nums -- -5
    assert_output '{"ns":"test","set":"nums","key":-5,"gen":1,"ttl":-1,"bins":{"v":"1"}}'
}

@test "a key of 1024 bytes works; 1025 bytes is refused by the client, exit 2" {
    local k1024 k1025
    k1024=$(printf 'k%.0s' {1..1024})
    k1025=${k1024}k
    run -0 kvquery put test s "$k1024" v=1
    run -0 kvquery get test s "$k1024" v
    assert_output "{\"ns\":\"test\",\"set\":\"s\",\"key\":\"$k1024\",\"gen\":1,\"ttl\":-1,\"bins\":{\"v\":\"1\"}}"
    run -2 --separate-stderr kvquery put test s "$k1025" v=1
    assert_stderr --partial ": key is 1025 bytes, limit is 1024"
}

@test "a set name of 63 bytes works; 64 bytes is refused, exit 2" {
    local s63
    s63=$(printf 's%.0s' {1..63})
    run -0 kvquery put test "$s63" k v=1
    assert_output "{\"ns\":\"test\",\"set\":\"$s63\",\"key\":\"k\",\"gen\":1,\"ttl\":-1}"
    run -2 --separate-stderr kvquery put test "${s63}s" k v=1
    assert_stderr "kvquery: put test/${s63}s/k: set name is longer than 63 bytes"
}

@test "unicode keys and values survive unchanged" {
    run -0 kvquery put test s 'ключ 鍵' 'name=héllo 世界 😀'
    assert_output '{"ns":"test","set":"s","key":"ключ 鍵","gen":1,"ttl":-1}'
    run -0 kvquery get test s 'ключ 鍵'
    assert_output '{"ns":"test","set":"s","key":"ключ 鍵","gen":1,"ttl":-1,"bins":{"name":"héllo 世界 😀"}}'
    run -0 kvquery --format raw get test s 'ключ 鍵'
    assert_output 'héllo 世界 😀'
}

@test "a string key that is not UTF-8 is shown the same way by put and get" {
    # The record's key is a string; put and get must agree on how it looks.
    local key=$'\xff\xfe'
    run -0 kvquery put test s "$key" v=1
    local put_key
    put_key=$(echo "$output" | json_field 'r["key"]')
    run -0 kvquery get test s "$key"
    local get_key
    get_key=$(echo "$output" | json_field 'r["key"]')
    assert_equal "$put_key" "$get_key"
}

@test "--no-send-key: the record is stored without its key; get shows the key asked for" {
    run -0 kvquery --no-send-key put test s secret v=1
    assert_output '{"ns":"test","set":"s","key":"secret","gen":1,"ttl":-1}'
    run -0 kvquery get test s secret
    assert_output '{"ns":"test","set":"s","key":"secret","gen":1,"ttl":-1,"bins":{"v":"1"}}'
    # a scan has only the digest to show
    run -0 kvquery scan test s
    assert_output --regexp '^\{"ns":"test","set":"s","digest":"[0-9a-f]{40}","gen":1,"ttl":-1,"bins":\{"v":"1"\}\}$'
}

@test "--format table prints a header and one row per record" {
    kvquery put test users alice name=Alice age:int=30
    run -0 kvquery --format table get test users alice
    assert_line --index 0 --regexp '^SET +KEY +GEN +TTL +BINS$'
    assert_line --index 1 --regexp '^users +alice +1 +-1  \{"name":"Alice","age":30\}$'
    assert_equal "${#lines[@]}" 2
}

@test "--format table prints objects (put, exists) as name/value lines" {
    run -0 kvquery --format table put test users alice name=Alice
    assert_line --index 0 --regexp '^ns +test$'
    assert_line --index 1 --regexp '^set +users$'
    assert_line --index 2 --regexp '^key +alice$'
    assert_line --index 3 --regexp '^gen +1$'
    assert_line --index 4 --regexp '^ttl +-1$'
    run -0 kvquery --format table exists test users alice
    assert_line --regexp '^exists +true$'
}

@test "--format raw prints bin values one a line, strings unquoted" {
    kvquery put test s k s=hello 'sp=two words' i:int=-5 f:float=1.5 b:bool=true \
        'j:json={"a":[1,null]}' y:bytes=AAEC
    run -0 kvquery --format raw get test s k
    assert_output "$(printf '%s\n' hello 'two words' -5 1.5 true '{"a":[1,null]}' '{"$bytes":"AAEC"}')"
    run -0 kvquery --format raw get test s k sp i
    assert_output "$(printf '%s\n' 'two words' -5)"
}

@test "--format raw: put, touch and delete print nothing" {
    run -0 --separate-stderr kvquery --format raw put test s k v=1
    assert_output ''
    run -0 --separate-stderr kvquery --format raw touch test s k
    assert_output ''
    run -0 kvquery get test s k
    assert_output --partial '"gen":2'
}

@test "--format jsonl is the default" {
    kvquery put test s k v=1
    run -0 kvquery get test s k
    local plain=$output
    run -0 kvquery --format jsonl get test s k
    assert_output "$plain"
}

@test "a bad --format is a usage error, exit 2, before any request" {
    run -2 --separate-stderr kvquery --format yaml put test s k v=1
    assert_output ''
    assert_stderr --partial "kvquery: --format 'yaml': expected jsonl, table or raw"
    assert_stderr --partial 'usage: kvquery'
    run -1 kvquery get test s k
}

@test "options may come after the command and its arguments" {
    run -0 kvquery put test s k v=1 --format raw --ttl -1
    assert_output ''
    run -0 kvquery get test s k --format raw
    assert_output '1'
}
