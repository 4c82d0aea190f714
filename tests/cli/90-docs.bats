#!/usr/bin/env bats
# Documentation tells the truth: --help matches the man page SYNOPSIS, and
# every EXAMPLES command of every man page runs.

setup() {
    ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
}

@test "kvquery --help matches the SYNOPSIS of kvquery(1)" {
    run "$ROOT/tests/tools/check-synopsis.sh" kvquery
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "kvnode --help matches the SYNOPSIS of kvnode(1)" {
    run "$ROOT/tests/tools/check-synopsis.sh" kvnode
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "-h prints the same as --help" {
    [ "$("$ROOT/bin/kvquery" -h)" = "$("$ROOT/bin/kvquery" --help)" ]
    [ "$("$ROOT/bin/kvnode" -h)" = "$("$ROOT/bin/kvnode" --help)" ]
}

@test "-V prints the program name and version" {
    run "$ROOT/bin/kvquery" -V
    [ "$status" -eq 0 ] && [[ "$output" =~ ^kvquery\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
    run "$ROOT/bin/kvnode" -V
    [ "$status" -eq 0 ] && [[ "$output" =~ ^kvnode\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
}

@test "every man page has EXAMPLES and they all run: kvquery.1" {
    run "$ROOT/tests/tools/run-examples.sh" man/kvquery.1
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "every man page has EXAMPLES and they all run: kvnode.1" {
    run "$ROOT/tests/tools/run-examples.sh" man/kvnode.1
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "every man page has EXAMPLES and they all run: kvstore.7" {
    run "$ROOT/tests/tools/run-examples.sh" man/kvstore.7
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "every man page has EXAMPLES and they all run: kvproto.7" {
    run "$ROOT/tests/tools/run-examples.sh" man/kvproto.7
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "the error codes in kvproto(7) are the ones on the wire" {
    # every code the binary knows appears in the man page table with its name
    run "$ROOT/bin/kvselftest" kv_err
    [ "$status" -eq 0 ]
    for sym in $(grep -o '"[A-Z_]*", "' "$ROOT/common/kv_err.c" | tr -d '", '); do
        grep -q "$sym" "$ROOT/man/kvproto.7" || { echo "kvproto.7 lacks $sym"; false; }
    done
}
