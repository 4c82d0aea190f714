#!/usr/bin/env bats
# Typed bins on the command line: BIN=VALUE and BIN:TYPE=VALUE for every
# type, the messages for bad values, and the limits on bin names.

load helpers

setup() {
    start_node
}

@test "every bin type is stored and read back as that type" {
    run -0 kvquery put test t k s=hello st:str=x=y e= i:int=-42 f:float=1.5 b:bool=true \
        nb:bool=false y:bytes=AAEC/w== 'j:json={"a":[1,null,{"b":2}],"c":"d"}'
    run -0 kvquery get test t k
    assert_output '{"ns":"test","set":"t","key":"k","gen":1,"ttl":-1,"bins":{"s":"hello","st":"x=y","e":"","i":-42,"f":1.5,"b":true,"nb":false,"y":{"$bytes":"AAEC/w=="},"j":{"a":[1,null,{"b":2}],"c":"d"}}}'
}

@test "int bins take the int64 extremes" {
    kvquery put test t k max:int=9223372036854775807 min:int=-9223372036854775808 zero:int=0
    run -0 kvquery get test t k
    assert_output '{"ns":"test","set":"t","key":"k","gen":1,"ttl":-1,"bins":{"max":9223372036854775807,"min":-9223372036854775808,"zero":0}}'
}

@test "floats print in the shortest form that reads back, and stay floats" {
    kvquery put test t k one:float=1 half:float=-0.5 tenth:float=0.1 big:float=1e300 \
        nan:float=nan inf:float=inf ninf:float=-inf
    run -0 kvquery get test t k
    assert_output '{"ns":"test","set":"t","key":"k","gen":1,"ttl":-1,"bins":{"one":1.0,"half":-0.5,"tenth":0.1,"big":1e+300,"nan":{"$float":"NaN"},"inf":{"$float":"Infinity"},"ninf":{"$float":"-Infinity"}}}'
}

@test "json bins: tagged values become their types, a scalar is allowed" {
    kvquery put test t k 'y:json={"$bytes":"AAE="}' 'n:json=5' 's:json="str"' 'l:json=[]' \
        'm:json={"$map":[[1,"a"]]}' 'd:json={"$map":[["$price",5]]}'
    run -0 kvquery get test t k
    assert_output '{"ns":"test","set":"t","key":"k","gen":1,"ttl":-1,"bins":{"y":{"$bytes":"AAE="},"n":5,"s":"str","l":[],"m":{"$map":[[1,"a"]]},"d":{"$map":[["$price",5]]}}}'
}

@test "a bad typed value names the bin and the problem, exit 2, and writes nothing" {
    local cases=(
        "i:int=4x|bin 'i': '4x' is not a 64-bit integer"
        "i:int=|bin 'i': '' is not a 64-bit integer"
        "i:int=9223372036854775808|bin 'i': '9223372036854775808' is not a 64-bit integer"
        "f:float=abc|bin 'f': 'abc' is not a number"
        "f:float=|bin 'f': '' is not a number"
        "f:float=1e999|bin 'f': '1e999' is not a number"
        "b:bool=yes|bin 'b': 'yes' is not true or false"
        "b:bool=1|bin 'b': '1' is not true or false"
        "y:bytes=***|bin 'y': '***' is not base64"
        "j:json={|bin 'j': bad JSON at column"
        'j:json={"$what":1}|bin '"'j'"': unknown type tag "$what"'
        "n:nil=x|bin 'n': a nil value takes nothing after '='"
        "z:what=1|bin 'z': unknown type 'what' (str, int, float, bool, bytes, json, nil)"
        "noequals|'noequals' is not BIN=VALUE"
    )
    local c arg msg
    for c in "${cases[@]}"; do
        arg=${c%%|*}
        msg=${c#*|}
        run -2 --separate-stderr kvquery put test t bad ok=1 "$arg"
        assert_output ''
        assert_stderr --partial "kvquery: put test/t/bad: $msg"
    done
    run -1 kvquery exists test t bad
}

@test "a bin name of 15 bytes works" {
    run -0 kvquery put test t k abcdefghijklmno=15 typed:int=1
    run -0 kvquery get test t k abcdefghijklmno
    assert_output '{"ns":"test","set":"t","key":"k","gen":1,"ttl":-1,"bins":{"abcdefghijklmno":"15"}}'
}

@test "a bin name of 16 bytes is refused by the client, exit 2" {
    run -2 --separate-stderr kvquery put test t k abcdefghijklmnop=16
    assert_stderr "kvquery: put test/t/k: bin name 'abcdefghijklmnop' must be 1 to 15 bytes"
    run -2 --separate-stderr kvquery put test t k abcdefghijklmnop:int=16
    assert_stderr "kvquery: put test/t/k: bin name 'abcdefghijklmnop' must be 1 to 15 bytes"
    run -2 --separate-stderr kvquery get test t k abcdefghijklmnop
    assert_stderr "kvquery: get test/t/k: bin name 'abcdefghijklmnop' must be 1 to 15 bytes"
    run -1 kvquery exists test t k
}

@test "an empty bin name is refused, exit 2" {
    run -2 --separate-stderr kvquery put test t k =x
    assert_stderr "kvquery: put test/t/k: bin name '' must be 1 to 15 bytes"
    run -2 --separate-stderr kvquery put test t k :int=1
    assert_stderr "kvquery: put test/t/k: bin name '' must be 1 to 15 bytes"
    run -2 kvquery get test t k ''
}

@test "the same bin twice in one put is a bad request, exit 2" {
    run -2 --separate-stderr kvquery put test t k a=1 a=2
    assert_stderr "kvquery: put test/t/k: bad request: bin 'a' given twice"
    run -1 kvquery exists test t k
}

@test "a put whose only bins are nil creates nothing, exit 2" {
    run -2 --separate-stderr kvquery put test t k gone:nil=
    assert_stderr 'kvquery: put test/t/k: bad request: a record needs at least one bin'
    run -1 kvquery exists test t k
}

@test "a nested value put accepts can be read back by get, batch and scan" {
    # put either refuses a deep value (exit 2, with a reason) or stores it;
    # what it stores must not break the commands that read it back.
    local n value st
    for n in 22 23 24 25 26 30 34; do
        value=$(printf '%*s' "$n" '' | tr ' ' '[')$(printf '%*s' "$n" '' | tr ' ' ']')
        st=0
        kvquery put test "deep$n" k "j:json=$value" >/dev/null 2>&1 || st=$?
        if [ "$st" -eq 2 ]; then
            continue
        fi
        assert_equal "put of $n levels: exit $st" "put of $n levels: exit 0"
        run --separate-stderr kvquery get test "deep$n" k j
        assert_equal "get of $n levels: exit $status $stderr" "get of $n levels: exit 0 "
        run --separate-stderr kvquery batch test "deep$n" k
        assert_equal "batch of $n levels: exit $status $stderr" "batch of $n levels: exit 0 "
        run --separate-stderr kvquery scan test "deep$n"
        assert_equal "scan of $n levels: exit $status $stderr" "scan of $n levels: exit 0 "
    done
    # and the deepest ones are refused
    run -2 --separate-stderr kvquery put test deep k "j:json=$(printf '%*s' 40 '' | tr ' ' '[')$(printf '%*s' 40 '' | tr ' ' ']')"
    assert_stderr "kvquery: put test/deep/k: bin 'j': lists and maps nested deeper than 24 levels"
}
