#!/usr/bin/env bats
# operate: several ops on one record, atomically, with one generation bump;
# what reads return; type errors that leave the record unchanged.

load helpers

setup() {
    start_node
    kvquery put test o r name=Al n:int=5 f:float=1.5 d=gone y:bytes=AAE=
}

@test "every op in one call: one generation bump, reads see the state at their point" {
    run -0 --separate-stderr kvquery operate test o r read:n add:n=3 add:f=0.25 append:name=ice \
        prepend:name=Dr. delete:d write:w:int=7 append:y:bytes=Ag== touch read:name read:f read:d read:w read:y
    assert_output '{"ns":"test","set":"o","key":"r","gen":2,"ttl":-1,"bins":{"n":5,"name":"Dr.Alice","f":1.75,"d":null,"w":7,"y":{"$bytes":"AAEC"}}}'
    refute_stderr
    run -0 kvquery get test o r
    assert_output '{"ns":"test","set":"o","key":"r","gen":2,"ttl":-1,"bins":{"name":"Dr.Alice","n":8,"f":1.75,"y":{"$bytes":"AAEC"},"w":7}}'
}

@test "a later read of the same bin wins" {
    run -0 kvquery operate test o r read:n add:n=10 read:n
    assert_output '{"ns":"test","set":"o","key":"r","gen":2,"ttl":-1,"bins":{"n":15}}'
}

@test "reads only: no generation bump" {
    run -0 kvquery operate test o r read:name read:n
    assert_output '{"ns":"test","set":"o","key":"r","gen":1,"ttl":-1,"bins":{"name":"Al","n":5}}'
    run -0 kvquery exists test o r
    assert_output --partial '"gen":1'
}

@test "add: int and float, negative, to a missing bin (starts at zero)" {
    run -0 kvquery operate test o r add:n=-7 add:f=-2.0 add:new=4 add:newf=0.5 read:n read:f read:new read:newf
    assert_output '{"ns":"test","set":"o","key":"r","gen":2,"ttl":-1,"bins":{"n":-2,"f":-0.5,"new":4,"newf":0.5}}'
}

@test "add:BIN:float=N forces a float; add:BIN:int=N an int" {
    run -0 kvquery operate test o r add:f:float=1 add:n:int=1 read:f read:n
    assert_output '{"ns":"test","set":"o","key":"r","gen":2,"ttl":-1,"bins":{"f":2.5,"n":6}}'
}

@test "write: typed values and nil (deletes the bin)" {
    run -0 kvquery operate test o r write:b:bool=true 'write:j:json=[1,2]' write:name:nil= read:b read:j read:name
    assert_output '{"ns":"test","set":"o","key":"r","gen":2,"ttl":-1,"bins":{"b":true,"j":[1,2],"name":null}}'
    run -0 kvquery get test o r name
    assert_output --partial '"bins":{}'
}

@test "writes only: the bins of the reply are empty" {
    run -0 kvquery operate test o r write:a=1
    assert_output '{"ns":"test","set":"o","key":"r","gen":2,"ttl":-1,"bins":{}}'
}

@test "touch alone bumps the generation and keeps the bins" {
    run -0 kvquery operate test o r touch
    assert_output '{"ns":"test","set":"o","key":"r","gen":2,"ttl":-1,"bins":{}}'
    run -0 kvquery get test o r name
    assert_output '{"ns":"test","set":"o","key":"r","gen":2,"ttl":-1,"bins":{"name":"Al"}}'
}

@test "add to a string bin: incompatible bin type, exit 2, record unchanged" {
    run -0 kvquery get test o r
    local before=$output
    run -2 --separate-stderr kvquery operate test o r add:n=1 add:name=1
    assert_output ''
    assert_stderr "kvquery: operate test/o/r: incompatible bin type: add: bin 'name' is not an integer"
    run -0 kvquery get test o r
    assert_output "$before"
}

@test "add of a float to an int bin, or an int to a float bin: incompatible, exit 2" {
    run -2 --separate-stderr kvquery operate test o r add:n=0.5
    assert_stderr "kvquery: operate test/o/r: incompatible bin type: add: bin 'n' is not a float"
    run -2 --separate-stderr kvquery operate test o r add:f=1
    assert_stderr "kvquery: operate test/o/r: incompatible bin type: add: bin 'f' is not an integer"
    run -0 kvquery exists test o r
    assert_output --partial '"gen":1'
}

@test "append to an int bin, or bytes to a string bin: incompatible, exit 2" {
    run -2 --separate-stderr kvquery operate test o r append:n=x
    assert_stderr "kvquery: operate test/o/r: incompatible bin type: append: bin 'n' is not a string"
    run -2 --separate-stderr kvquery operate test o r prepend:name:bytes=AAE=
    assert_stderr "kvquery: operate test/o/r: incompatible bin type: prepend: bin 'name' is not bytes"
    run -2 --separate-stderr kvquery operate test o r append:y=str
    assert_stderr "kvquery: operate test/o/r: incompatible bin type: append: bin 'y' is not a string"
}

