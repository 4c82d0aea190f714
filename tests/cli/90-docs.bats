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

@test "kvbench --help matches the SYNOPSIS of kvbench(1)" {
    run "$ROOT/tests/tools/check-synopsis.sh" kvbench
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "kvroute --help matches the SYNOPSIS of kvroute(1)" {
    run "$ROOT/tests/tools/check-synopsis.sh" kvroute
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "kvrepl --help matches the SYNOPSIS of kvrepl(1)" {
    run "$ROOT/tests/tools/check-synopsis.sh" kvrepl
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "every man page has EXAMPLES and they all run: kvbench.1" {
    run "$ROOT/tests/tools/run-examples.sh" man/kvbench.1
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "-h prints the same as --help" {
    [ "$("$ROOT/bin/kvquery" -h)" = "$("$ROOT/bin/kvquery" --help)" ]
    [ "$("$ROOT/bin/kvnode" -h)" = "$("$ROOT/bin/kvnode" --help)" ]
    [ "$("$ROOT/bin/kvbench" -h)" = "$("$ROOT/bin/kvbench" --help)" ]
    [ "$("$ROOT/bin/kvroute" -h)" = "$("$ROOT/bin/kvroute" --help)" ]
    [ "$("$ROOT/bin/kvrepl" -h)" = "$("$ROOT/bin/kvrepl" --help)" ]
}

@test "-V prints the program name and version" {
    run "$ROOT/bin/kvquery" -V
    [ "$status" -eq 0 ] && [[ "$output" =~ ^kvquery\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
    run "$ROOT/bin/kvnode" -V
    [ "$status" -eq 0 ] && [[ "$output" =~ ^kvnode\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
    run "$ROOT/bin/kvbench" -V
    [ "$status" -eq 0 ] && [[ "$output" =~ ^kvbench\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
    run "$ROOT/bin/kvroute" -V
    [ "$status" -eq 0 ] && [[ "$output" =~ ^kvroute\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
    run "$ROOT/bin/kvrepl" -V
    [ "$status" -eq 0 ] && [[ "$output" =~ ^kvrepl\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
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

@test "every man page has EXAMPLES and they all run: kvroute.1" {
    run "$ROOT/tests/tools/run-examples.sh" man/kvroute.1
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "every man page has EXAMPLES and they all run: kvrepl.1" {
    run "$ROOT/tests/tools/run-examples.sh" man/kvrepl.1
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
    # every row of the table in kv_err.c, with its number from kv_err.h,
    # appears in the man page as ".It NUMBER Ta SYMBOL Ta name"
    n=0
    while read -r enum sym name; do
        num=$(grep -E "^ *$enum = [0-9]+," "$ROOT/common/kv_err.h" | grep -oE '[0-9]+' | head -1)
        [ -n "$num" ] || { echo "no number for $enum"; false; }
        grep -qF ".It $num Ta $sym Ta $name" "$ROOT/man/kvproto.7" ||
            { echo "kvproto.7 lacks: $num $sym $name"; false; }
        n=$((n + 1))
    done < <(sed -n 's/^ *{\(KV_[A-Z_]*\), "\([A-Z_]*\)", "\([^"]*\)"},$/\1 \2 \3/p' "$ROOT/common/kv_err.c")
    [ "$n" -ge 20 ]
    # and the table has no rows the code does not know
    rows=$(grep -cE '^\.It [0-9]+ Ta [A-Z_]+ Ta ' "$ROOT/man/kvproto.7")
    [ "$rows" -eq "$n" ]
}
