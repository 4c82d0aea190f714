#!/usr/bin/env bats
# Write policies: generation check-and-set (--gen, --gen-policy eq|gt), the
# five --exists policies, and deleting bins by writing nil.

load helpers

setup() {
    start_node
    kvquery put test users alice name=Alice city=Oslo
}

# bins_of KEY: the bins of test/users/KEY as compact JSON with sorted keys.
bins_of() {
    kvquery get test users "$1" | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["bins"], sort_keys=True, separators=(",", ":")))'
}

@test "--gen N (policy eq by default) writes when the generation matches" {
    run -0 kvquery put test users alice --gen 1 age:int=30
    assert_output '{"ns":"test","set":"users","key":"alice","gen":2,"ttl":-1}'
    run -0 kvquery put test users alice --gen 2 --gen-policy eq age:int=31
    assert_output '{"ns":"test","set":"users","key":"alice","gen":3,"ttl":-1}'
}

@test "--gen mismatch: exit 1, the message says both generations, nothing changes" {
    kvquery put test users alice city=Rome
    run -1 --separate-stderr kvquery put test users alice --gen 1 city=Paris
    assert_output ''
    assert_stderr 'kvquery: put test/users/alice: generation mismatch: generation is 2, expected 1'
    run -0 kvquery get test users alice
    assert_output '{"ns":"test","set":"users","key":"alice","gen":2,"ttl":-1,"bins":{"name":"Alice","city":"Rome"}}'
}

@test "--gen-policy gt writes only when N is greater than the generation" {
    run -1 --separate-stderr kvquery put test users alice --gen 1 --gen-policy gt city=Paris
    assert_stderr 'kvquery: put test/users/alice: generation mismatch: generation is 1, 1 is not greater'
    run -0 kvquery put test users alice --gen 5 --gen-policy gt city=Paris
    assert_output '{"ns":"test","set":"users","key":"alice","gen":2,"ttl":-1}'
    run -0 kvquery get test users alice city
    assert_output --partial '"bins":{"city":"Paris"}'
}

@test "--gen 0 means the record must not exist yet" {
    run -0 kvquery put test users bob --gen 0 name=Bob
    assert_output '{"ns":"test","set":"users","key":"bob","gen":1,"ttl":-1}'
    run -1 kvquery put test users bob --gen 0 name=Robert
    run -0 kvquery get test users bob name
    assert_output --partial '"bins":{"name":"Bob"}'
}

@test "delete and touch check the generation too" {
    run -1 --separate-stderr kvquery delete test users alice --gen 7
    assert_stderr 'kvquery: delete test/users/alice: generation mismatch: generation is 1, expected 7'
    run -1 --separate-stderr kvquery touch test users alice --gen 7
    assert_stderr 'kvquery: touch test/users/alice: generation mismatch: generation is 1, expected 7'
    run -0 kvquery exists test users alice
    assert_output --partial '"gen":1'
    run -0 kvquery touch test users alice --gen 1
    assert_output --partial '"gen":2'
    run -0 kvquery delete test users alice --gen 2
    run -1 kvquery exists test users alice
}

@test "--gen-policy without --gen is a usage error, exit 2" {
    run -2 --separate-stderr kvquery put test users alice --gen-policy gt city=Paris
    assert_output ''
    assert_stderr --partial 'kvquery: put: --gen-policy needs --gen'
    assert_stderr --partial 'usage: kvquery'
    run -2 kvquery delete test users alice --gen-policy eq
    run -0 kvquery exists test users alice
    assert_output --partial '"gen":1'
}

@test "bad --gen and --gen-policy values are usage errors, exit 2" {
    run -2 --separate-stderr kvquery put test users alice --gen -1 city=Paris
    assert_stderr --partial "kvquery: --gen '-1': expected a generation from 0 to 4294967295"
    run -2 --separate-stderr kvquery put test users alice --gen 4294967296 city=Paris
    assert_stderr --partial "kvquery: --gen '4294967296'"
    run -2 --separate-stderr kvquery put test users alice --gen 1 --gen-policy ge city=Paris
    assert_stderr --partial "kvquery: --gen-policy 'ge': expected eq or gt"
    run -0 kvquery get test users alice city
    assert_output --partial '"bins":{"city":"Oslo"}'
}