@test "add overflowing int64 is a bad request, exit 2, record unchanged" {
    kvquery put test o r n:int=9223372036854775807
    run -2 --separate-stderr kvquery operate test o r add:n=1
    assert_stderr "kvquery: operate test/o/r: bad request: add: integer overflow in bin 'n'"
    run -0 kvquery get test o r n
    assert_output '{"ns":"test","set":"o","key":"r","gen":2,"ttl":-1,"bins":{"n":9223372036854775807}}'
}

@test "operate on a missing record with only reads: not found, exit 1" {
    run -1 --separate-stderr kvquery operate test o missing read:a read:b
    assert_output ''
    assert_stderr 'kvquery: operate test/o/missing: not found'
}

@test "operate on a missing record with only touch, delete or a nil write: not found, exit 1" {
    run -1 kvquery operate test o missing touch
    run -1 kvquery operate test o missing delete:a
    run -1 kvquery operate test o missing write:a:nil=
    run -1 kvquery exists test o missing
}

@test "operate creates a missing record when an op writes a value" {
    run -0 kvquery operate test o new add:c=1 append:s=ab prepend:s=z read:c read:s
    assert_output '{"ns":"test","set":"o","key":"new","gen":1,"ttl":-1,"bins":{"c":1,"s":"zab"}}'
    run -0 kvquery get test o new
    assert_output '{"ns":"test","set":"o","key":"new","gen":1,"ttl":-1,"bins":{"c":1,"s":"zab"}}'
}

@test "operate that deletes every bin deletes the record and says so" {
    kvquery put test o two a=1 b=2
    run -0 kvquery operate test o two delete:a delete:b
    assert_output --partial '"deleted":true'
    run -1 kvquery exists test o two
}

@test "operate honours --gen, --exists and --ttl" {
    run -1 --separate-stderr kvquery operate test o r --gen 9 write:a=1
    assert_stderr 'kvquery: operate test/o/r: generation mismatch: generation is 1, expected 9'
    run -1 --separate-stderr kvquery operate test o r --exists create-only write:a=1
    assert_stderr 'kvquery: operate test/o/r: record exists'
    run -1 --separate-stderr kvquery operate test o other --exists update-only write:a=1
    assert_stderr 'kvquery: operate test/o/other: not found'
    run -0 kvquery operate test o r --gen 1 --ttl 500 write:a=1
    assert_output '{"ns":"test","set":"o","key":"r","gen":2,"ttl":500,"bins":{}}'
}

@test "operate --format raw prints the values read; table prints a row" {
    run -0 kvquery --format raw operate test o r read:name read:n
    assert_output "$(printf '%s\n' Al 5)"
    run -0 kvquery --format table operate test o r read:n
    assert_line --index 0 --regexp '^SET +KEY +GEN +TTL +BINS$'
    assert_line --index 1 --regexp '^o +r +1 +-1  \{"n":5\}$'
}

@test "malformed ops are refused by the client, exit 2, with the reason" {
    local cases=(
        "read|op 'read': expected read:BIN"
        "read:|op 'read:': expected read:BIN"
        "write:a|op 'write:a': 'a' is not BIN=VALUE"
        "add:n=x|op 'add:n=x': 'x' is not a 64-bit integer"
        "add:n:str=1|op 'add:n:str=1': add takes an int or a float"
        "append:s:int=1|op 'append:s:int=1': append takes a string or bytes"
        "touch:a|op 'touch:a': touch takes no bin"
        "delete:a=1|op 'delete:a=1': bin name must be 1 to 15 bytes, with no value"
        "read:abcdefghijklmnop|op 'read:abcdefghijklmnop': bin name must be 1 to 15 bytes, with no value"
        "write:abcdefghijklmnop=1|op 'write:abcdefghijklmnop=1': bin name 'abcdefghijklmnop' must be 1 to 15 bytes"
        "jump:a|unknown op 'jump:a' (read, write, add, append, prepend, delete, touch)"
    )
    local c
    for c in "${cases[@]}"; do
        run -2 --separate-stderr kvquery operate test o r write:ok=1 "${c%%|*}"
        assert_output ''
        assert_stderr "kvquery: operate test/o/r: ${c#*|}"
    done
    run -0 kvquery exists test o r
    assert_output --partial '"gen":1'
}

@test "operate needs at least one op" {
    run -2 --separate-stderr kvquery operate test o r
    assert_stderr --partial 'kvquery: operate: wrong number of arguments'
}

@test "operate --no-send-key writes the record without its key" {
    run -0 kvquery --no-send-key operate test o nokey write:v=1
    run -0 kvquery scan test o
    assert_line --regexp '^\{"ns":"test","set":"o","digest":"[0-9a-f]{40}","gen":1,"ttl":-1,"bins":\{"v":"1"\}\}$'
    run -0 kvquery operate test o r write:v=1
    run -0 kvquery scan test o
    assert_line --regexp '^\{"ns":"test","set":"o","key":"r",'
}
