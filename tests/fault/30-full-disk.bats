#!/usr/bin/env bats
# A file system that fills up under a namespace kept in a file: kvnode's
# data directory on a 2 MiB tmpfs (mounted by the test, unmounted in
# teardown) while the namespace's disk limit is larger.  Writes must fail
# with NAMESPACE_FULL naming the cause, reads and deletes go on, nothing
# already stored is lost, and a restart serves it all.
# Needs root (mount); run by `make fault`, not by `make test`.

load '../cli/helpers'

setup() {
    MNT=$BATS_TEST_TMPDIR/mnt
    mkdir -p "$MNT"
    mount -t tmpfs -o size=2m tmpfs "$MNT" || {
        echo "cannot mount a tmpfs on $MNT (this suite needs root)" >&2
        return 1
    }
    MOUNTED=1
}

teardown() {
    kv_teardown
    if [ -n "${MOUNTED:-}" ]; then
        umount "$MNT"
    fi
}

@test "a full file system: writes fail with namespace full naming ENOSPC; reads, deletes and a restart keep every record" {
    start_node -d "$MNT/data" --ns test,write-block=64K,disk=16M,commit-to-device=true
    local i=0 st out
    : > "$BATS_TEST_TMPDIR/stored"
    # bounded: 2 MiB of 1 KiB values cannot take more than ~2000 puts
    while [ "$i" -lt 4000 ]; do
        i=$((i + 1))
        st=0
        out=$(kvquery put test s "k$i" v="$(printf 'x%.0s' $(seq 1000))$i" 2>&1) || st=$?
        if [ "$st" -ne 0 ]; then
            break
        fi
        echo "k$i" >> "$BATS_TEST_TMPDIR/stored"
    done
    echo "stopped after $i puts: $out"
    [ "$st" -eq 2 ]
    [[ "$out" == *"namespace full"* ]]
    [[ "$out" == *"No space left on device"* ]]
    local n
    n=$(wc -l < "$BATS_TEST_TMPDIR/stored")
    [ "$n" -gt 100 ]
    # reads go on
    run -0 kvquery get test s k1
    [[ "$output" == *'"v":"x'* ]]
    # a delete goes on (its tombstone fits in the open block)
    run -0 kvquery delete test s k2
    sed -i '/^k2$/d' "$BATS_TEST_TMPDIR/stored"
    # everything acknowledged is there after a restart
    stop_node
    start_node -d "$MNT/data" --ns test,write-block=64K,disk=16M,commit-to-device=true
    run -0 kvquery export test s
    local got
    got=$(printf '%s\n' "$output" | grep -c '"key"')
    [ "$got" -eq "$((n - 1))" ]
    run -1 kvquery get test s k2
}