@test "--exists update (the default) creates or merges bins" {
    run -0 kvquery put test users alice --exists update age:int=30
    assert_equal "$(bins_of alice)" '{"age":30,"city":"Oslo","name":"Alice"}'
    run -0 kvquery put test users carol --exists update name=Carol
    assert_equal "$(bins_of carol)" '{"name":"Carol"}'
}

@test "--exists update-only merges into an existing record" {
    run -0 kvquery put test users alice --exists update-only city=Rome
    assert_output '{"ns":"test","set":"users","key":"alice","gen":2,"ttl":-1}'
    assert_equal "$(bins_of alice)" '{"city":"Rome","name":"Alice"}'
}

@test "--exists update-only fails on a missing record with not found, exit 1" {
    run -1 --separate-stderr kvquery put test users nobody --exists update-only name=X
    assert_stderr 'kvquery: put test/users/nobody: not found'
    run -1 kvquery exists test users nobody
}

@test "--exists create-only creates a new record" {
    run -0 kvquery put test users bob --exists create-only name=Bob
    assert_output '{"ns":"test","set":"users","key":"bob","gen":1,"ttl":-1}'
    assert_equal "$(bins_of bob)" '{"name":"Bob"}'
}

@test "--exists create-only fails on an existing record with record exists, exit 1" {
    run -1 --separate-stderr kvquery put test users alice --exists create-only name=Other
    assert_stderr 'kvquery: put test/users/alice: record exists'
    assert_equal "$(bins_of alice)" '{"city":"Oslo","name":"Alice"}'
    run -0 kvquery exists test users alice
    assert_output --partial '"gen":1'
}

@test "--exists replace drops the bins not given, and creates a missing record" {
    run -0 kvquery put test users alice --exists replace age:int=30
    assert_output '{"ns":"test","set":"users","key":"alice","gen":2,"ttl":-1}'
    assert_equal "$(bins_of alice)" '{"age":30}'
    run -0 kvquery put test users dave --exists replace name=Dave
    assert_equal "$(bins_of dave)" '{"name":"Dave"}'
}

@test "--exists replace-only replaces all bins of an existing record" {
    run -0 kvquery put test users alice --exists replace-only name=Alicia
    assert_output '{"ns":"test","set":"users","key":"alice","gen":2,"ttl":-1}'
    assert_equal "$(bins_of alice)" '{"name":"Alicia"}'
}

@test "--exists replace-only fails on a missing record with not found, exit 1" {
    run -1 --separate-stderr kvquery put test users nobody --exists replace-only name=X
    assert_stderr 'kvquery: put test/users/nobody: not found'
    run -1 kvquery exists test users nobody
}

@test "a bad --exists policy is a usage error, exit 2" {
    run -2 --separate-stderr kvquery put test users alice --exists upsert name=X
    assert_stderr --partial "kvquery: --exists 'upsert': expected update, update-only, create-only, replace or replace-only"
    assert_equal "$(bins_of alice)" '{"city":"Oslo","name":"Alice"}'
}

@test "--exists and --gen together: both must hold" {
    run -1 kvquery put test users alice --exists update-only --gen 9 city=Rome
    run -0 kvquery put test users alice --exists replace-only --gen 1 city=Rome
    assert_equal "$(bins_of alice)" '{"city":"Rome"}'
}

@test "writing a bin with nil deletes that bin" {
    run -0 kvquery put test users alice city:nil=
    assert_output '{"ns":"test","set":"users","key":"alice","gen":2,"ttl":-1}'
    assert_equal "$(bins_of alice)" '{"name":"Alice"}'
    # a nil for a bin that is not there is no error
    run -0 kvquery put test users alice nothere:nil=
    assert_equal "$(bins_of alice)" '{"name":"Alice"}'
}

@test "deleting every bin deletes the record (put prints deleted:true)" {
    run -0 kvquery put test users alice name:nil= city:nil=
    assert_output '{"ns":"test","set":"users","key":"alice","deleted":true}'
    run -1 kvquery get test users alice
    run -1 kvquery exists test users alice
    assert_output '{"ns":"test","set":"users","key":"alice","exists":false}'
}

@test "--exists replace with only nil bins deletes the record" {
    run -0 kvquery put test users alice --exists replace gone:nil=
    assert_output --partial '"deleted":true'
    run -1 kvquery exists test users alice
}
